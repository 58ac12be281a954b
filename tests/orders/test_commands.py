from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from orders.models import Customer
from tests.conftest import make_customer


@pytest.fixture
def marcia(db: None) -> Customer:
    return make_customer("678902", "Márcia Oliveria", email="márcia_oliveria@example.com")


def test_it_creates_a_login_with_the_password_from_the_environment(
    marcia: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUSTOMER_LOGIN_PASSWORD", "a long passphrase 42")
    call_command("create_customer_login", "MÁRCIA_OLIVERIA@example.com", verbosity=0)
    marcia.refresh_from_db()
    assert marcia.user is not None
    assert marcia.user.email == "márcia_oliveria@example.com"
    assert authenticate(username="márcia_oliveria", password="a long passphrase 42") == marcia.user


def run(*args: str) -> str:
    out = StringIO()
    call_command("create_customer_login", "márcia_oliveria@example.com", *args, stdout=out)
    return out.getvalue()


def test_running_it_twice_keeps_the_password_unless_told_to_reset_it(
    marcia: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUSTOMER_LOGIN_PASSWORD", "a long passphrase 42")
    assert "Created the sign-in 'márcia_oliveria'" in run()
    first = Customer.objects.get(pk="678902").user

    monkeypatch.setenv("CUSTOMER_LOGIN_PASSWORD", "another passphrase 43")
    with pytest.raises(CommandError, match=r"already has a password.*--reset-password"):
        run()
    assert authenticate(username="márcia_oliveria", password="a long passphrase 42") == first

    assert "replaced its password" in run("--reset-password")
    marcia.refresh_from_db()
    assert marcia.user == first
    assert authenticate(username="márcia_oliveria", password="another passphrase 43") == first


def test_it_says_when_nothing_changed(marcia: Customer) -> None:
    run("--no-password")
    assert "already signs in as 'márcia_oliveria'; nothing changed" in run("--no-password")


@pytest.mark.parametrize(
    "role",
    [{"is_superuser": True, "is_staff": True}, {"is_staff": True}],
    ids=["superuser", "staff"],
)
@pytest.mark.parametrize("reset", [[], ["--reset-password"]], ids=["plain", "reset"])
def test_it_never_hands_a_customer_a_staff_account_named_like_them(
    marcia: Customer, monkeypatch: pytest.MonkeyPatch, role: dict[str, Any], reset: list[str]
) -> None:
    admin = User.objects.create_user(
        username="márcia_oliveria", password="the admin's own passphrase", **role
    )
    monkeypatch.setenv("CUSTOMER_LOGIN_PASSWORD", "a long passphrase 42")
    with pytest.raises(CommandError, match=r"staff account.*change the customer's username"):
        run(*reset)
    marcia.refresh_from_db()
    admin.refresh_from_db()
    assert marcia.user is None
    assert admin.check_password("the admin's own passphrase")
    assert admin.is_staff


def test_it_never_sets_the_password_of_a_staff_account_linked_by_hand(
    marcia: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = User.objects.create_superuser(username="root", password="the admin's own passphrase")
    marcia.user = admin
    marcia.save()
    monkeypatch.setenv("CUSTOMER_LOGIN_PASSWORD", "a long passphrase 42")
    with pytest.raises(
        CommandError, match=r"'root' is a staff account.*Clear the customer's User field"
    ):
        run("--reset-password")
    admin.refresh_from_db()
    assert admin.check_password("the admin's own passphrase")


def test_an_unlinked_account_with_its_own_password_is_linked_only_with_reset_password(
    marcia: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    existing = User.objects.create_user(username="márcia_oliveria", password="someone's password")
    monkeypatch.setenv("CUSTOMER_LOGIN_PASSWORD", "a long passphrase 42")
    with pytest.raises(CommandError, match=r"already has a password.*--reset-password"):
        run()
    marcia.refresh_from_db()
    assert marcia.user is None

    output = run("--reset-password")
    assert "Linked the existing user 'márcia_oliveria'" in output
    assert "replaced its password" in output
    marcia.refresh_from_db()
    assert marcia.user == existing
    assert authenticate(username="márcia_oliveria", password="someone's password") is None


def test_an_unlinked_account_without_a_password_is_linked(marcia: Customer) -> None:
    existing = User.objects.create_user(username="márcia_oliveria", password=None)
    assert "Linked the existing user 'márcia_oliveria'" in run("--no-password")
    marcia.refresh_from_db()
    assert marcia.user == existing


def test_reset_password_without_a_password_removes_it(
    marcia: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUSTOMER_LOGIN_PASSWORD", "a long passphrase 42")
    run()
    assert "removed its password" in run("--no-password", "--reset-password")
    marcia.refresh_from_db()
    assert marcia.user is not None
    assert not marcia.user.has_usable_password()


def test_it_rejects_a_weak_password_with_the_validators_message(
    marcia: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUSTOMER_LOGIN_PASSWORD", "123")
    with pytest.raises(CommandError, match="too short"):
        call_command("create_customer_login", "márcia_oliveria@example.com", verbosity=0)


def test_it_names_an_unknown_email(db: None) -> None:
    with pytest.raises(CommandError, match="No customer has the email"):
        call_command("create_customer_login", "nobody@example.com", "--no-password", verbosity=0)


def test_without_a_terminal_it_asks_for_the_environment_variable(
    marcia: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUSTOMER_LOGIN_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="CUSTOMER_LOGIN_PASSWORD"):
        call_command("create_customer_login", "márcia_oliveria@example.com", verbosity=0)


def test_without_a_password_the_login_cannot_sign_in_with_one(marcia: Customer) -> None:
    call_command(
        "create_customer_login", "márcia_oliveria@example.com", "--no-password", verbosity=0
    )
    marcia.refresh_from_db()
    assert marcia.user is not None
    assert not marcia.user.has_usable_password()
