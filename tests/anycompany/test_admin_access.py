"""Who gets into /admin/: with Cognito configured, staff through Cognito only (and its MFA),
passwords for the break-glass account alone; without it, staff passwords, throttled."""

import logging
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.anycompany.cognito_standin import BOB_SUB, CognitoStandIn, sign_in, signed_in_user

PASSWORD = "correct horse 9"


@pytest.fixture(autouse=True)
def own_counters(settings: Any) -> None:
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    }


@pytest.fixture
def root(db: None) -> User:
    return User.objects.create_superuser(username="root", password=PASSWORD)


def admin_sign_in(username: str) -> tuple[Client, Any]:
    client = Client()
    response = client.post(
        "/admin/login/?next=/admin/", {"username": username, "password": PASSWORD}
    )
    return client, response


@pytest.mark.django_db
def test_with_cognito_the_admin_sign_in_page_offers_single_sign_on(
    cognito: CognitoStandIn,
) -> None:
    page = Client().get("/admin/login/?next=/admin/orders/")
    assert page.status_code == 200
    assert 'href="/oidc/authenticate/?next=/admin/orders/"' in page.content.decode()
    assert "only for the break-glass account" in page.content.decode()


@pytest.mark.django_db
def test_without_cognito_the_admin_sign_in_page_has_no_single_sign_on() -> None:
    page = Client().get("/admin/login/")
    assert page.status_code == 200
    assert "single sign-on" not in page.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/admin/login/?next=/admin/", "/accounts/login/"])
def test_with_cognito_a_staff_password_does_not_sign_in_even_when_right(
    cognito: CognitoStandIn, support: User, root: User, path: str
) -> None:
    for username in ("support", "root"):
        client = Client()
        response = client.post(path, {"username": username, "password": PASSWORD})
        assert response.status_code == 200
        assert signed_in_user(client) is None
    assert Client().get("/admin/").status_code == 302


@pytest.mark.django_db
def test_with_cognito_the_admin_error_says_how_staff_sign_in(
    cognito: CognitoStandIn, support: User
) -> None:
    _, response = admin_sign_in("support")
    assert "Staff sign in with single sign-on" in response.content.decode()


@pytest.mark.django_db
def test_the_break_glass_account_signs_in_with_a_warning_each_time(
    cognito: CognitoStandIn, root: User, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.ADMIN_BREAK_GLASS_USERNAMES = ["root"]
    for _ in range(2):
        with caplog.at_level(logging.WARNING, logger="anycompany.signin"):
            client, response = admin_sign_in("root")
        assert response.status_code == 302
        assert signed_in_user(client) == root
        assert client.get("/admin/").status_code == 200
    warnings = [r for r in caplog.records if "Break-glass account 'root'" in r.getMessage()]
    assert len(warnings) == 2
    assert all(record.levelno == logging.WARNING for record in warnings)


@pytest.mark.django_db
def test_the_break_glass_account_is_throttled_too(
    cognito: CognitoStandIn, root: User, settings: Any
) -> None:
    settings.ADMIN_BREAK_GLASS_USERNAMES = ["root"]
    for attempt in range(10):
        Client().post("/admin/login/", {"username": "root", "password": f"wrong {attempt}"})
    client, response = admin_sign_in("root")
    assert signed_in_user(client) is None
    assert "Too many failed sign-in attempts" in response.content.decode()


@pytest.mark.django_db
def test_staff_signed_in_through_cognito_reach_the_admin(cognito: CognitoStandIn) -> None:
    client = Client()
    sign_in(
        client,
        cognito,
        sub=BOB_SUB,
        email="sam@anycompany.example",
        **{"cognito:groups": ["staff"]},
    )
    user = signed_in_user(client)
    assert user is not None
    assert user.is_staff
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_with_cognito_a_staff_password_session_from_before_is_shut_out(
    cognito: CognitoStandIn, support: User
) -> None:
    client = Client()
    client.force_login(support, backend="django.contrib.auth.backends.ModelBackend")
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_without_cognito_staff_sign_in_to_the_admin_with_a_password(support: User) -> None:
    client, response = admin_sign_in("support")
    assert response.status_code == 302
    assert signed_in_user(client) == support
    assert client.get("/admin/").status_code == 200
