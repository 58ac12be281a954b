"""How turn events reach the socket that started the turn, the channel layer, and each page."""

import asyncio
import json
import logging
import socket
import time
from functools import partial
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer

from chat.live.emitter import (
    EVENTS,
    INBOX_CHANGED,
    INBOX_GROUP,
    GroupEmitter,
    coalesce,
    layer_message,
)
from chat.live.livelink import JOINED, presence_message
from chat.live.realtime import metrics, start_turn, turn_executor_shutdown
from chat.live.relay import StoredRelay
from tests.chat.sockets import eventually, frame_events


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def layer_events(layer: Any, channel: str) -> list[dict[str, Any]]:
    """The events of every layer message waiting for ``channel``, in order."""
    events: list[dict[str, Any]] = []
    while True:
        try:
            message = await asyncio.wait_for(layer.receive(channel), timeout=0.2)
        except TimeoutError:
            return events
        assert message["type"] == EVENTS
        events += message["events"]


def test_back_to_back_deltas_of_one_turn_are_merged_in_order() -> None:
    events = [
        {"type": "delta", "turn": "t1", "text": "Hel"},
        {"type": "delta", "turn": "t1", "text": "lo"},
        {"type": "status", "turn": "t1", "text": "Looking up order 32057…"},
        {"type": "delta", "turn": "t1", "text": "!"},
        {"type": "delta", "turn": "t2", "text": "?"},
    ]

    assert coalesce(events) == [
        {"type": "delta", "turn": "t1", "text": "Hello"},
        {"type": "status", "turn": "t1", "text": "Looking up order 32057…"},
        {"type": "delta", "turn": "t1", "text": "!"},
        {"type": "delta", "turn": "t2", "text": "?"},
    ]


def test_stored_messages_are_never_merged() -> None:
    events: list[dict[str, Any]] = [
        {"type": "message", "seq": 3, "role": "customer", "text": "a"},
        {"type": "message", "seq": 4, "role": "assistant", "text": "b"},
        {"type": "turn", "turn": "t", "state": "ended", "outcome": "answered"},
    ]

    assert coalesce(events) == events


async def test_a_turn_that_raises_still_ends_and_leaves_nothing_in_flight() -> None:
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("conversation.x", channel)
    done: list[Any] = []

    def job(*, emit: Any) -> bool:
        emit({"type": "delta", "turn": "t", "text": "Hel"})
        raise RuntimeError("a bug in the turn")

    async def reply(result: Any) -> None:
        done.append(result)

    try:
        task = start_turn(job, layer=layer, group="conversation.x", reply=reply)
        await asyncio.wait_for(task, timeout=10)
    finally:
        turn_executor_shutdown()

    assert done == [None]
    assert metrics()["turns_in_flight"] == 0
    assert [event["type"] for event in await layer_events(layer, channel)] == ["delta", "error"]


async def test_a_layer_that_is_away_costs_one_traceback_per_turn_not_one_per_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A real Redis layer pointed at a port nothing listens on: every send is refused.
    layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{free_port()}"])
    emitter = GroupEmitter(loop=asyncio.get_running_loop(), layer=layer, group="conversation.x")
    for n in range(5):
        emitter.put({"type": "status", "turn": "t", "text": f"step {n}"})
    emitter.close()

    with caplog.at_level(logging.DEBUG, logger="chat.live.emitter"):
        await asyncio.wait_for(emitter.drain(), timeout=60)

    records = [record for record in caplog.records if record.name == "chat.live.emitter"]
    assert emitter.failed_sends == 5
    assert [(record.levelno, record.exc_info is not None) for record in records] == [
        (logging.WARNING, True),
        (logging.WARNING, False),
    ]
    assert "5 live events" in records[1].getMessage()


