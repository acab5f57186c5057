from django.contrib.postgres.indexes import BloomIndex
from django.db import models


class Upload(models.Model):
    """A file sent to /upload; a Celery task fills in its size and checksum."""

    file = models.FileField(upload_to="uploads/%Y/%m/")
    name = models.CharField(max_length=255)
    uploaded_at = models.DateTimeField(auto_now_add=True)
    size = models.IntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    inspected_by = models.CharField(max_length=255, blank=True)
    inspected_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-uploaded_at"]
        # One small index answers equality lookups on any of these columns.
        indexes = [BloomIndex(fields=["name", "sha256"], name="photos_upload_bloom")]

    def __str__(self):
        return self.name

    def as_dict(self):
        return {
            "id": self.pk,
            "name": self.name,
            "url": self.file.url,
            "uploaded_at": self.uploaded_at.isoformat(),
            "size": self.size,
            "sha256": self.sha256 or None,
            "inspected_by": self.inspected_by or None,
            "inspected_at": self.inspected_at.isoformat() if self.inspected_at else None,
        }


class Heartbeat(models.Model):
    """Written by the periodic task that beat sends: proof that the schedule runs."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    worker = models.CharField(max_length=255)

    class Meta:
        ordering = ["-at"]

    def __str__(self):
        return f"{self.worker} at {self.at:%Y-%m-%d %H:%M:%S}"
