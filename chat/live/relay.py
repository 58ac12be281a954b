"""Relaying stored messages to a socket in seq order, from the layer or from the turn itself."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from chat.live import realtime


class StoredRelay:
    """For a consumer that keeps ``sent_seq`` (the highest seq it sent, None before the client's
    resume), ``send_lock``, ``ended_turns`` and ``send_stored()`` (a catch-up from the database).
    """

    sent_seq: int | None
    send_lock: asyncio.Lock
    ended_turns: set[str]

    if TYPE_CHECKING:  # provided by the consumer; declared here only for the type checker

        async def send_json(self, content: Any, close: bool = False) -> None: ...

        async def send_stored(self, after_seq: int | None = None) -> None: ...

    async def turn_over(self, trail: realtime.TurnTrail) -> None:
        """Before this socket's own turn is reported done: what the layer lost or has yet to
        deliver of it, so the page never hears "submitted" before the turn's reply and end."""
        if self.sent_seq is not None and trail.last_seq > self.sent_seq:
            async with self.send_lock:
                missed = trail.messages_after(self.sent_seq)
                if missed is not None:
                    # Still on their way through the layer (or lost): sent from the turn itself;
                    # the layer's copies are then repeats and skipped.
                    for event in missed:
                        await self.send_json(event)
                    self.sent_seq = trail.last_seq
            if missed is None:
                await self.send_stored()
        ended = trail.ended
        if ended is not None and ended["turn"] not in self.ended_turns:
            self.ended_turns.add(ended["turn"])
            await self.send_json(ended)

    async def chat_message(self, message: dict[str, Any]) -> None:
        """A stored message from the layer: relayed as is when it is the next seq; after a gap
        (a message the layer dropped) the missing ones are read from the database."""
        event = message["event"]
        async with self.send_lock:
            if self.sent_seq is None or event["seq"] <= self.sent_seq:
                return  # before the client said where it is (its resume sends it), or a repeat
            if event["seq"] == self.sent_seq + 1:
                await self.send_json(event)
                self.sent_seq = event["seq"]
                return
        await self.send_stored()
