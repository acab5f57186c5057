import hashlib
import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from .models import Heartbeat, Upload

logger = logging.getLogger(__name__)


@shared_task(bind=True)
def inspect_upload(self, upload_id):
    """Read the uploaded file from MEDIA_ROOT; record its size and SHA-256."""
    upload = Upload.objects.get(pk=upload_id)
    digest = hashlib.sha256()
    size = 0
    with upload.file.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
            size += len(chunk)
    upload.size = size
    upload.sha256 = digest.hexdigest()
    upload.inspected_by = self.request.hostname or ""
    upload.inspected_at = timezone.now()
    upload.save(update_fields=["size", "sha256", "inspected_by", "inspected_at"])
    logger.info("upload %s: %s bytes, sha256 %s", upload_id, size, upload.sha256)
    return {"id": upload_id, "size": size, "sha256": upload.sha256}


@shared_task(bind=True)
def record_heartbeat(self):
    """Sent by beat (see the schedule in migration 0003)."""
    Heartbeat.objects.create(worker=self.request.hostname or "")


@shared_task
def prune_heartbeats(days=1):
    """Delete heartbeats older than ``days`` days."""
    deleted, _ = Heartbeat.objects.filter(at__lt=timezone.now() - timedelta(days=days)).delete()
    return deleted
