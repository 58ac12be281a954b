"""The chat websocket through the real ASGI stack (origin check, session auth, URL routing).

The model is the offline demo model; the channel layer is whatever the settings choose (in
memory without REDIS_URL, Redis with it).
"""

import asyncio
import io
import json
import threading
import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.contrib.auth.models import User

from chat.live import access, consumers, limits, realtime
from chat.live.conversations import conversation_start, events_since, message_event
from chat.live.emitter import layer_message
from chat.live.storage import messages_append, notice
from chat.live.turns import turn_submit
from chat.models import Conversation, Message, Turn
from orders.models import Customer, Order, OrderEvent, OrderStatus
from tests.chat.factories import spend_tokens
from tests.chat.sockets import (
    Socket,
    conversation_path,
    database_sessions_closed,  # noqa: F401 - a fixture
    eventually,
    is_submitted,
    is_turn_end,
    session_cookie,
    signed_in_socket,
)
from tests.conftest import make_order

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures(
        "database_sessions_closed", "socket_settings", "turns_settled", "turn_pool_stopped"
    ),
]


def send_frame(text: str, client_message_id: str | None = None) -> dict[str, Any]:
    return {
        "type": "send",
        "text": text,
        "client_message_id": client_message_id or str(uuid.uuid4()),
    }


async def take_turn(socket: Socket, text: str, client_message_id: str | None = None) -> str:
    frame = send_frame(text, client_message_id)
    await socket.send(frame)
    await socket.receive_until(is_submitted(frame["client_message_id"]))
    return frame["client_message_id"]


# --- Who may connect --------------------------------------------------------------------------


async def test_it_refuses_an_anonymous_socket(conversation: Conversation) -> None:
    socket = await Socket(conversation_path(conversation.pk)).connect()

    # Accepted, then closed: refused before, the browser would only see 1006.
    assert socket.connected
    assert await socket.closed_with() == 4401


async def test_it_refuses_a_socket_from_another_origin(
    conversation: Conversation, alice_user: User
) -> None:
    cookie = await sync_to_async(session_cookie)(alice_user)

    socket = await Socket(
        conversation_path(conversation.pk), cookie=cookie, origin=b"https://evil.example"
    ).connect()

    assert not socket.connected


async def test_it_refuses_another_customers_conversation_like_a_missing_one(
    conversation: Conversation, bob_user: User
) -> None:
    someone_elses = await signed_in_socket(bob_user, conversation.pk)
    missing = await signed_in_socket(bob_user, uuid.uuid4())

    assert await someone_elses.closed_with() == await missing.closed_with() == 4404


async def test_it_lets_the_owner_in(conversation: Conversation, alice_user: User) -> None:
    socket = await signed_in_socket(alice_user, conversation.pk)

    assert socket.connected
    await socket.send({"type": "ping"})
    assert await socket.receive() == {"type": "pong"}
    await socket.close()


# --- Frames -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("this is not json", "invalid_json"),
        ("[1, 2]", "invalid_frame"),
        ({"type": "shout"}, "unknown_type"),
        ({"text": "no type"}, "unknown_type"),
        ({"type": "send", "text": "   ", "client_message_id": str(uuid.uuid4())}, "text_required"),
        ({"type": "send", "text": 42, "client_message_id": str(uuid.uuid4())}, "text_required"),
        (
            {"type": "send", "text": "x" * 201, "client_message_id": str(uuid.uuid4())},
            "text_too_long",
        ),
        (
            {"type": "send", "text": "y" * 50_000, "client_message_id": str(uuid.uuid4())},
            "text_too_long",
        ),
        ({"type": "send", "text": "hello"}, "invalid_client_message_id"),
        (
            {"type": "send", "text": "hello", "client_message_id": "x" * 65},
            "invalid_client_message_id",
        ),
        (
            {"type": "send", "text": "hello", "client_message_id": "<script>"},
            "invalid_client_message_id",
        ),
        ({"type": "decide", "action_id": "not-a-uuid", "approve": True}, "invalid_action_id"),
        ({"type": "decide", "action_id": str(uuid.uuid4()), "approve": "yes"}, "invalid_approve"),
        ({"type": "resume", "after_seq": -1}, "invalid_after_seq"),
        ({"type": "resume", "after_seq": True}, "invalid_after_seq"),
        ({"type": "resume", "after_seq": "3"}, "invalid_after_seq"),
    ],
)
async def test_it_answers_a_bad_frame_with_an_error_and_stays_open(
    frame: Any, code: str, conversation: Conversation, alice_user: User, settings: Any
) -> None:
    settings.CHAT_MESSAGE_MAX_CHARS = 200
    socket = await signed_in_socket(alice_user, conversation.pk)

    await socket.send(frame)
    error = await socket.receive()

    assert error["type"] == "error"
    assert error["code"] == code
    assert error["text"]
    await socket.send({"type": "ping"})
    assert await socket.receive() == {"type": "pong"}
    assert not await Turn.objects.filter(conversation=conversation).aexists()
    await socket.close()


