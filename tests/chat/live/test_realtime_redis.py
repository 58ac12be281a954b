"""Real-time chat across processes through a real Redis channel layer.

One side is an in-process socket through the ASGI stack; the other a daphne server in its own
process on the same test database and Redis.
"""

import asyncio
import copy
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore

from chat.engine.demo.model import DemoModel
from chat.live import realtime
from chat.live.conversations import conversation_start, events_since
from chat.live.emitter import layer_message
from chat.models import Conversation, Turn
from orders.models import Customer
from tests.chat.sockets import (
    RawWebSocket,
    Socket,
    app_server,
    conversation_path,
    database_sessions_closed,  # noqa: F401 - a fixture
    is_submitted,
    is_turn_end,
    session_cookie,
    signed_in_socket,
)

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("database_sessions_closed"),
]

SLOW_TURN_SECONDS = 1.0
GREETING = "Hello"


def demo_chunks(text: str) -> int:
    """How many streamed pieces the demo model's answer to ``text`` has (its pause is per piece)."""
    stream = DemoModel(delay_seconds=0).converse_stream(
        modelId="demo", messages=[{"role": "user", "content": [{"text": text}]}]
    )["stream"]
    return sum(1 for event in stream if "contentBlockDelta" in event)


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker: Any) -> Iterator[int]:
    # Paced so that one answer to GREETING streams for about SLOW_TURN_SECONDS.
    delay = SLOW_TURN_SECONDS / demo_chunks(GREETING)
    with (
        django_db_blocker.unblock(),
        app_server(env={"CHAT_DEMO_DELAY_SECONDS": f"{delay:.4f}"}) as port,
    ):
        yield port


@pytest.fixture(autouse=True)
def demo_settings(settings: Any) -> None:
    # A channel layer of its own per test: the Redis layer's locks belong to one event loop, and
    # each test runs on a new one.
    settings.CHANNEL_LAYERS = copy.deepcopy(settings.CHANNEL_LAYERS)
    settings.CHAT_MODEL = "demo"
    settings.CHAT_DEMO_DELAY_SECONDS = 0.0
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 1000
    settings.CHAT_DAILY_TOKEN_BUDGET = 0
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
async def settled_turns() -> Any:
    yield
    await realtime.turns_settled()


def send_frame(text: str) -> dict[str, Any]:
    return {"type": "send", "text": text, "client_message_id": str(uuid.uuid4())}


def is_assistant_message(event: dict[str, Any]) -> bool:
    return event.get("type") == "message" and event.get("role") == "assistant"


async def test_a_turn_started_in_one_process_is_seen_live_in_another(
    server: int, alice: Customer
) -> None:
    assert alice.user is not None
    conversation = await sync_to_async(conversation_start)(user=alice.user)
    cookie = await sync_to_async(session_cookie)(alice.user)
    here = await signed_in_socket(alice.user, conversation.pk)
    await here.send({"type": "resume", "after_seq": 0})
    there = await RawWebSocket.connect(server, conversation_path(conversation.pk), cookie=cookie)
    await there.send({"type": "resume", "after_seq": 0})

    frame = send_frame(GREETING)
    await there.send(frame)
    await here.receive_until(lambda event: event.get("type") == "delta")
    await there.receive_until(is_submitted(frame["client_message_id"]))
    await here.receive_until(is_assistant_message)

    kinds = [event["type"] for event in here.events]
    assert kinds.index("delta") < kinds.index("message", kinds.index("delta"))
    assert [(event["seq"], event["role"]) for event in here.messages()] == [
        (1, "customer"),
        (2, "assistant"),
    ]
    # Each tab got every delta once: the sender from its turn, the other through Redis.
    reply = here.messages()[-1]["text"]
    for events in (here.events, there.events):
        assert "".join(event["text"] for event in events if event["type"] == "delta") == reply
    assert [event["seq"] for event in there.events if event["type"] == "message"] == [1, 2]
    await here.close()
    await there.close()


