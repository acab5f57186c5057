"""The periodic tasks beat sends, kept in django-celery-beat's tables (edit
them in the admin): a heartbeat every 10 seconds."""

from django.db import migrations
from django.utils import timezone


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    every_10s, _ = IntervalSchedule.objects.get_or_create(every=10, period="seconds")
    PeriodicTask.objects.update_or_create(
        name="Record a heartbeat",
        defaults={"task": "photos.tasks.record_heartbeat", "interval": every_10s, "enabled": True},
    )
    # A running beat rereads the schedule when this changes (signals do not fire in migrations).
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name="Record a heartbeat").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("photos", "0002_upload_bloom_index"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(create_schedule, remove_schedule),
    ]