async def test_an_oversized_message_tells_the_limit(
    conversation: Conversation, alice_user: User, settings: Any
) -> None:
    settings.CHAT_MESSAGE_MAX_CHARS = 200
    socket = await signed_in_socket(alice_user, conversation.pk)

    await socket.send(send_frame("x" * 201))

    assert "200 characters" in (await socket.receive())["text"]
    await socket.close()


# --- Turns ------------------------------------------------------------------------------------


async def test_a_message_gets_a_streamed_and_stored_reply(
    conversation: Conversation, alice_user: User
) -> None:
    socket = await signed_in_socket(alice_user, conversation.pk)
    await socket.send({"type": "resume", "after_seq": 0})

    await take_turn(socket, "I need help with an order")

    # Deltas travel through the channel layer, "submitted" straight from this socket: under load
    # the last deltas may come after it.
    assert await socket.seen(lambda event: event["type"] == "delta")
    roles = [event["role"] for event in socket.messages()]
    assert roles == ["customer", "assistant"]
    assert socket.messages()[0]["text"] == "I need help with an order"
    assert [event["seq"] for event in socket.messages()] == [1, 2]
    await socket.close()


async def test_a_repeated_client_message_id_starts_no_second_turn(
    conversation: Conversation, alice_user: User
) -> None:
    socket = await signed_in_socket(alice_user, conversation.pk)
    client_message_id = str(uuid.uuid4())

    await take_turn(socket, "I need help with an order", client_message_id)
    await socket.send(send_frame("I need help with an order", client_message_id))
    repeat = await socket.receive_until(is_submitted(client_message_id))

    assert repeat["accepted"] is False
    assert await Turn.objects.filter(conversation=conversation).acount() == 1
    assert (
        await Message.objects.filter(
            conversation=conversation, client_message_id=client_message_id
        ).acount()
        == 1
    )
    await socket.close()


async def test_every_open_tab_of_the_customer_sees_the_turn(
    conversation: Conversation, alice_user: User
) -> None:
    first = await signed_in_socket(alice_user, conversation.pk)
    second = await signed_in_socket(alice_user, conversation.pk)
    await first.send({"type": "resume", "after_seq": 0})
    await second.send({"type": "resume", "after_seq": 0})

    await take_turn(first, "I need help with an order")
    await second.receive_until(
        lambda event: event.get("type") == "message" and event["role"] == "assistant"
    )

    assert [event["seq"] for event in second.messages()] == [1, 2]
    await first.close()
    await second.close()


async def test_resume_delivers_exactly_the_missed_messages(
    conversation: Conversation, alice_user: User
) -> None:
    socket = await signed_in_socket(alice_user, conversation.pk)
    await take_turn(socket, "I need help with an order")
    await take_turn(socket, "What are my orders?")
    await socket.close()
    stored = [
        event["seq"]
        for event in await sync_to_async(events_since)(conversation=conversation, after_seq=0)
    ]
    assert len(stored) >= 4

    later = await signed_in_socket(alice_user, conversation.pk)
    await later.send({"type": "resume", "after_seq": 2})
    for _ in stored[2:]:
        await later.receive()

    assert [event["seq"] for event in later.messages()] == stored[2:]
    assert later.frames == 1
    assert await later.nothing_more()
    await later.close()


