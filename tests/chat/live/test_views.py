"""The customer's pages: conversations, the chat page and the development-only demo sign-in."""

import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chat.live.conversations import conversation_list, conversation_start
from orders.models import Customer
from tests.conftest import make_customer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_demo_sign_in_does_not_exist_unless_enabled(settings: Any, alice: Customer) -> None:
    settings.DEMO_LOGIN_ENABLED = False

    assert Client().get("/accounts/demo/").status_code == 404
    assert Client().post("/accounts/demo/", {"customer": alice.pk}).status_code == 404


def test_the_demo_sign_in_lists_customers_and_signs_in_as_one(settings: Any) -> None:
    settings.DEMO_LOGIN_ENABLED = True
    terry = make_customer("012347", "Terry Whitlock")
    client = Client()

    page = client.get(reverse("demo_login"))
    response = client.post(reverse("demo_login"), {"customer": terry.pk})

    assert "Sign in as Terry Whitlock" in page.content.decode()
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")
    terry.refresh_from_db()
    assert terry.user is not None
    assert client.get(reverse("chat:home")).context["user"] == terry.user


def test_the_demo_sign_in_reuses_an_existing_login(settings: Any, alice: Customer) -> None:
    settings.DEMO_LOGIN_ENABLED = True

    Client().post(reverse("demo_login"), {"customer": alice.pk})

    assert User.objects.filter(username=alice.username).count() == 1


def test_home_lists_only_the_customers_own_conversations(alice: Customer, bob: Customer) -> None:
    assert alice.user is not None
    assert bob.user is not None
    mine = conversation_start(user=alice.user)
    theirs = conversation_start(user=bob.user)

    page = signed_in(alice.user).get(reverse("chat:home")).content.decode()

    assert reverse("chat:conversation", args=[mine.pk]) in page
    assert reverse("chat:conversation", args=[theirs.pk]) not in page


def test_new_conversation_opens_its_chat_page(alice: Customer) -> None:
    assert alice.user is not None
    client = signed_in(alice.user)

    response = client.post(reverse("chat:conversation_new"))

    conversation = conversation_list(user=alice.user)[0]
    assert response["Location"] == reverse("chat:conversation", args=[conversation.pk])
    assert client.get(reverse("chat:conversation_new")).status_code == 405


def test_it_hides_another_customers_conversation(alice: Customer, bob: Customer) -> None:
    assert alice.user is not None
    assert bob.user is not None
    conversation = conversation_start(user=alice.user)

    response = signed_in(bob.user).get(reverse("chat:conversation", args=[conversation.pk]))

    assert response.status_code == 404


def test_staff_without_a_customer_get_an_explanation(support: User) -> None:
    client = signed_in(support)

    home = client.get(reverse("chat:home"))
    new = client.post(reverse("chat:conversation_new"))

    assert "isn't linked to a customer" in home.content.decode()
    assert new.status_code == 403


def test_anonymous_visitors_are_sent_to_sign_in() -> None:
    response = Client().get(reverse("chat:home"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_chat_page_has_no_inline_script_and_passes_its_config_as_data(alice: Customer) -> None:
    assert alice.user is not None
    conversation = conversation_start(user=alice.user)

    response = signed_in(alice.user).get(reverse("chat:conversation", args=[conversation.pk]))
    page = response.content.decode()

    assert "script-src 'self'" in response["Content-Security-Policy"]
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.DOTALL)
    for attributes, body in scripts:
        assert "src=" in attributes or 'type="application/json"' in attributes
        assert "src=" not in attributes or not body.strip()
    found = re.search(r'<script id="chat-config" type="application/json">(.*?)</script>', page)
    assert found is not None
    config = json.loads(found.group(1))
    assert config["websocketPath"] == f"/ws/conversations/{conversation.pk}/"
    assert 'aria-live="polite"' in page
    assert '<label for="message">' in page