async def test_tabs_in_two_processes_see_each_others_turns_live_when_the_other_opened_first(
    server: int, alice: Customer
) -> None:
    assert alice.user is not None
    conversation = await sync_to_async(conversation_start)(user=alice.user)
    cookie = await sync_to_async(session_cookie)(alice.user)
    there = await RawWebSocket.connect(server, conversation_path(conversation.pk), cookie=cookie)
    await there.send({"type": "resume", "after_seq": 0})
    await there.send({"type": "ping"})
    await there.receive_until(lambda event: event.get("type") == "pong")
    here = await signed_in_socket(alice.user, conversation.pk)
    await here.send({"type": "resume", "after_seq": 0})

    # Here knows of there from joining; there, from here's announcement.
    mine, theirs = send_frame(GREETING), send_frame(GREETING)
    await here.send(mine)
    await here.receive_until(is_submitted(mine["client_message_id"]))
    await there.receive_until(lambda event: is_turn_end(event) and event.get("last_seq") == 2)
    await there.send(theirs)
    await there.receive_until(is_submitted(theirs["client_message_id"]))
    await here.receive_until(lambda event: is_turn_end(event) and event.get("last_seq") == 4)

    # Deltas only ever travel live: the database has none.
    for events in (here.events, there.events):
        kinds = [event["type"] for event in events]
        assert kinds.count("delta") >= 2
        assert [event["seq"] for event in events if event["type"] == "message"] == [1, 2, 3, 4]
    here_deltas = [e for e in here.events if e["type"] == "delta"]
    there_deltas = [e for e in there.events if e["type"] == "delta"]
    assert {e["turn"] for e in here_deltas} == {e["turn"] for e in there_deltas}
    assert len({e["turn"] for e in here_deltas}) == 2
    await here.close()
    await there.close()


async def test_a_turns_events_go_through_redis_to_every_member_but_the_socket_that_started_it(
    settings: Any,
) -> None:
    assert "Origin" in settings.CHANNEL_LAYERS["default"]["BACKEND"]
    layer = get_channel_layer()
    sender, other = await layer.new_channel(), await layer.new_channel()
    for channel in (sender, other):
        await layer.group_add("conversation.x", channel)
    events = [{"type": "delta", "turn": "t", "text": "Hello"}]

    await layer.group_send("conversation.x", layer_message(events, origin=sender))
    await layer.group_send("conversation.x", layer_message(events))

    assert (await layer.receive(other))["events"] == events
    assert (await layer.receive(other))["events"] == events
    # Only the message without an origin reached the sender.
    assert (await layer.receive(sender))["origin"] == ""
    await layer.flush()


async def test_two_slow_turns_in_one_server_run_at_the_same_time(
    server: int, alice: Customer, bob: Customer
) -> None:
    sockets = []
    for customer in (alice, bob):
        assert customer.user is not None
        conversation = await sync_to_async(conversation_start)(user=customer.user)
        cookie = await sync_to_async(session_cookie)(customer.user)
        sockets.append(
            (
                conversation,
                await RawWebSocket.connect(
                    server, conversation_path(conversation.pk), cookie=cookie
                ),
            )
        )

    started = time.monotonic()
    frames = [send_frame(GREETING) for _ in sockets]
    await asyncio.gather(*(ws.send(frame) for (_, ws), frame in zip(sockets, frames, strict=True)))
    await asyncio.gather(
        *(
            ws.receive_until(is_submitted(frame["client_message_id"]))
            for (_, ws), frame in zip(sockets, frames, strict=True)
        )
    )
    elapsed = time.monotonic() - started

    turns = [await Turn.objects.aget(conversation=conversation) for conversation, _ in sockets]
    durations = [
        (turn.ended_at - turn.started_at).total_seconds() for turn in turns if turn.ended_at
    ]
    each = [round(duration, 2) for duration in durations]
    print(f"\ntwo concurrent slow turns: each {each} s, both done in {elapsed:.2f} s")
    assert len(durations) == 2
    # Overlap, not a stopwatch: each turn started before either ended.
    assert max(turn.started_at for turn in turns) < min(
        turn.ended_at for turn in turns if turn.ended_at
    )
    for _, ws in sockets:
        await ws.close()