async def test_a_repeated_live_message_is_not_sent_twice(
    conversation: Conversation, alice_user: User
) -> None:
    socket = await signed_in_socket(alice_user, conversation.pk)
    await socket.send({"type": "resume", "after_seq": 0})
    await take_turn(socket, "I need help with an order")
    assert await socket.seen(is_turn_end)
    while not await socket.nothing_more():
        await socket.receive()
    last = socket.messages()[-1]

    await get_channel_layer().group_send(
        realtime.group_name(conversation.pk), layer_message([last])
    )

    assert await socket.nothing_more()
    await socket.close()


async def test_a_live_message_after_a_gap_brings_the_missed_ones_from_the_database(
    conversation: Conversation, alice_user: User
) -> None:
    socket = await signed_in_socket(alice_user, conversation.pk)
    await socket.send({"type": "resume", "after_seq": 0})
    await take_turn(socket, "I need help with an order")
    while not await socket.nothing_more():
        await socket.receive()
    seen = len(socket.messages())
    # Stored while this socket heard nothing (as if the layer had dropped them).
    stored = await sync_to_async(messages_append)(
        conversation.pk,
        None,
        [notice("First missed"), notice("Second missed")],
    )

    second = message_event(stored[1])
    assert second is not None
    await get_channel_layer().group_send(
        realtime.group_name(conversation.pk), layer_message([second])
    )
    await socket.receive_until(lambda event: event.get("text") == "Second missed")

    assert [event["text"] for event in socket.messages()[seen:]] == [
        "First missed",
        "Second missed",
    ]
    assert await socket.nothing_more()
    await socket.close()


async def test_a_turns_end_names_its_last_stored_message_and_brings_a_lost_one_to_other_tabs(
    conversation: Conversation, alice_user: User
) -> None:
    socket = await signed_in_socket(alice_user, conversation.pk)
    await socket.send({"type": "resume", "after_seq": 0})
    await take_turn(socket, "I need help with an order")
    ended = next(event for event in socket.events if is_turn_end(event))  # before "submitted"
    seqs = await sync_to_async(lambda: list(conversation.messages.values_list("seq", flat=True)))()
    assert ended["last_seq"] == max(seqs)
    while not await socket.nothing_more():
        await socket.receive()
    seen = len(socket.messages())
    # Another turn's answer, stored while the layer dropped its message; only its end arrives.
    answer = await sync_to_async(messages_append)(conversation.pk, None, [notice("Lost answer")])
    await get_channel_layer().group_send(
        realtime.group_name(conversation.pk),
        layer_message([{**ended, "turn": "another", "last_seq": answer[-1].seq}]),
    )

    end = await socket.receive_until(is_turn_end)

    assert end["turn"] == "another"
    assert [event["text"] for event in socket.messages()[seen:]] == ["Lost answer"]
    await socket.close()


async def test_a_dropped_layer_message_loses_no_stored_message(
    conversation: Conversation, alice_user: User, settings: Any
) -> None:
    # A capacity of one drops most of a burst of group messages, silently, as a full layer does.
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1}}
    }
    socket = await signed_in_socket(alice_user, conversation.pk)
    await socket.send({"type": "resume", "after_seq": 0})

    await take_turn(socket, "I need help with an order")
    await take_turn(socket, "My order is 12345")

    stored = await sync_to_async(events_since)(conversation=conversation, after_seq=0)
    assert sorted({event["seq"] for event in socket.messages()}) == [
        event["seq"] for event in stored
    ]
    await socket.close()


async def test_a_turn_survives_the_socket_closing(
    conversation: Conversation, alice_user: User, settings: Any
) -> None:
    settings.CHAT_DEMO_DELAY_SECONDS = 0.05
    socket = await signed_in_socket(alice_user, conversation.pk)
    await socket.send(send_frame("I need help with an order"))
    await socket.receive_until(lambda event: event.get("type") == "delta")

    await socket.close()
    await realtime.turns_settled()

    events = await sync_to_async(events_since)(conversation=conversation, after_seq=0)
    assert [event["role"] for event in events] == ["customer", "assistant"]
    assert events[1]["text"]
    turn = await Turn.objects.aget(conversation=conversation)
    assert turn.state == "completed"