class Page(StoredRelay):
    """What a socket's page got from the relay (``events``, in ``frames`` websocket frames), and
    how often the socket read the database (``stored``: the conversation's visible messages
    there). ``alone``: the socket knows no other is in its group."""

    channel_name = "page"

    def __init__(
        self, sent_seq: int, stored: list[dict[str, Any]] | None = None, *, alone: bool = False
    ) -> None:
        self.alone = alone
        self.sent_seq = sent_seq
        self.hidden_seqs: set[int] = set()
        self.send_lock = asyncio.Lock()
        self.stored = stored or []
        self.events: list[dict[str, Any]] = []
        self.frames: list[dict[str, Any]] = []
        self.reads = 0

    async def send_json(self, content: Any, close: bool = False) -> None:
        self.frames.append(content)
        self.events += frame_events(json.dumps(content))

    def live_alone(self, group: str) -> bool:
        return self.alone

    async def send_stored(self, after_seq: int | None = None) -> None:
        self.reads += 1
        assert self.sent_seq is not None
        for event in self.stored:
            if event["seq"] > self.sent_seq:
                self.events.append(event)
                self.seq_sent(event["seq"])


def message(seq: int) -> dict[str, Any]:
    return {"type": "message", "seq": seq, "role": "assistant", "text": f"m{seq}"}


ENDED = {"type": "turn", "turn": "t", "state": "ended", "outcome": "answered"}


async def layer_with_other_tab() -> tuple[InMemoryChannelLayer, str]:
    """A layer whose "conversation.x" group has one member: another tab's channel."""
    layer = InMemoryChannelLayer()
    other_tab = await layer.new_channel()
    await layer.group_add("conversation.x", other_tab)
    return layer, other_tab


async def test_the_seqs_of_tool_calls_and_results_are_no_gap_and_cost_no_database_read() -> None:
    page = Page(sent_seq=1, stored=[message(1), message(4)])

    await page.relay_events([{"type": "hidden", "seqs": [2, 3]}])
    await page.relay_events([message(4), ENDED])

    assert page.events == [message(4), ENDED]
    assert page.reads == 0
    assert page.sent_seq == 4


async def test_a_message_the_layer_lost_is_read_from_the_database_once_then_skipped() -> None:
    page = Page(sent_seq=1, stored=[message(2), message(3), message(5)])

    await page.relay_events([{"type": "hidden", "seqs": [4]}])
    await page.relay_events([message(3), ENDED, message(5)])

    assert page.events == [message(2), message(3), message(5), ENDED]
    assert page.reads == 1


async def test_a_turns_end_after_a_lost_last_message_reads_it_first() -> None:
    page = Page(sent_seq=1, stored=[message(1), message(2)])

    await page.relay_events([{**ENDED, "last_seq": 2}])

    assert page.events == [message(2), {**ENDED, "last_seq": 2}]
    assert page.reads == 1


async def test_a_turns_end_this_socket_is_up_to_date_with_costs_no_read() -> None:
    page = Page(sent_seq=1, stored=[message(1), message(2)])

    await page.relay_events([message(2), {**ENDED, "last_seq": 2}])

    assert page.events == [message(2), {**ENDED, "last_seq": 2}]
    assert page.reads == 0


async def test_the_turns_socket_gets_every_event_directly_and_other_tabs_one_layer_message() -> (
    None
):
    layer, other_tab = await layer_with_other_tab()
    page = Page(sent_seq=0)
    emitter = GroupEmitter(
        loop=asyncio.get_running_loop(), layer=layer, group="conversation.x", socket=page
    )
    refused = {"type": "error", "text": "Please wait.", "retryable": True}
    for event in (message(1), *DELTAS, refused, message(2), ENDED):
        emitter.put(event)
    emitter.close()

    await asyncio.wait_for(emitter.drain(), timeout=10)

    merged = {"type": "delta", "turn": "t", "text": "Hello"}
    assert page.events == [message(1), merged, refused, message(2), ENDED]
    sent = await asyncio.wait_for(layer.receive(other_tab), timeout=1)
    assert sent == layer_message([message(1), merged, message(2), ENDED], origin="page")
    assert await layer_events(layer, other_tab) == []


