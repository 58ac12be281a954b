"""How turn events are packed for the channel layer."""

import asyncio
from typing import Any

from channels.layers import InMemoryChannelLayer

from chat.live.realtime import (
    EVENT,
    MESSAGE,
    TurnTrail,
    coalesce,
    group_message,
    metrics,
    start_turn,
    turn_executor_shutdown,
)


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
