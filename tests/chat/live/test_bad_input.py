"""Hostile input at the chat's boundary: each gets a frame (or a 400) in words, the socket stays
open, nothing is stored half-way and nothing is logged at ERROR.

Through the real ASGI stack, on the real database: PostgreSQL is what refuses NUL characters.
"""

import json
import logging
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chat.live.handoff import handoff_request
from chat.models import Conversation, Feedback, Message, Turn
from orders.models import Customer
from tests.chat.backoffice_data import Builder, reply
from tests.chat.factories import make_conversation, user_of
from tests.chat.handoff_helpers import make_agent
from tests.chat.sockets import (
    Socket,
    conversation_path,
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

# Too deep for the JSON decoder (RecursionError) yet under the frame size limit.
DEEP = 20_000
DEEP_ARRAY = "[" * DEEP + "]" * DEEP
# Shallow enough for the JSON decoder, deep enough to hurt whatever walks it next.
NESTED_TEXT = '{"type": "send", "client_message_id": "abcdefgh12", "text": ' + (
    "[" * 900 + "]" * 900 + "}"
)


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> bool:
    return not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def still_open(socket: Socket) -> bool:
    await socket.send({"type": "ping"})
    return await socket.receive() == {"type": "pong"}


# --- Nesting --------------------------------------------------------------------------------------


@pytest.mark.parametrize("frame", [DEEP_ARRAY, NESTED_TEXT])
async def test_deeply_nested_json_gets_an_error_frame(
    frame: str, conversation: Conversation, alice_user: User, caplog: pytest.LogCaptureFixture
) -> None:
    socket = await signed_in_socket(alice_user, conversation.pk)

    await socket.send(frame)
    error = await socket.receive()

    assert error["type"] == "error"
    assert error["code"] == "invalid_frame"
    assert "reload" in error["text"]
    assert await still_open(socket)
    assert no_errors_logged(caplog)
    await socket.close()


@pytest.mark.parametrize("frame", [DEEP_ARRAY, '{"type": "reply", "text": ' + DEEP_ARRAY + "}"])
async def test_deeply_nested_json_on_a_staff_socket_gets_an_error_frame(
    frame: str, conversation: Conversation, caplog: pytest.LogCaptureFixture
) -> None:
    agent = await sync_to_async(make_agent)("sam", "Sam")
    cookie = await sync_to_async(session_cookie)(agent)
    staff = await Socket(f"/ws/staff/conversations/{conversation.pk}/", cookie=cookie).connect()
    await staff.receive_until(lambda event: event.get("type") == "handoff")
    inbox = await Socket("/ws/staff/inbox/", cookie=cookie).connect()
    await inbox.receive_until(lambda event: event.get("type") == "inbox")

    for socket in (staff, inbox):
        await socket.send(frame)
        error = await socket.receive()
        assert error["type"] == "error"
        assert await still_open(socket)
        await socket.close()
    assert no_errors_logged(caplog)


def test_the_feedback_endpoint_answers_deep_json_with_400(
    alice: Customer, caplog: pytest.LogCaptureFixture
) -> None:
    chat = Builder(make_conversation(alice))
    chat.customer("Hi")
    chat.assistant(reply("Hello!"))
    client = Client()
    client.force_login(user_of(alice))
    url = reverse("chat:message_feedback", args=[chat.conversation.pk, 2])

    for body in (DEEP_ARRAY, '{"score": 1, "comment": ' + "[" * 900 + "]" * 900 + "}"):
        response = client.post(url, body, content_type="application/json")
        assert response.status_code == 400
        assert response.json()["error"]
    assert not Feedback.objects.exists()
    assert no_errors_logged(caplog)


# --- Characters PostgreSQL cannot store -----------------------------------------------------------


@pytest.mark.parametrize("text", ["hello\\u0000world", "broken \\ud83d emoji", "\\udc00"])
async def test_nul_and_lone_surrogates_are_refused_in_words(
    text: str, conversation: Conversation, alice_user: User, caplog: pytest.LogCaptureFixture
) -> None:
    socket = await signed_in_socket(alice_user, conversation.pk)

    # Written by hand: the escapes must reach the server as JSON escapes.
    await socket.send(
        f'{{"type": "send", "client_message_id": "{uuid.uuid4()}", "text": "{text}"}}'
    )
    error = await socket.receive()

    assert error["code"] == "invalid_characters"
    assert "character" in error["text"]
    assert error["retryable"] is False
    assert await still_open(socket)
    assert not await Message.objects.filter(conversation=conversation).aexists()
    assert not await Turn.objects.filter(conversation=conversation).aexists()
    assert no_errors_logged(caplog)
    await socket.close()


async def test_a_staff_reply_with_a_nul_is_refused_in_words(
    conversation: Conversation, caplog: pytest.LogCaptureFixture
) -> None:
    agent = await sync_to_async(make_agent)("sam", "Sam")
    await sync_to_async(handoff_request)(conversation=conversation, user=None)
    cookie = await sync_to_async(session_cookie)(agent)
    staff = await Socket(f"/ws/staff/conversations/{conversation.pk}/", cookie=cookie).connect()
    await staff.receive_until(lambda event: event.get("type") == "handoff")

    await staff.send(
        f'{{"type": "reply", "client_message_id": "{uuid.uuid4()}", "text": "hi\\u0000"}}'
    )
    error = await staff.receive_until(lambda event: event.get("type") == "error")

    assert error["code"] == "invalid_characters"
    assert not await Message.objects.filter(conversation=conversation, kind="staff").aexists()
    assert no_errors_logged(caplog)
    await staff.close()


def test_a_feedback_comment_with_a_nul_is_refused_in_words(
    alice: Customer, caplog: pytest.LogCaptureFixture
) -> None:
    chat = Builder(make_conversation(alice))
    chat.customer("Hi")
    chat.assistant(reply("Hello!"))
    client = Client()
    client.force_login(user_of(alice))
    url = reverse("chat:message_feedback", args=[chat.conversation.pk, 2])

    response = client.post(
        url, '{"score": 1, "comment": "nice\\u0000"}', content_type="application/json"
    )

    assert response.status_code == 400
    assert "character" in response.json()["error"]
    assert not Feedback.objects.exists()
    assert no_errors_logged(caplog)


# --- Where to resume from -------------------------------------------------------------------------


@pytest.mark.parametrize("after_seq", ["%C2%B2", "1" * 5000, "99999999999", "%D9%A3"])
async def test_a_bad_after_seq_in_the_address_gets_an_error_frame(
    after_seq: str,
    conversation: Conversation,
    alice_user: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cookie = await sync_to_async(session_cookie)(alice_user)
    socket = await Socket(
        f"{conversation_path(conversation.pk)}?after_seq={after_seq}", cookie=cookie
    ).connect()

    assert socket.connected
    error = await socket.receive()
    assert error["code"] == "invalid_after_seq"
    assert "reload" in error["text"]
    assert await still_open(socket)
    assert no_errors_logged(caplog)
    await socket.close()


async def test_a_resume_frame_beyond_any_seq_gets_an_error_frame(
    conversation: Conversation, alice_user: User, caplog: pytest.LogCaptureFixture
) -> None:
    socket = await signed_in_socket(alice_user, conversation.pk)

    await socket.send(json.dumps({"type": "resume", "after_seq": 10**4000}))
    error = await socket.receive()

    assert error["code"] == "invalid_after_seq"
    assert await still_open(socket)
    assert no_errors_logged(caplog)
    await socket.close()
