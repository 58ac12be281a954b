"""Password sign-in through the real sign-in views: email or username, and throttling."""

import os
import re
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import User
from django.core.cache import caches
from django.test import Client

from orders.models import Customer
from tests.chat.sockets import app_server, free_port
from tests.conftest import make_customer, make_login

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

PASSWORD = "correct horse 9"
WAIT = re.compile(r"try again in \d+ minutes?")


@pytest.fixture(autouse=True)
def own_counters(request: pytest.FixtureRequest, settings: Any) -> None:
    # The counters live in the configured cache (Redis when REDIS_URL is set); a prefix of its
    # own keeps each test's counts apart from every other test's and run's.
    if "shared_counters" not in request.keywords:
        settings.CACHES = {
            "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
        }


def sign_in(
    name: str,
    password: str,
    *,
    address: str = "198.51.100.1",
    path: str = "/accounts/login/",
    forwarded_for: str | None = None,
) -> tuple[Client, "TestResponse"]:
    client = Client(REMOTE_ADDR=address)
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    response = client.post(path, {"username": name, "password": password}, headers=headers)
    return client, response


def signed_in(client: Client) -> User | None:
    user_id = client.session.get(SESSION_KEY)
    return None if user_id is None else User.objects.get(pk=user_id)


def errors(response: "TestResponse") -> str:
    return " ".join(response.context["form"].non_field_errors())


def test_customers_sign_in_with_their_email_in_any_case(alice: Customer) -> None:
    client, response = sign_in("ALICE_Liddell@Example.COM", PASSWORD)
    assert response.status_code == 302
    assert signed_in(client) == alice.user


def test_customers_still_sign_in_with_their_username(alice: Customer) -> None:
    client, _ = sign_in("alice_liddell", PASSWORD)
    assert signed_in(client) == alice.user


def test_an_email_nobody_has_gets_the_usual_error(alice: Customer) -> None:
    client, response = sign_in("nobody@example.com", PASSWORD)
    assert signed_in(client) is None
    assert "Please enter a correct" in errors(response)


def test_thirty_wrong_passwords_then_the_right_one_does_not_sign_in(alice: Customer) -> None:
    for attempt in range(30):
        _, response = sign_in("alice_liddell", f"wrong {attempt}")
        assert response.status_code == 200
    client, response = sign_in("alice_liddell", PASSWORD, address="198.51.100.2")
    assert signed_in(client) is None
    message = errors(response)
    assert "Too many failed sign-in attempts for this account" in message
    assert WAIT.search(message)
    # What was typed stays in the form.
    assert 'value="alice_liddell"' in response.content.decode()


def test_the_admin_sign_in_is_throttled_too(support: User) -> None:
    for attempt in range(30):
        sign_in("support", f"wrong {attempt}", path="/admin/login/")
    client, response = sign_in("support", PASSWORD, path="/admin/login/")
    assert signed_in(client) is None
    assert "Too many failed sign-in attempts for this account" in errors(response)


def test_the_account_counts_however_it_was_named(alice: Customer, settings: Any) -> None:
    settings.SIGNIN_FAILURES_PER_ACCOUNT = 4
    for index, name in enumerate(
        ["alice_liddell", "ALICE_LIDDELL@example.com", "Alice_Liddell", "alice_liddell@EXAMPLE.com"]
    ):
        sign_in(name, "wrong", address=f"198.51.100.{10 + index}")
    client, response = sign_in("alice_liddell@example.com", PASSWORD, address="198.51.100.20")
    assert signed_in(client) is None
    assert "for this account" in errors(response)


def test_sign_ins_that_succeed_do_not_use_up_the_limit(alice: Customer, settings: Any) -> None:
    settings.SIGNIN_FAILURES_PER_ACCOUNT = 2
    settings.SIGNIN_FAILURES_PER_ADDRESS = 2
    for _ in range(5):
        client, _ = sign_in("alice_liddell", PASSWORD)
        assert signed_in(client) == alice.user


