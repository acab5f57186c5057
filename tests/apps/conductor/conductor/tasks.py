"""Celery tasks."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

from celery import shared_task

from conductor.config import VERSION
from conductor.db import database, publish


@shared_task(name="conductor.tasks.heartbeat", bind=True, ignore_result=True)
def heartbeat(self) -> str:
    """Scheduled by beat every HEARTBEAT_INTERVAL seconds: one document in ``heartbeats``, and an event."""
    document = {
        "at": datetime.now(UTC),
        "worker": self.request.hostname or socket.gethostname(),
        "version": VERSION,
    }
    inserted = database().heartbeats.insert_one(document).inserted_id
    publish({"type": "heartbeat", "id": str(inserted), "at": document["at"].isoformat(), "worker": document["worker"]})
    return str(inserted)
