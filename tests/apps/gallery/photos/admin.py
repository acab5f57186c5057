from django.contrib import admin

from .models import Heartbeat, Upload


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ("name", "uploaded_at", "size", "sha256", "inspected_by")
    search_fields = ("name", "sha256")


@admin.register(Heartbeat)
class HeartbeatAdmin(admin.ModelAdmin):
    list_display = ("at", "worker")
