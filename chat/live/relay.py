"""Relaying a conversation's events to a socket: stored messages in seq order, without reading
the database unless the layer lost one.

Events come from the turn this socket started (directly, ``chat.live.emitter``) or from the
layer (every other turn). A "message" event is sent when its seq follows the last one sent; the
seqs of stored messages the customer never sees arrive as ``{"type": "hidden", "seqs"}`` and
count as sent. Any other gap means the layer dropped something: what is missing is read from
the database (``send_stored``), once per batch.

What a call relays goes out as one websocket frame: a single event as itself, several as
``{"type": "events", "events": [...]}`` in order (``frame_of``), which the pages read as those
events one by one. Each frame costs the server a JSON encoding, daphne's and autobahn's framing,
a socket write and a turn of the event loop, so a turn's burst of events costs one.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from chat.live.conversations import events_since
from chat.live.dbcalls import short_query

# The frame type of several events sent together.
EVENTS_FRAME = "events"


def frame_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    """One websocket frame for ``events`` (at least one), in order."""
    return events[0] if len(events) == 1 else {"type": EVENTS_FRAME, "events": events}


class StoredRelay:
    """For a consumer of ``conversation`` that keeps ``sent_seq`` (the highest seq it sent, None
    before the client's resume) and ``send_lock``."""

    sent_seq: int | None
    send_lock: asyncio.Lock
    # Seqs after ``sent_seq`` of stored messages the customer does not see.
    hidden_seqs: set[int]

    conversation: Any
    channel_name: str

    if TYPE_CHECKING:  # provided by the consumer; declared here only for the type checker

        async def send_json(self, content: Any, close: bool = False) -> None: ...

    def relayed(self, event: dict[str, Any]) -> dict[str, Any]:
        """Hook: the event as this socket's page gets it."""
        return event

    async def relay_events(self, events: list[dict[str, Any]]) -> None:
        """Sends ``events`` (one turn's, in order) to the page; stored messages once each, in
        seq order, the ones the layer lost read from the database first."""
        position = 0
        read = False
        while position < len(events):
            gap = False
            async with self.send_lock:
                out: list[dict[str, Any]] = []
                for event in events[position:]:
                    if event.get("type") == "hidden":
                        self.seqs_hidden(event.get("seqs") or [])
                    elif event.get("type") == "message" and isinstance(event.get("seq"), int):
                        if self.sent_seq is None or event["seq"] <= self.sent_seq:
                            pass  # before the client said where it is (its resume sends it)
                        elif event["seq"] == self.sent_seq + 1 or read:
                            out.append(event)
                            self.seq_sent(event["seq"])
                        else:
                            gap = True
                            break
                    else:
                        out.append(self.relayed(event))
                    position += 1
                if out:
                    await self.send_json(frame_of(out))
            if gap:
                # The database has everything up to this event: it is a repeat afterwards.
                await self.send_stored()
                read = True

    async def send_stored(self, after_seq: int | None = None) -> None:
        """Sends stored messages from the database after ``after_seq`` (a resume), or else after
        the last one this socket sent. Calls take turns, so no message is sent twice."""
        async with self.send_lock:
            if after_seq is None:
                if self.sent_seq is None:
                    return  # the client has not said where it is yet; its resume will
                after_seq = self.sent_seq
            events = await short_query(events_since)(
                conversation=self.conversation, after_seq=after_seq
            )
            if events:
                await self.send_json(frame_of(events))
            seqs = [event["seq"] for event in events if isinstance(event.get("seq"), int)]
            self.seq_sent(
                max([after_seq, *seqs, *([] if self.sent_seq is None else [self.sent_seq])])
            )

    async def chat_events(self, message: dict[str, Any]) -> None:
        """Some events of a turn, through the layer."""
        if message.get("origin") != self.channel_name:  # else this socket had them directly
            await self.relay_events(message["events"])

    # One event per layer message, as servers before ``chat.events`` send during a deploy.
    async def chat_message(self, message: dict[str, Any]) -> None:
        await self.chat_events({"events": [message["event"]]})

    chat_event = chat_message

    def seqs_hidden(self, seqs: list[int]) -> None:
        if self.sent_seq is not None:
            self.hidden_seqs.update(seq for seq in seqs if seq > self.sent_seq)
            self.seq_sent(self.sent_seq)

    def seq_sent(self, seq: int) -> None:
        """Records ``seq`` as sent, and the hidden seqs right after it."""
        if self.hidden_seqs:
            while seq + 1 in self.hidden_seqs:
                seq += 1
            self.hidden_seqs = {hidden for hidden in self.hidden_seqs if hidden > seq}
        self.sent_seq = seq
