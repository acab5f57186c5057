"""The Celery application: ``celery -A celery_app worker --concurrency=2``.

Redis is the broker and the result backend.  Configured so that a worker
restart loses no task: a task is acknowledged only once it has finished
(``task_acks_late``), a task whose worker process died is put back on the
queue (``task_reject_on_worker_lost``), and a worker holds one task per
process at a time (``worker_prefetch_multiplier=1``), so that other workers
can take what is waiting.  On SIGTERM (``docker stop``) Celery does a warm
shutdown: it stops taking tasks and waits for the running ones to finish.

``celery -A celery_app beat`` sends ``flow_forecaster.tick`` every
``BEAT_TICK_SECONDS`` seconds when that is set: each tick is a row in
``forecasts``, so two beats running at once show as twice the ticks.
"""

from __future__ import annotations

import os

from celery import Celery, signals

import logs
from config import get_settings

settings = get_settings()

celery_app = Celery("flow_forecaster", broker=settings.broker_url, backend=settings.result_backend, include=["tasks"])
celery_app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_track_started=True,
    result_expires=settings.result_expires,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    timezone="UTC",
    enable_utc=True,
    broker_connection_retry_on_startup=True,
    # Unacknowledged tasks come back after this long if a worker vanished without a word.
    broker_transport_options={"visibility_timeout": 3600},
    # Fail a request fast when Redis is down instead of retrying for long.
    task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
    worker_hijack_root_logger=False,
)

if tick := float(os.environ.get("BEAT_TICK_SECONDS") or 0):
    celery_app.conf.beat_schedule = {"tick": {"task": "flow_forecaster.tick", "schedule": tick}}


@signals.setup_logging.connect
def setup_logging(**_kwargs) -> None:
    """Celery's worker logs to stderr by default; ours go to stdout, secrets redacted."""
    logs.configure()