async def test_a_socket_alone_in_its_group_makes_no_layer_send_but_a_handoff_tells_the_inbox() -> (
    None
):
    # Another member the socket does not know of: nothing reaches it, so nothing was sent.
    layer, other_tab = await layer_with_other_tab()
    inbox = await layer.new_channel()
    await layer.group_add(INBOX_GROUP, inbox)
    page = Page(sent_seq=0, alone=True)
    emitter = GroupEmitter(
        loop=asyncio.get_running_loop(), layer=layer, group="conversation.x", socket=page
    )
    handoff = {"type": "handoff", "status": "waiting_for_agent"}
    for event in (message(1), handoff, ENDED):
        emitter.put(event)
    emitter.close()

    await asyncio.wait_for(emitter.drain(), timeout=10)

    assert page.events == [message(1), handoff, ENDED]
    assert await layer_events(layer, other_tab) == []
    assert await asyncio.wait_for(layer.receive(inbox), timeout=1) == {"type": INBOX_CHANGED}


async def test_an_announcement_relays_nothing_on_a_socket_that_does_not_know_them() -> None:
    # What a socket of an earlier release makes of it during a deploy.
    page = Page(sent_seq=0)

    await page.chat_events(presence_message(JOINED, "conversation.x", "another-tab"))

    assert page.frames == []


DELTAS = [
    {"type": "delta", "turn": "t", "text": "Hel"},
    {"type": "delta", "turn": "t", "text": "lo"},
]


STARTED = {"type": "turn", "turn": "t", "state": "started"}
STATUS = {"type": "status", "turn": "t", "text": "Looking up order 32057…"}


def emitter_for(page: Page, layer: Any, linger: float = 3600) -> GroupEmitter:
    return GroupEmitter(
        loop=asyncio.get_running_loop(),
        layer=layer,
        group="conversation.x",
        socket=page,
        linger=linger,
    )


async def test_a_turns_events_share_one_layer_message_while_its_socket_gets_each_step_at_once() -> (
    None
):
    layer, other_tab = await layer_with_other_tab()
    page = Page(sent_seq=0)
    emitter = emitter_for(page, layer)
    sender = asyncio.create_task(emitter.drain())

    async def frames(count: int) -> bool:
        return len(page.frames) == count

    # A stored message waits for what the turn's thread sends right after it; the turn's start
    # and a tool's status go at once.
    emitter.put(message(1))
    emitter.put(STARTED)
    assert await eventually(partial(frames, 1))
    assert await layer_events(layer, other_tab) == []
    for event in (*DELTAS, STATUS):
        emitter.put(event)
    assert await eventually(partial(frames, 2))
    for event in (message(2), ENDED):
        emitter.put(event)
    emitter.close()
    await asyncio.wait_for(sender, timeout=10)

    merged = {"type": "delta", "turn": "t", "text": "Hello"}
    assert page.frames == [
        {"type": "events", "events": [message(1), STARTED]},
        {"type": "events", "events": [merged, STATUS]},
        {"type": "events", "events": [message(2), ENDED]},
    ]
    assert await layer_events(layer, other_tab) == page.events


async def test_a_message_that_nothing_follows_still_reaches_the_socket() -> None:
    page = Page(sent_seq=0)
    emitter = emitter_for(page, InMemoryChannelLayer(), linger=0.01)
    sender = asyncio.create_task(emitter.drain())

    async def relayed() -> bool:
        return bool(page.frames)

    emitter.put(message(1))

    assert await eventually(relayed)
    assert page.frames == [message(1)]
    emitter.close()
    await asyncio.wait_for(sender, timeout=10)


