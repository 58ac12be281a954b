import pytest
from django.contrib.auth import authenticate
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


def test_running_it_twice_links_the_same_user(
    marcia: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUSTOMER_LOGIN_PASSWORD", "a long passphrase 42")
    call_command("create_customer_login", "márcia_oliveria@example.com", verbosity=0)
    first = Customer.objects.get(pk="678902").user
    monkeypatch.setenv("CUSTOMER_LOGIN_PASSWORD", "another passphrase 43")
    call_command("create_customer_login", "márcia_oliveria@example.com", verbosity=0)
    marcia.refresh_from_db()
    assert marcia.user == first
    assert authenticate(username="márcia_oliveria", password="another passphrase 43") == first


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
