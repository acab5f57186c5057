"""Prune heartbeats older than a day, every hour."""

from django.db import migrations
from django.utils import timezone


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    PeriodicTask.objects.update_or_create(
        name="Prune heartbeats",
        defaults={"task": "photos.tasks.prune_heartbeats", "interval": hourly, "kwargs": '{"days": 1}'},
    )
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name="Prune heartbeats").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("photos", "0003_heartbeat_schedule"),
    ]

    operations = [
        migrations.RunPython(create_schedule, remove_schedule),
    ]