def test_one_address_trying_many_accounts_is_paused(
    alice: Customer, bob: Customer, settings: Any
) -> None:
    settings.SIGNIN_FAILURES_PER_ADDRESS = 10
    for index in range(10):
        sign_in(f"guess{index}", "wrong", address="198.51.100.30")
    client, response = sign_in("bob_builder", PASSWORD, address="198.51.100.30")
    assert signed_in(client) is None
    message = errors(response)
    assert "from your network" in message
    assert WAIT.search(message)
    # Bob himself, from elsewhere, is not locked out by what that address did.
    client, _ = sign_in("bob_builder", PASSWORD, address="198.51.100.31")
    assert signed_in(client) == bob.user


def test_behind_the_load_balancer_a_forged_forwarded_for_entry_changes_nothing(
    alice: Customer, settings: Any
) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    settings.SIGNIN_FAILURES_PER_ADDRESS = 5
    for index in range(5):
        # The client wrote the first entry; the load balancer (the peer) appended the second.
        sign_in(
            f"guess{index}",
            "wrong",
            address="10.0.0.7",
            forwarded_for=f"192.0.2.{index}, 203.0.113.9",
        )
    client, response = sign_in(
        "alice_liddell",
        PASSWORD,
        address="10.0.0.8",
        forwarded_for="192.0.2.200, 203.0.113.9",
    )
    assert signed_in(client) is None
    assert "from your network" in errors(response)
    # Another client behind the same load balancer is counted apart.
    client, _ = sign_in("alice_liddell", PASSWORD, address="10.0.0.7", forwarded_for="203.0.113.10")
    assert signed_in(client) == alice.user


def test_without_a_trusted_proxy_forwarded_for_is_ignored(alice: Customer, settings: Any) -> None:
    settings.SIGNIN_FAILURES_PER_ADDRESS = 3
    for index in range(3):
        sign_in(
            f"guess{index}",
            "wrong",
            address="198.51.100.40",
            forwarded_for=f"192.0.2.{index}",
        )
    client, response = sign_in("alice_liddell", PASSWORD, address="198.51.100.40")
    assert signed_in(client) is None
    assert "from your network" in errors(response)


def test_while_the_counters_are_unavailable_sign_in_fails_closed_with_a_clear_error(
    alice: Customer, settings: Any
) -> None:
    # Nothing listens on this port: the cache (Redis) is down.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        }
    }
    caches.close_all()

    client, response = sign_in("alice_liddell", PASSWORD)

    assert response.status_code == 200
    assert "Sign-in is unavailable for a moment" in errors(response)
    assert signed_in(client) is None


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker: Any) -> Iterator[int]:
    with django_db_blocker.unblock(), app_server() as port:
        yield port


def server_sign_in(port: int, name: str, password: str) -> tuple[int, str]:
    """Signs in on the server in the other process, as a browser would (CSRF cookie and field)."""
    url = f"http://127.0.0.1:{port}/accounts/login/"
    with urllib.request.urlopen(url, timeout=10) as page:
        cookie = SimpleCookie(page.headers["Set-Cookie"])["csrftoken"].value
    form = {"username": name, "password": password, "csrfmiddlewaretoken": cookie}

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    post = urllib.request.Request(
        url, data=urllib.parse.urlencode(form).encode(), headers={"Cookie": f"csrftoken={cookie}"}
    )
    try:
        with urllib.request.build_opener(NoRedirect).open(post, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as redirect:
        return redirect.code, ""


@pytest.mark.redis
@pytest.mark.shared_counters
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL")
@pytest.mark.django_db(transaction=True)
def test_failures_counted_in_one_process_hold_in_another(server: int, settings: Any) -> None:
    # An account of this run only: the counters here are the server's, in the shared Redis.
    customer = make_customer(uuid.uuid4().hex[:12], f"Carol {uuid.uuid4().hex[:8]}")
    make_login(customer)
    for attempt in range(settings.SIGNIN_FAILURES_PER_ACCOUNT):
        sign_in(customer.username, f"wrong {attempt}", address=f"198.51.100.{50 + attempt}")
    status, page = server_sign_in(server, customer.username, PASSWORD)
    assert status == 200
    assert "Too many failed sign-in attempts for this account" in page
