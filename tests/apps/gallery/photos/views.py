import logging

from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from gallery.celery import app as celery_app

from .models import Heartbeat, Upload
from .tasks import inspect_upload

logger = logging.getLogger(__name__)


@require_GET
def home(request):
    return render(request, "photos/home.html", {"uploads": Upload.objects.all()[:20]})


@csrf_exempt  # an API for scripts; the home page's form is not the only client
@require_POST
def upload(request):
    sent = request.FILES.get("image")
    if sent is None:
        return JsonResponse({"error": "send the file as the 'image' field of a multipart form"}, status=400)
    item = Upload(name=sent.name[:255])
    item.file.save(sent.name, sent, save=False)
    item.save()
    transaction.on_commit(lambda: inspect_upload.delay(item.pk))
    return JsonResponse(item.as_dict(), status=202)


@require_GET
def upload_detail(request, upload_id):
    return JsonResponse(get_object_or_404(Upload, pk=upload_id).as_dict())


@require_GET
def heartbeats(request):
    latest = Heartbeat.objects.first()
    return JsonResponse(
        {
            "count": Heartbeat.objects.count(),
            "latest": {"at": latest.at.isoformat(), "worker": latest.worker} if latest else None,
        }
    )


@require_GET
def celery_ping(request):
    """200 when a Celery worker answers a ping within 2 s, else 503."""
    try:
        replies = celery_app.control.ping(timeout=2.0, limit=1)
    except Exception as exc:  # noqa: BLE001 - the broker is down: say so
        logger.warning("celery ping failed: %s", exc)
        return JsonResponse({"status": "unavailable", "error": type(exc).__name__, "workers": []}, status=503)
    workers = sorted(name for reply in replies for name in reply)
    if not workers:
        return JsonResponse({"status": "unavailable", "workers": []}, status=503)
    return JsonResponse({"status": "ok", "workers": workers})
