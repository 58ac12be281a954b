"""Faults with real parts: a Redis stopped and started under open sockets, a PostgreSQL restarted
mid-turn, an app server SIGKILLed mid-turn.

Each test runs the real server (daphne in its own process) and checks, from the customer's side,
that every message they sent is stored, that the history the engine sends next satisfies every
Converse rule, and that they can carry on within the bound. Time limits here are generous
timeouts, never speed assertions. Run them alone with ``pytest -m faults``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from chat.engine.history import violations
from chat.live.conversations import conversation_start
from chat.live.model_history import model_history
from chat.models import Message, MessageKind
from orders.models import Customer
from tests.chat.bedrock_standin import (
    BedrockStandIn,
    stream_reply,
    text_stream_frames,
    tool_stream_frames,
)
from tests.chat.live.services import app_process, bedrock_env, throwaway_postgres, throwaway_redis
from tests.chat.sockets import (
    RawWebSocket,
    app_server,
    conversation_path,
    database_sessions_closed,  # noqa: F401 - a fixture
    database_url,
    is_submitted,
    session_cookie,
)
from tests.conftest import make_order

pytestmark = [
    pytest.mark.faults,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("database_sessions_closed"),
]

Event = dict[str, Any]

# The bound: a dead turn is closed, and the customer can carry on, within 15 s.
RESTART_BOUND_SECONDS = 15


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
    history = model_history(conversation_id).messages
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


# --- The app server killed mid-turn ------------------------------------------------------------


@pytest.fixture
def standin() -> Iterator[BedrockStandIn]:
    server = BedrockStandIn()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def request_messages(standin: BedrockStandIn) -> list[dict[str, Any]]:
    """The history the app sent with its latest model call."""
    return list(standin.received[-1].json()["messages"])


def texts_in(messages: list[dict[str, Any]]) -> str:
    return json.dumps(messages)


async def test_a_server_killed_mid_turn_closes_the_turn_by_itself_and_answers_the_resend(
    django_db_blocker: Any, alice: Customer, standin: BedrockStandIn
) -> None:
    assert alice.user is not None
    await sync_to_async(make_order)("40001", alice)
    conversation = await sync_to_async(conversation_start)(user=alice.user)
    cookie = await sync_to_async(session_cookie)(alice.user)
    path = conversation_path(conversation.pk)
    question = send_frame("Where is order 40001?")
    standin.script(
        stream_reply(
            tool_stream_frames("Let me look.", "t-1", "get_order_by_id", {"order_id": "40001"})
        ),
        # The answer stops after its first words: the turn is mid-flight when the server dies.
        stream_reply(
            text_stream_frames("<reply>Order 40001 ", "is on its way.</reply>"), pause_at=2
        ),
        stream_reply(text_stream_frames("<reply>Order 40001 is on its way.</reply>")),
        stream_reply(text_stream_frames("<reply>You're welcome.</reply>")),
    )
    env = {**bedrock_env(standin.url), "DATABASE_URL": database_url(connection.settings_dict)}

    with django_db_blocker.unblock(), app_process(env) as app:
        socket = await RawWebSocket.connect(app.port, path, cookie=cookie)
        await socket.send({"type": "resume", "after_seq": 0})
        await socket.send(question)
        await socket.receive_until(lambda event: event.get("type") == "delta", within=30)

        app.kill()
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            await socket.receive(within=10)
        app.start()

        # The page reconnects, resumes and sends the unanswered message again, as chat.js does.
        socket = await RawWebSocket.connect(app.port, path, cookie=cookie)
        await socket.send({"type": "resume", "after_seq": 0})
        notice = await socket.receive_until(
            lambda event: event.get("role") == "notice", within=RESTART_BOUND_SECONDS
        )
        assert "send your message again" in notice["text"]
        await socket.send(question)
        submitted = await socket.receive_until(
            is_submitted(question["client_message_id"]), within=60
        )
        assert submitted["accepted"] is True
        assert any(is_reply(event) and "on its way" in event["text"] for event in socket.events), (
            socket.events[-10:]
        )
        resent_history = request_messages(standin)
        # The customer carries on.
        thanks = send_frame("Thanks")
        await socket.send(thanks)
        await socket.receive_until(is_submitted(thanks["client_message_id"]), within=60)
        await socket.close()
        standin.release()

    assert violations(resent_history) == []
    assert "Where is order 40001?" in texts_in(resent_history)
    assert violations(request_messages(standin)) == []
    texts = await sync_to_async(customer_texts)(conversation.pk)
    assert texts == ["Where is order 40001?", "Thanks"]  # the resend was not stored twice
    assert await sync_to_async(next_request_problems)(conversation.pk) == []


# --- PostgreSQL restarted mid-turn -------------------------------------------------------------

# Run in the app's own settings against the throwaway cluster: a customer signed in, with a
# conversation. Prints the session key and the conversation id.
SIGNED_IN_CUSTOMER = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from chat.live.conversations import conversation_start
from orders.models import Customer
user = User.objects.create_user(username="alice", email="alice@example.com")
Customer.objects.create(
    id="012345", name="Alice Liddell", email="alice@example.com", username="alice", user=user
)
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
conversation = conversation_start(user=user)
print(json.dumps({"cookie": session.session_key, "conversation": str(conversation.pk)}))
"""


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=Path(__file__).resolve().parents[3],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.chat.server_settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def stored_customer_texts(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as db:
        rows = db.execute(
            "SELECT content FROM chat_message WHERE kind = 'customer' ORDER BY seq"
        ).fetchall()
    return [block["text"] for (content,) in rows for block in content if "text" in block]


async def signed_in_customer(env: dict[str, str]) -> tuple[str, str]:
    """Migrates the throwaway database and signs a customer in: (conversation path, cookie)."""
    await asyncio.to_thread(manage, env, "migrate", "--no-input")
    output = await asyncio.to_thread(manage, env, "shell", "-c", SIGNED_IN_CUSTOMER)
    made = json.loads(output.strip().splitlines()[-1])
    return conversation_path(made["conversation"]), made["cookie"]


async def restart_while_the_model_answers(
    postgres: Any, standin: BedrockStandIn, socket: RawWebSocket, frame: Event
) -> None:
    """Sends ``frame``; once its answer streams, stops PostgreSQL, lets the model finish its
    answer while the database is away, and starts the database again 2 s later."""
    await socket.send({"type": "resume", "after_seq": 0})
    await socket.send(frame)
    await socket.receive_until(lambda event: event.get("type") == "delta", within=30)
    await asyncio.to_thread(postgres.stop)
    standin.release()
    await asyncio.sleep(2)
    await asyncio.to_thread(postgres.start)


async def test_postgres_restarted_mid_turn_within_the_pools_wait_costs_the_customer_nothing(
    standin: BedrockStandIn,
) -> None:
    with throwaway_postgres() as postgres:
        database = postgres.url("postgres")
        # The default DATABASE_POOL_TIMEOUT (10 s) outlasts this outage: the turn's write waits
        # for a connection to the restarted database instead of failing.
        env = {**bedrock_env(standin.url), "DATABASE_URL": database}
        path, cookie = await signed_in_customer(env)
        standin.script(
            stream_reply(text_stream_frames("<reply>Hello ", "there.</reply>"), pause_at=2)
        )
        first = send_frame("Hello")

        with app_process(env) as app:
            socket = await RawWebSocket.connect(app.port, path, cookie=cookie)
            await restart_while_the_model_answers(postgres, standin, socket, first)

            reply = await socket.receive_until(is_reply, within=RESTART_BOUND_SECONDS)
            await socket.receive_until(is_submitted(first["client_message_id"]), within=30)
            await socket.close()

        assert reply["text"] == "Hello there."
        assert not [event for event in socket.events if event.get("role") == "notice"]
        with psycopg.connect(database) as db:
            stored = db.execute("SELECT role, kind FROM chat_message ORDER BY seq").fetchall()
            states = db.execute("SELECT state, outcome FROM chat_turn").fetchall()
        assert stored == [("user", "customer"), ("assistant", "assistant")]
        assert states == [("completed", "answered")]


async def test_postgres_restarted_mid_turn_gives_one_try_again_notice_and_the_next_message_works(
    standin: BedrockStandIn,
) -> None:
    with throwaway_postgres() as postgres:
        database = postgres.url("postgres")
        # A write waits for a pooled connection up to DATABASE_POOL_TIMEOUT, so an outage shorter
        # than that costs the customer nothing (the test above); this one is longer than the
        # wait, so the turn's write fails.
        env = {
            **bedrock_env(standin.url),
            "DATABASE_URL": database,
            "DATABASE_POOL_TIMEOUT": "1",
        }
        path, cookie = await signed_in_customer(env)
        standin.script(
            # The answer stops after its first words while the database restarts.
            stream_reply(text_stream_frames("<reply>Hello ", "there.</reply>"), pause_at=2),
            stream_reply(text_stream_frames("<reply>Yes, I'm here.</reply>")),
        )
        first, second = send_frame("Hello"), send_frame("Are you there?")

        with app_process(env) as app:
            socket = await RawWebSocket.connect(app.port, path, cookie=cookie)
            await restart_while_the_model_answers(postgres, standin, socket, first)

            # One clear notice, and the turn ends: the conversation is not left "running".
            notice = await socket.receive_until(
                lambda event: event.get("role") == "notice", within=RESTART_BOUND_SECONDS
            )
            assert "try again" in notice["text"].lower()
            await socket.receive_until(is_submitted(first["client_message_id"]), within=30)
            await socket.send(second)
            await socket.receive_until(
                lambda event: is_reply(event) and "I'm here" in event["text"],
                within=RESTART_BOUND_SECONDS,
            )
            await socket.receive_until(is_submitted(second["client_message_id"]), within=30)
            notices = [event for event in socket.events if event.get("role") == "notice"]
            assert len({event["seq"] for event in notices}) == 1
            await socket.close()

        next_request = request_messages(standin)
        assert violations(next_request) == []
        assert "Hello" in texts_in(next_request)
        assert "Are you there?" in texts_in(next_request)
        texts = await asyncio.to_thread(stored_customer_texts, database)
        assert texts == ["Hello", "Are you there?"]
