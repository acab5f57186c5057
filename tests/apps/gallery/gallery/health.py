"""``/health``, answered before Django looks at the Host header.

Load balancers and container health checks call it by IP address, which is
not in ALLOWED_HOSTS; it touches nothing (no database, no Redis), so that a
slow dependency never gets the web process restarted.
"""

from django.conf import settings
from django.http import JsonResponse


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == "/health":
            return JsonResponse({"status": "ok", "version": settings.APP_VERSION})
        return self.get_response(request)
