"""Faults with real parts: a Redis stopped and started under open sockets, a PostgreSQL restarted
mid-turn, an app server SIGKILLed mid-turn.

Each test runs the real server (daphne in its own process) and checks, from the customer's side,
that every message they sent is stored, that the history the engine sends next satisfies every
Converse rule, and that they can carry on within the bound. Time limits here are generous
timeouts, never speed assertions. Run them alone with ``pytest -m faults``.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from chat.engine.history import violations
from chat.live.conversations import conversation_start, model_history
from chat.models import Message, MessageKind
from orders.models import Customer
from tests.chat.live.services import throwaway_redis
from tests.chat.sockets import (
    RawWebSocket,
    app_server,
    conversation_path,
    database_sessions_closed,  # noqa: F401 - a fixture
    is_submitted,
    session_cookie,
)

pytestmark = [
    pytest.mark.faults,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("database_sessions_closed"),
]

Event = dict[str, Any]


def send_frame(text: str) -> Event:
    return {"type": "send", "text": text, "client_message_id": str(uuid.uuid4())}


def is_live(state: str) -> Any:
    return lambda event: event.get("type") == "live" and event.get("state") == state


def is_reply(event: Event) -> bool:
    return event.get("type") == "message" and event.get("role") == "assistant"


def customer_texts(conversation_id: Any) -> list[str]:
    return [
        block["text"]
        for message in Message.objects.filter(
            conversation_id=conversation_id, kind=MessageKind.CUSTOMER
        ).order_by("seq")
        for block in message.content
        if "text" in block
    ]


def next_request_problems(conversation_id: Any) -> list[str]:
    """What Converse would reject in the history the engine sends with the next message."""
    history = model_history(conversation_id)
    return violations([*history, {"role": "user", "content": [{"text": "And now?"}]}])


@pytest.fixture(autouse=True)
def fast_hashes(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- Redis ---------------------------------------------------------------------------------------


async def test_redis_stopped_under_open_sockets_pauses_live_updates_and_loses_nothing(
    django_db_blocker: Any, alice: Customer
) -> None:
    assert alice.user is not None
    conversation = await sync_to_async(conversation_start)(user=alice.user)
    cookie = await sync_to_async(session_cookie)(alice.user)
    path = conversation_path(conversation.pk)
    env = {"CHAT_MODEL": "demo", "CHAT_DEMO_DELAY_SECONDS": "0.01"}

    with throwaway_redis() as redis:
        env["REDIS_URL"] = redis.url
        with django_db_blocker.unblock(), app_server(env=env) as port:
            first = await RawWebSocket.connect(port, path, cookie=cookie)
            await first.send({"type": "resume", "after_seq": 0})
            hello = send_frame("Hello")
            await first.send(hello)
            await first.receive_until(is_submitted(hello["client_message_id"]))

            redis.stop()
            # The open socket stays open and says live updates are paused.
            paused = await first.receive_until(is_live("paused"), within=30)
            assert "paused" in paused["text"]
            # A message still runs its turn and is answered (from the database).
            during = send_frame("Where is my order?")
            await first.send(during)
            submitted = await first.receive_until(
                is_submitted(during["client_message_id"]), within=60
            )
            assert submitted["accepted"] is True
            assert is_reply(first.events[-2]) or any(is_reply(event) for event in first.events[-6:])
            # A new socket opens (HTTP 101, not 500) and works in the paused state.
            second = await RawWebSocket.connect(port, path, cookie=cookie)
            await second.receive_until(is_live("paused"), within=30)
            await second.send({"type": "resume", "after_seq": 0})
            await second.receive_until(is_reply)

            redis.start()
            # Delivery resumes by itself, on both sockets.
            await first.receive_until(is_live("resumed"), within=30)
            await second.receive_until(is_live("resumed"), within=30)
            # A turn started from one socket streams live to the other again.
            after = send_frame("Hello again")
            await second.send(after)
            await first.receive_until(lambda event: event.get("type") == "delta", within=30)
            await second.receive_until(is_submitted(after["client_message_id"]), within=60)
            # A new socket after Redis is back opens normally.
            third = await RawWebSocket.connect(port, path, cookie=cookie)
            await third.send({"type": "ping"})
            await third.receive_until(lambda event: event.get("type") == "pong")
            assert not any(event.get("type") == "live" for event in third.events)
            for socket in (first, second, third):
                await socket.close()

    texts = await sync_to_async(customer_texts)(conversation.pk)
    assert texts == ["Hello", "Where is my order?", "Hello again"]
    assert await sync_to_async(next_request_problems)(conversation.pk) == []
