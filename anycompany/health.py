"""Liveness and readiness probes, answered before any other middleware.

The load balancer sends the task's private IP as ``Host``; answering here means that IP never
has to be added to ``ALLOWED_HOSTS`` and the probe is never redirected to HTTPS.
"""

from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"


class HealthCheckMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == LIVENESS_PATH:
            return JsonResponse({"status": "ok"})
        if request.path == READINESS_PATH:
            return readiness()
        return self.get_response(request)


def readiness() -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        return JsonResponse({"status": "unavailable", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})
