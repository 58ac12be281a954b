"""The staff pages outside the admin follow the admin's rule for staff sessions: with Cognito
configured, a password session (not a break-glass account's) does not get them."""

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chat.models import Conversation
from orders.models import Customer
from tests.chat.factories import make_conversation
from tests.chat.handoff_helpers import make_agent

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(db: None) -> User:
    return make_agent("sam", "Sam")


@pytest.fixture
def conversation(alice: Customer) -> Conversation:
    return make_conversation(alice)


def pages(conversation: Conversation) -> list[str]:
    return [
        reverse("chat:staff_inbox"),
        reverse("chat:staff_conversation", args=[conversation.pk]),
    ]


def signed_in_with_a_password(user: User) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def test_with_cognito_a_password_session_gets_no_staff_page(
    agent: User, conversation: Conversation, settings: Any
) -> None:
    settings.COGNITO_ENABLED = True
    settings.ADMIN_BREAK_GLASS_USERNAMES = []
    client = signed_in_with_a_password(agent)

    assert [client.get(page).status_code for page in pages(conversation)] == [403, 403]


def test_with_cognito_the_break_glass_account_still_gets_them(
    agent: User, conversation: Conversation, settings: Any
) -> None:
    settings.COGNITO_ENABLED = True
    settings.ADMIN_BREAK_GLASS_USERNAMES = ["sam"]
    client = signed_in_with_a_password(agent)

    assert [client.get(page).status_code for page in pages(conversation)] == [200, 200]


def test_without_cognito_a_password_session_is_fine(
    agent: User, conversation: Conversation, settings: Any
) -> None:
    settings.COGNITO_ENABLED = False
    client = signed_in_with_a_password(agent)

    assert [client.get(page).status_code for page in pages(conversation)] == [200, 200]