async def test_events_from_the_turns_thread_reach_its_socket_in_order_and_whole() -> None:
    layer = InMemoryChannelLayer()
    page = Page(sent_seq=0)
    done: list[Any] = []

    def job(*, emit: Any) -> bool:
        for seq in range(1, 101):
            emit(message(seq))
            emit({"type": "delta", "turn": "t", "text": f"{seq},"})
        emit(ENDED)
        return True

    async def reply(result: Any) -> dict[str, Any]:
        done.append(result)
        return SUBMITTED

    try:
        await asyncio.wait_for(
            start_turn(job, layer=layer, group="conversation.x", socket=page, reply=reply),
            timeout=30,
        )
    finally:
        turn_executor_shutdown()

    assert [event["seq"] for event in page.events if event["type"] == "message"] == list(
        range(1, 101)
    )
    deltas = "".join(event["text"] for event in page.events if event["type"] == "delta")
    assert deltas == "".join(f"{seq}," for seq in range(1, 101))
    assert page.events[-2:] == [ENDED, SUBMITTED]
    assert done == [True]


class CountingLoop:
    """The running loop, counting the wake-ups handed to it from other threads."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.wakes = 0

    def call_soon_threadsafe(self, *args: Any) -> Any:
        self.wakes += 1
        return self.loop.call_soon_threadsafe(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loop, name)


async def test_a_streamed_reply_wakes_the_event_loop_once_per_linger_not_once_per_delta() -> None:
    loop = CountingLoop(asyncio.get_running_loop())
    page = Page(sent_seq=0)
    emitter = GroupEmitter(
        loop=loop,  # type: ignore[arg-type]
        layer=InMemoryChannelLayer(),
        group="conversation.x",
        socket=page,
        linger=0.5,
    )
    sender = asyncio.create_task(emitter.drain())
    pieces = [f"{number}," for number in range(40)]

    def stream() -> None:
        # As a model streams: a piece every few milliseconds, each its own event.
        for piece in pieces:
            emitter({"type": "delta", "turn": "t", "text": piece})
            time.sleep(0.002)

    await asyncio.to_thread(stream)
    emitter.close()
    await asyncio.wait_for(sender, timeout=10)

    assert "".join(event["text"] for event in page.events) == "".join(pieces)
    assert loop.wakes <= 3  # the first delta, and one per 0.5 s the stream took beyond it


SUBMITTED = {"type": "submitted", "client_message_id": "c1", "accepted": True}


async def test_events_relayed_together_are_one_frame_and_a_single_event_its_own() -> None:
    page = Page(sent_seq=0)

    await page.relay_events([message(1), {"type": "turn", "turn": "t", "state": "started"}])
    await page.relay_events([{"type": "hidden", "seqs": [2, 3]}, {**DELTAS[0]}])
    await page.relay_events([message(4), ENDED])

    assert page.frames == [
        {
            "type": "events",
            "events": [message(1), {"type": "turn", "turn": "t", "state": "started"}],
        },
        DELTAS[0],
        {"type": "events", "events": [message(4), ENDED]},
    ]


async def test_the_reply_to_the_turns_socket_shares_the_frame_of_the_turns_end() -> None:
    layer, other_tab = await layer_with_other_tab()
    page = Page(sent_seq=0)
    emitter = emitter_for(page, layer)
    sender = asyncio.create_task(emitter.drain())

    async def relayed() -> bool:
        return bool(page.frames)

    emitter.put(STARTED)
    assert await eventually(relayed)
    emitter.put(message(2))
    emitter.put(ENDED)
    # The turn's end waits for the reply while the turn's thread returns (at most ``linger``).
    await asyncio.sleep(0.2)
    assert page.frames == [STARTED]
    emitter.close(SUBMITTED)
    await asyncio.wait_for(sender, timeout=10)

    assert page.frames == [STARTED, {"type": "events", "events": [message(2), ENDED, SUBMITTED]}]
    assert await layer_events(layer, other_tab) == [STARTED, message(2), ENDED]
