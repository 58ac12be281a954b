"""How turn events are packed for the channel layer."""

import asyncio
import logging
import socket
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer

from chat.live.realtime import (
    EVENT,
    MESSAGE,
    GroupEmitter,
    TurnTrail,
    coalesce,
    group_message,
    metrics,
    start_turn,
    turn_executor_shutdown,
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_stored_message_travels_as_its_event_with_its_seq() -> None:
    message = {"type": "message", "seq": 7, "id": "x", "role": "assistant", "text": "Hi"}

    assert group_message(message) == {"type": MESSAGE, "event": message}
    assert group_message({"type": "delta", "turn": "t", "text": "a"}) == {
        "type": EVENT,
        "event": {"type": "delta", "turn": "t", "text": "a"},
    }


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

    assert [group_message(event) for event in coalesce(events)] == [
        {"type": MESSAGE, "event": events[0]},
        {"type": MESSAGE, "event": events[1]},
        {"type": EVENT, "event": events[2]},
    ]


async def test_a_turn_that_raises_still_ends_and_leaves_nothing_in_flight() -> None:
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("conversation.x", channel)
    done: list[Any] = []

    def job(*, emit: Any) -> bool:
        emit({"type": "delta", "turn": "t", "text": "Hel"})
        raise RuntimeError("a bug in the turn")

    async def on_done(result: Any, trail: TurnTrail) -> None:
        done.append(result)

    try:
        task = start_turn(
            job, layer=layer, group="conversation.x", channel=channel, on_done=on_done
        )
        await asyncio.wait_for(task, timeout=10)
    finally:
        turn_executor_shutdown()

    assert done == [None]
    assert metrics()["turns_in_flight"] == 0
    received = [await layer.receive(channel), await layer.receive(channel)]
    assert [message["event"]["type"] for message in received] == ["delta", "error"]


async def test_a_layer_that_is_away_costs_one_traceback_per_turn_not_one_per_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A real Redis layer pointed at a port nothing listens on: every send is refused.
    layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{free_port()}"])
    emitter = GroupEmitter(loop=asyncio.get_running_loop(), layer=layer, group="conversation.x")
    for n in range(5):
        emitter.put({"type": "status", "turn": "t", "text": f"step {n}"})
    emitter.close()

    with caplog.at_level(logging.DEBUG, logger="chat.live.realtime"):
        await asyncio.wait_for(emitter.drain(), timeout=60)

    records = [record for record in caplog.records if record.name == "chat.live.realtime"]
    assert emitter.failed_sends == 5
    assert [(record.levelno, record.exc_info is not None) for record in records] == [
        (logging.WARNING, True),
        (logging.WARNING, False),
    ]
    assert "5 live events" in records[1].getMessage()
