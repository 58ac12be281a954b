"""The load balancer's probes: liveness never touches anything, readiness names what is down."""

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from django.db import connection
from django.test import Client

from anycompany.dbpool import pool_reset

pytestmark = pytest.mark.django_db(transaction=True)

# What the site sends on every page; the probes must send the same.
SECURITY_HEADERS = (
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Cross-Origin-Opener-Policy",
    "X-Frame-Options",
    "Content-Security-Policy",
)


@pytest.fixture
def unreachable_database() -> Iterator[None]:
    """Points the default connection at a port nobody listens on, as when the database is down."""
    if connection.vendor != "postgresql":
        pytest.skip("needs a PostgreSQL server to take away")
    saved = dict(connection.settings_dict)
    # The pool keeps the parameters it was built with: a new one is built from the new ones.
    pool_reset()
    connection.settings_dict.update({"HOST": "127.0.0.1", "PORT": "1"})
    options = {**saved.get("OPTIONS", {}), "connect_timeout": 2}
    if isinstance(options.get("pool"), dict):
        options["pool"] = {**options["pool"], "timeout": 2}
    connection.settings_dict["OPTIONS"] = options
    try:
        yield
    finally:
        pool_reset()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


class ThrowawayRedis:
    """A redis-server of this test's own on a spare port; the shared one is never touched."""

    def __init__(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.skip("needs redis-server")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [
                *(executable, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--logfile", ""),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self._listening():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the throwaway redis-server did not start")
            time.sleep(0.02)

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def throwaway_redis(settings) -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis()
    settings.REDIS_URL = server.url
    try:
        yield server
    finally:
        server.stop()


def test_liveness_answers_any_host() -> None:
    response = Client().get("/healthz", HTTP_HOST="10.0.3.17")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_liveness_is_not_redirected_to_https(settings) -> None:
    settings.SECURE_SSL_REDIRECT = True

    response = Client().get("/healthz", HTTP_HOST="10.0.3.17")

    assert response.status_code == 200


def test_readiness_is_not_redirected_to_https_either(settings) -> None:
    settings.SECURE_SSL_REDIRECT = True

    response = Client().get("/readyz", HTTP_HOST="10.0.3.17")

    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_send_the_same_security_headers_as_a_page(settings, path: str) -> None:
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.ALLOWED_HOSTS = ["support.example.com"]
    # Behind the load balancer, over HTTPS as far as Django knows (HSTS is only sent then).
    page = Client().get(
        "/accounts/login/", HTTP_HOST="support.example.com", HTTP_X_FORWARDED_PROTO="https"
    )
    probe = Client().get(path, HTTP_HOST="10.0.3.17", HTTP_X_FORWARDED_PROTO="https")

    assert page.status_code == 200
    assert probe.status_code == 200
    expected = {name: page.headers.get(name) for name in SECURITY_HEADERS}
    assert None not in expected.values(), expected
    assert {name: probe.headers.get(name) for name in SECURITY_HEADERS} == expected


def test_readiness_is_ok_without_redis_configured(settings) -> None:
    settings.REDIS_URL = ""

    response = Client().get("/readyz", HTTP_HOST="10.0.3.17")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_readiness_is_503_when_the_database_is_unreachable(
    settings, unreachable_database: None
) -> None:
    settings.REDIS_URL = ""

    response = Client().get("/readyz", HTTP_HOST="10.0.3.17")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unavailable"}


def test_readiness_reports_redis_separately_and_503_once_it_is_down(
    throwaway_redis: ThrowawayRedis,
) -> None:
    client = Client()
    up = client.get("/readyz", HTTP_HOST="10.0.3.17")

    throwaway_redis.stop()
    down = client.get("/readyz", HTTP_HOST="10.0.3.17")

    assert up.status_code == 200
    assert up.json() == {"status": "ok", "database": "ok", "redis": "ok"}
    assert down.status_code == 503
    assert down.json() == {"status": "unavailable", "database": "ok", "redis": "unavailable"}


def test_liveness_stays_up_while_redis_and_the_database_are_down(
    throwaway_redis: ThrowawayRedis, unreachable_database: None
) -> None:
    throwaway_redis.stop()

    liveness = Client().get("/healthz", HTTP_HOST="10.0.3.17")
    readiness = Client().get("/readyz", HTTP_HOST="10.0.3.17")

    assert liveness.status_code == 200
    assert readiness.status_code == 503
    assert readiness.json() == {
        "status": "unavailable",
        "database": "unavailable",
        "redis": "unavailable",
    }