SOCKETS = int(os.environ.get("CHAT_TEST_SOCKETS", "300"))


def many_customers(count: int) -> list[tuple[User, Conversation, str]]:
    customers = Customer.objects.bulk_create(
        Customer(
            id=f"9{index:05d}",
            name=f"Load Tester {index}",
            email=f"load{index}@example.com",
            username=f"load{index}",
        )
        for index in range(count)
    )
    users = User.objects.bulk_create(
        User(username=f"load{index}", password="!") for index in range(count)
    )
    result = []
    for customer, user in zip(customers, users, strict=True):
        customer.user = user
    Customer.objects.bulk_update(customers, ["user"])
    for user in users:
        session = SessionStore()
        session.update(
            {
                "_auth_user_id": str(user.pk),
                "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
                "_auth_user_hash": user.get_session_auth_hash(),
            }
        )
        session.create()
        assert session.session_key is not None
        result.append((user, conversation_start(user=user), session.session_key))
    return result


async def test_hundreds_of_sockets_each_get_their_whole_reply(settings: Any) -> None:
    # Real model calls mostly wait on the network; a small pause per streamed piece makes the
    # demo model do the same instead of holding the interpreter for the whole turn.
    settings.CHAT_DEMO_DELAY_SECONDS = 0.02
    # The demo model still computes in Python: with 32 turn threads on two cores the event loop
    # is starved of the interpreter lock and the layer's queue overflows (measured: most live
    # events dropped, every stored message still delivered). 8 suits two cores.
    settings.CHAT_MAX_CONCURRENT_TURNS = 8
    realtime.turn_executor_shutdown()
    people = await sync_to_async(many_customers)(SOCKETS)
    started = time.monotonic()
    sockets = await asyncio.gather(
        *(
            # All at once, in this process with the server: the last waits for every other
            # handshake (~9-10 s for 300 on an idle two-core machine), so it gets a minute.
            Socket(conversation_path(conversation.pk), cookie=cookie).connect(within=60)
            for _, conversation, cookie in people
        )
    )
    assert all(socket.connected for socket in sockets)
    connected = time.monotonic()

    frames = [send_frame("What are my orders?") for _ in sockets]
    for socket in sockets:
        await socket.send({"type": "resume", "after_seq": 0})
    await asyncio.gather(
        *(socket.send(frame) for socket, frame in zip(sockets, frames, strict=True))
    )
    await asyncio.gather(
        *(
            socket.receive_until(is_submitted(frame["client_message_id"]), within=90)
            for socket, frame in zip(sockets, frames, strict=True)
        )
    )
    answered = time.monotonic()
    # Deltas and turn events travel only through the layer, which drops them when a process's
    # inbound queue is over capacity: allowed (and measured). Losing a stored message is not.
    ended = await asyncio.gather(*(socket.seen(is_turn_end, within=15) for socket in sockets))
    layer_done = time.monotonic()
    deltas = sum(1 for socket in sockets for event in socket.events if event["type"] == "delta")

    complete = 0
    for socket, (_, conversation, _) in zip(sockets, people, strict=True):
        stored = await sync_to_async(events_since)(conversation=conversation, after_seq=0)
        if [event["seq"] for event in socket.messages()] == [
            event["seq"] for event in stored
        ] and any(event["role"] == "assistant" for event in stored):
            complete += 1
    print(
        f"\n{SOCKETS} sockets: connected in {connected - started:.1f} s, "
        f"all {SOCKETS} turns answered in {answered - connected:.1f} s; "
        f"{sum(ended)} got their turn's end through the layer (last {layer_done - answered:.1f} s "
        f"after the last answer), {deltas} delta messages in all"
    )
    assert complete == SOCKETS
    await asyncio.gather(*(socket.close() for socket in sockets))
    await realtime.turns_settled()
    realtime.turn_executor_shutdown()
