"""The Celery application: ``celery -A gallery worker`` and ``celery -A gallery beat``.

Its settings are Django's ``CELERY_*`` settings; tasks are found in the
``tasks`` module of every installed app.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gallery.settings")

app = Celery("gallery")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
