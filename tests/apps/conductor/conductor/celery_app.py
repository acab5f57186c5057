"""Celery: the worker (``celery -A conductor.celery_app worker``) and beat
(``celery -A conductor.celery_app beat``), both on Redis."""

from __future__ import annotations

from celery import Celery

from conductor.config import settings

_settings = settings()

app = Celery("conductor", broker=_settings.broker_url, backend=_settings.result_backend, include=["conductor.tasks"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    timezone="UTC",
    enable_utc=True,
    # Beat's state (when each entry last ran) goes to a writable place: /app is not.
    beat_schedule_filename=_settings.beat_schedule_file,
    beat_schedule={
        "heartbeat": {
            "task": "conductor.tasks.heartbeat",
            "schedule": float(_settings.heartbeat_interval),
            # A heartbeat nobody took in time is worth nothing.
            "options": {"expires": float(_settings.heartbeat_interval)},
        },
    },
)