async def test_a_messages_session_check_and_limits_run_on_its_turns_own_thread(
    conversation: Conversation, alice_user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One trip off the event loop per message: the check, the limits and the turn in a row on
    # one turn-pool thread, not the check on another pool first.
    threads: dict[str, list[str]] = {"check": [], "limit": [], "turn": []}
    real_check, real_hit, real_submit = access.session_check, limits.rate_limit_hit, turn_submit

    def check(*args: Any, **kwargs: Any) -> Any:
        threads["check"].append(threading.current_thread().name)
        return real_check(*args, **kwargs)

    def hit(**kwargs: Any) -> None:
        threads["limit"].append(threading.current_thread().name)
        real_hit(**kwargs)

    def submit(**kwargs: Any) -> bool:
        threads["turn"].append(threading.current_thread().name)
        return real_submit(**kwargs)

    monkeypatch.setattr(access, "session_check", check)
    monkeypatch.setattr(limits, "rate_limit_hit", hit)
    monkeypatch.setattr(consumers, "turn_submit", submit)
    socket = await signed_in_socket(alice_user, conversation.pk)
    await socket.send({"type": "ping"})  # answered once the socket's opening check is done
    await socket.receive_until(lambda event: event.get("type") == "pong")
    threads["check"].clear()

    await take_turn(socket, "Hello")
    await socket.close()

    assert len(threads["turn"]) == 1
    assert threads["turn"][0].startswith("chat-turn")
    assert threads == {"check": threads["turn"], "limit": threads["turn"], "turn": threads["turn"]}


# --- Limits -----------------------------------------------------------------------------------


async def test_it_rate_limits_a_user_across_their_conversations(
    conversation: Conversation, alice_user: User, settings: Any
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 2
    other = await sync_to_async(conversation_start)(user=alice_user)
    socket = await signed_in_socket(alice_user, conversation.pk)
    other_socket = await signed_in_socket(alice_user, other.pk)

    await take_turn(socket, "Hello")
    await take_turn(other_socket, "Hello")
    await other_socket.send(send_frame("Hello again"))
    refused = await other_socket.receive_until(lambda event: event.get("type") == "error")

    assert refused["code"] == "rate_limited"
    assert refused["text"] == "You're sending messages too quickly. Please wait a moment."
    assert refused["retryable"] is True
    assert (
        await Turn.objects.filter(conversation__customer_id=conversation.customer_id).acount() == 2
    )
    await socket.close()
    await other_socket.close()


async def test_the_rate_limit_is_per_user(
    conversation: Conversation, alice_user: User, bob_user: User, settings: Any
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 1
    bobs = await sync_to_async(conversation_start)(user=bob_user)
    alice_socket = await signed_in_socket(alice_user, conversation.pk)
    bob_socket = await signed_in_socket(bob_user, bobs.pk)

    await take_turn(alice_socket, "Hello")
    await take_turn(bob_socket, "Hello")

    assert not [event for event in bob_socket.events if event.get("type") == "error"]
    await alice_socket.close()
    await bob_socket.close()


async def test_it_refuses_a_turn_once_todays_token_budget_is_spent(
    conversation: Conversation, alice_user: User, settings: Any
) -> None:
    settings.CHAT_DAILY_TOKEN_BUDGET = 1000
    await sync_to_async(spend_tokens)(conversation.customer_id, 1000)
    socket = await signed_in_socket(alice_user, conversation.pk)

    await socket.send(send_frame("Hello"))
    refused = await socket.receive_until(lambda event: event.get("type") == "error")

    assert refused["code"] == "daily_budget_exhausted"
    assert "today" in refused["text"]
    assert refused["retryable"] is False
    assert not await Turn.objects.filter(conversation=conversation).aexists()
    await socket.close()


async def test_another_customers_spending_does_not_count(
    conversation: Conversation, alice_user: User, bob_user: User, settings: Any
) -> None:
    settings.CHAT_DAILY_TOKEN_BUDGET = 1000
    bobs = await sync_to_async(conversation_start)(user=bob_user)
    await sync_to_async(spend_tokens)(bobs.customer_id, 5100)
    socket = await signed_in_socket(alice_user, conversation.pk)

    await take_turn(socket, "Hello")

    assert not [
        event for event in socket.events if event.get("type") == "error" and "code" in event
    ]
    await socket.close()


# --- Metrics ----------------------------------------------------------------------------------


async def test_it_counts_open_sockets_for_the_autoscaling_metric(
    conversation: Conversation, alice_user: User
) -> None:
    before = realtime.metrics()["open_websockets"]
    socket = await signed_in_socket(alice_user, conversation.pk)

    assert realtime.metrics()["open_websockets"] == before + 1
    await socket.close()
    assert realtime.metrics()["open_websockets"] == before


async def test_the_metrics_are_one_json_line_each() -> None:
    out = io.StringIO()

    realtime.write_metrics(out)

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["metric"] for line in lines] == ["open_websockets", "turns_in_flight"]
    assert all(isinstance(line["value"], int) for line in lines)


async def test_the_metrics_reporter_writes_periodically() -> None:

    out = io.StringIO()
    reporter = asyncio.create_task(realtime.report_metrics(interval=0.01, stream=out))
    await eventually(lambda: _has_lines(out, 4), within=5, interval=0.01)
    reporter.cancel()

    assert len(out.getvalue().splitlines()) >= 4


async def _has_lines(out: io.StringIO, count: int) -> bool:
    return len(out.getvalue().splitlines()) >= count


async def test_a_turn_in_flight_is_counted(
    conversation: Conversation, alice_user: User, settings: Any
) -> None:
    settings.CHAT_DEMO_DELAY_SECONDS = 0.05
    socket = await signed_in_socket(alice_user, conversation.pk)

    await socket.send(send_frame("I need help with an order"))
    await socket.receive_until(lambda event: event.get("type") == "delta")

    assert realtime.metrics()["turns_in_flight"] >= 1
    await socket.receive_until(is_turn_end)
    await socket.close()


async def test_a_refused_message_is_reported_to_its_own_tab_only(
    conversation: Conversation, alice_user: User, settings: Any
) -> None:
    settings.CHAT_DEMO_DELAY_SECONDS = 0.05
    first = await signed_in_socket(alice_user, conversation.pk)
    second = await signed_in_socket(alice_user, conversation.pk)
    await first.send(send_frame("I need help with an order"))
    await first.receive_until(lambda event: event.get("type") == "delta")

    frame = send_frame("Hello?")
    await second.send(frame)
    assert await second.seen(is_submitted(frame["client_message_id"]))
    assert await second.seen(lambda event: event.get("type") == "error")
    await first.receive_until(is_turn_end)

    refused = next(event for event in second.events if event.get("type") == "error")
    submitted = next(event for event in second.events if event.get("type") == "submitted")
    assert refused["retryable"] is True
    assert submitted["accepted"] is False
    assert not [event for event in first.events if event.get("type") == "error"]
    await first.close()
    await second.close()


async def test_a_confirmed_cancellation_runs_once(
    conversation: Conversation, alice: Customer, alice_user: User
) -> None:
    await sync_to_async(make_order)("37129", alice)
    socket = await signed_in_socket(alice_user, conversation.pk)
    await take_turn(socket, "My order is 37129")
    await take_turn(socket, "Please cancel my order")
    assert await socket.seen(lambda event: event.get("type") == "confirm")
    confirm = next(event for event in socket.events if event.get("type") == "confirm")

    decide = {"type": "decide", "action_id": confirm["action_id"], "approve": True}
    await socket.send(decide)
    first = await socket.receive_until(lambda event: event.get("type") == "decided")
    await socket.send(decide)
    second = await socket.receive_until(lambda event: event.get("type") == "decided")

    assert first["accepted"] is True
    assert second["accepted"] is False
    order = await Order.objects.aget(pk="37129")
    assert order.status == OrderStatus.CANCELLED
    assert await OrderEvent.objects.filter(order=order).acount() == 1
    await socket.close()


# --- A turn's end reaches the socket that sent the message ---------------------------------------


class DroppingLayer(InMemoryChannelLayer):
    """A layer that loses every group message, as an overloaded or unreachable Redis does."""

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        return None


async def test_the_sender_hears_its_reply_and_the_turn_end_even_when_the_layer_loses_them(
    conversation: Conversation, alice_user: User, settings: Any
) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "tests.chat.live.test_consumer.DroppingLayer", "CONFIG": {}}
    }
    socket = await signed_in_socket(alice_user, conversation.pk)
    await socket.send({"type": "resume", "after_seq": 0})

    client_message_id = await take_turn(socket, "I need help with an order")

    kinds = [event.get("type") for event in socket.events]
    assert kinds[-2:] == ["turn", "submitted"]
    assert is_turn_end(socket.events[-2])
    stored = await sync_to_async(events_since)(conversation=conversation, after_seq=0)
    assert [event["seq"] for event in socket.messages()] == [event["seq"] for event in stored]
    assert socket.events[-1]["client_message_id"] == client_message_id
    await socket.close()


