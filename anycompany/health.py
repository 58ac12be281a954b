"""Liveness and readiness probes, answered before host validation and the HTTPS redirect.

The load balancer sends the task's private IP as ``Host``; answering before ``CommonMiddleware``
means that IP never has to be added to ``ALLOWED_HOSTS``, and the paths are in
``SECURE_REDIRECT_EXEMPT``. The middleware that only add security headers run before this one,
so the probes' answers carry the same headers as every page.
"""

from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from redis.backoff import NoBackoff
from redis.retry import Retry

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
OK = "ok"
UNAVAILABLE = "unavailable"
# A probe that waits longer than the caller's own timeout tells nothing.
REDIS_TIMEOUT_SECONDS = 1.0


class HealthCheckMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == LIVENESS_PATH:
            # Liveness: the process answers. Never depends on anything else, so an outage of
            # the database or Redis does not make the load balancer replace every task.
            return JsonResponse({"status": OK})
        if request.path == READINESS_PATH:
            return readiness()
        return self.get_response(request)


def readiness() -> JsonResponse:
    """Each dependency by name, ``ok`` or ``unavailable``; 503 when any is unavailable.

    Redis is checked only when ``REDIS_URL`` is set (without it the app runs on in-process
    layers and caches).
    """
    checks = {"database": _database_answers()}
    if settings.REDIS_URL:
        checks["redis"] = _redis_answers(settings.REDIS_URL)
    report = {name: OK if answered else UNAVAILABLE for name, answered in checks.items()}
    ready = all(checks.values())
    return JsonResponse(
        {"status": OK if ready else UNAVAILABLE, **report}, status=200 if ready else 503
    )


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        # A connection that failed mid-way must not be reused by the next request.
        connection.close_if_unusable_or_obsolete()
        return False
    return True


def _redis_answers(url: str) -> bool:
    # A client per probe: a pooled connection could be a dead one from before a Redis restart.
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()
