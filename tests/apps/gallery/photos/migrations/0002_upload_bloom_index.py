"""A bloom index on uploads (name, sha256).

The bloom extension must exist first.  CREATE EXTENSION needs a superuser
for bloom: where the app's database role is not one, have the extension
created beforehand; IF NOT EXISTS then leaves it as it is.
"""

import django.contrib.postgres.indexes
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("photos", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL("CREATE EXTENSION IF NOT EXISTS bloom", reverse_sql=migrations.RunSQL.noop),
        migrations.AddIndex(
            model_name="upload",
            index=django.contrib.postgres.indexes.BloomIndex(fields=["name", "sha256"], name="photos_upload_bloom"),
        ),
    ]