async def test_the_turn_end_comes_once_and_before_submitted(
    conversation: Conversation, alice_user: User
) -> None:
    socket = await signed_in_socket(alice_user, conversation.pk)
    await socket.send({"type": "resume", "after_seq": 0})

    for text in ["I need help with an order", "My order is 12345", "Thanks"]:
        await take_turn(socket, text)
    while not await socket.nothing_more():
        await socket.receive()

    ends = [i for i, event in enumerate(socket.events) if is_turn_end(event)]
    submitted = [i for i, event in enumerate(socket.events) if event.get("type") == "submitted"]
    assert len(ends) == len(submitted) == 3
    assert all(end < sent for end, sent in zip(ends, submitted, strict=True))
    assert len({socket.events[i]["turn"] for i in ends}) == 3
    await socket.close()


# --- Relaying a turn ------------------------------------------------------------------------------


async def test_a_tool_turn_reaches_its_own_tab_once_and_every_other_tab_in_seq_order(
    conversation: Conversation, alice: Customer, alice_user: User
) -> None:
    await sync_to_async(make_order)("32057", alice)
    sender = await signed_in_socket(alice_user, conversation.pk)
    other = await signed_in_socket(alice_user, conversation.pk)
    for socket in (sender, other):
        await socket.send({"type": "resume", "after_seq": 0})
    frame = send_frame("My order is 32057")

    await sender.send(frame)
    await sender.receive_until(is_submitted(frame["client_message_id"]))
    await other.receive_until(is_turn_end)
    stored = await sync_to_async(events_since)(conversation=conversation, after_seq=0)

    kinds = [event["type"] for event in sender.events]
    assert kinds.count("turn") == 2
    assert kinds.index("submitted") == len(kinds) - 1
    for socket in (sender, other):
        assert [event["seq"] for event in socket.messages()] == [e["seq"] for e in stored]
        assert not [event for event in socket.events if event["type"] == "hidden"]
    reply = [event for event in stored if event["role"] == "assistant"][-1]["text"]
    assert "".join(e["text"] for e in sender.events if e["type"] == "delta") == reply
    await sender.close()
    await other.close()


