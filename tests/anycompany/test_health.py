"""The load balancer's probes: liveness never touches the database, readiness does."""

from collections.abc import Iterator

import pytest
from django.db import connection
from django.test import Client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def unreachable_database() -> Iterator[None]:
    """Points the default connection at a port nobody listens on, as when the database is down."""
    if connection.vendor != "postgresql":
        pytest.skip("needs a PostgreSQL server to take away")
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update({"HOST": "127.0.0.1", "PORT": "1"})
    connection.settings_dict["OPTIONS"] = {**saved.get("OPTIONS", {}), "connect_timeout": 2}
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def test_liveness_answers_any_host() -> None:
    response = Client().get("/healthz", HTTP_HOST="10.0.3.17")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_liveness_is_not_redirected_to_https(settings) -> None:
    settings.SECURE_SSL_REDIRECT = True

    response = Client().get("/healthz", HTTP_HOST="10.0.3.17")

    assert response.status_code == 200


def test_readiness_is_ok_when_the_database_answers() -> None:
    response = Client().get("/readyz", HTTP_HOST="10.0.3.17")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_readiness_is_503_when_the_database_is_unreachable(unreachable_database: None) -> None:
    response = Client().get("/readyz", HTTP_HOST="10.0.3.17")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable"}
