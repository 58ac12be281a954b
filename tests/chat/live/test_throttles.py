"""Per-user throttles on what costs the server without costing the user: reloading a
conversation's messages (``resume`` frames), opening sockets, starting conversations. Each says
in words what to do; counts live in the cache, per user, so another user is unaffected."""

import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chat.models import Conversation
from orders.models import Customer
from tests.chat.handoff_helpers import make_agent
from tests.chat.sockets import (
    Socket,
    database_sessions_closed,  # noqa: F401 - a fixture
    session_cookie,
    signed_in_socket,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures(
        "database_sessions_closed", "socket_settings", "turns_settled", "turn_pool_stopped"
    ),
]


async def test_resume_frames_past_the_limit_are_refused_in_words(
    conversation: Conversation, alice_user: User, settings: Any
) -> None:
    settings.CHAT_RESUMES_PER_MINUTE = 3
    socket = await signed_in_socket(alice_user, conversation.pk)

    for _ in range(3):
        await socket.send({"type": "resume", "after_seq": 0})
        await socket.send({"type": "ping"})
        assert (await socket.receive_until(lambda e: e["type"] in ("pong", "error")))["type"] == (
            "pong"
        )
    await socket.send({"type": "resume", "after_seq": 0})
    refused = await socket.receive()

    assert refused["code"] == "resumes_limited"
    assert "wait" in refused["text"]
    await socket.send({"type": "ping"})
    assert await socket.receive() == {"type": "pong"}  # still open
    await socket.close()


async def test_a_staff_socket_counts_its_resumes_too(
    conversation: Conversation, settings: Any
) -> None:
    settings.CHAT_RESUMES_PER_MINUTE = 1
    agent = await sync_to_async(make_agent)("sam", "Sam")
    cookie = await sync_to_async(session_cookie)(agent)
    staff = await Socket(f"/ws/staff/conversations/{conversation.pk}/", cookie=cookie).connect()

    await staff.send({"type": "resume", "after_seq": 0})
    await staff.send({"type": "resume", "after_seq": 0})

    refused = await staff.receive_until(lambda event: event.get("type") == "error")
    assert refused["code"] == "resumes_limited"
    await staff.close()


async def test_socket_connections_past_the_limit_are_closed_with_4429(
    conversation: Conversation, alice_user: User, bob_user: User, settings: Any
) -> None:
    settings.CHAT_CONNECTS_PER_MINUTE = 2
    first = await signed_in_socket(alice_user, conversation.pk)
    second = await signed_in_socket(alice_user, conversation.pk)

    third = await signed_in_socket(alice_user, conversation.pk)

    assert third.connected  # accepted, then closed: the page can say why
    assert await third.closed_with() == 4429
    bobs = await signed_in_socket(bob_user, uuid.uuid4())  # another user: their own count
    assert await bobs.closed_with() == 4404
    for socket in (first, second):
        await socket.send({"type": "ping"})
        assert await socket.receive() == {"type": "pong"}
        await socket.close()


def test_starting_conversations_past_the_limit_answers_429_with_a_message(
    alice: Customer, alice_user: User, settings: Any
) -> None:
    settings.CHAT_CONVERSATIONS_PER_HOUR = 2
    client = Client()
    client.force_login(alice_user)

    answers = [client.post(reverse("chat:conversation_new")) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [302, 302, 429]
    assert "started many conversations" in answers[2].content.decode()
    assert Conversation.objects.filter(customer=alice).count() == 2