async def test_a_tool_turns_events_reach_its_tab_whole_and_in_order_in_fewer_frames(
    conversation: Conversation, alice: Customer, alice_user: User
) -> None:
    await sync_to_async(make_order)("32057", alice)
    socket = await signed_in_socket(alice_user, conversation.pk)
    await socket.send({"type": "resume", "after_seq": 0})
    frame = send_frame("My order is 32057")

    await socket.send(frame)
    await socket.receive_until(is_submitted(frame["client_message_id"]))
    stored = await sync_to_async(events_since)(conversation=conversation, after_seq=0)

    kinds = [event["type"] for event in socket.events]
    assert [event["seq"] for event in socket.messages()] == [e["seq"] for e in stored]
    assert kinds[:2] == ["message", "turn"]
    assert kinds[-3:] == ["message", "turn", "submitted"]
    assert is_turn_end(socket.events[-2])
    reply = socket.events[-3]["text"]
    assert "".join(e["text"] for e in socket.events if e["type"] == "delta") == reply
    # Events sent together came in one frame.
    assert socket.frames < len(socket.events)
    assert await socket.nothing_more()
    await socket.close()


# --- Channels' shared thread ----------------------------------------------------------------------


async def test_frames_are_answered_while_channels_shared_sync_thread_is_busy(
    conversation: Conversation, alice_user: User
) -> None:
    socket = await signed_in_socket(alice_user, conversation.pk)
    await socket.send({"type": "ping"})
    assert await socket.receive() == {"type": "pong"}
    released = threading.Event()
    # Anything else of the process holding that one thread (thread_sensitive is the default).
    busy = asyncio.ensure_future(sync_to_async(released.wait)(30))
    try:
        await socket.send({"type": "ping"})
        pong = await socket.receive(within=10)
    finally:
        released.set()
        await busy

    assert pong == {"type": "pong"}
    await socket.close()
