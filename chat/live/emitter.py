"""Carrying a turn's events from its worker thread to the socket that started it and to the
conversation's channel layer group.

The socket that started a turn gets its events straight from the turn, in order, a burst of
them in one websocket frame (``chat.live.relay``); its reply to that socket ("submitted") comes
last, in the frame of the turn's end, so it never overtakes the turn's reply or end. Every other
tab, in any process, gets them through the conversation's channel layer group: a turn's events
of up to ``LAYER_LINGER_SECONDS`` in one layer message (``layer_message``), back-to-back deltas
merged, naming the starting socket's channel, which gets no copy (``chat.live.layer``). The
layer is at-most-once; the database stays the source of truth (``chat.live.relay``). Layer sends
of the whole process share a few slots (``LAYER_SEND_SLOTS``) and so a few reused Redis
connections. When the starting socket knows that no other socket is in the group (one tab,
nobody watching: ``Relay.live_alone``, ``chat.live.livelink``), nothing goes through the layer,
but a handoff change still tells the staff inbox.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Protocol

logger = logging.getLogger(__name__)

# The layer message type: some events of one turn, in order (``layer_message``).
EVENTS = "chat.events"
# Concurrent layer sends per process: each holds one pooled Redis connection while it runs.
LAYER_SEND_SLOTS = 16
# How long a turn's events wait to share one layer message, and at most how long its own socket
# waits for more to share a frame (``followed``). Tabs see them this much later at most; a fast
# turn costs one layer message and a few frames, a streamed reply some twenty of each a second
# instead of one per delta.
LAYER_LINGER_SECONDS = 0.05
# The staff inbox: one group for every open inbox page; told whenever a handoff changes.
INBOX_GROUP = "inbox"
INBOX_CHANGED = "inbox.changed"

_send_slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


class Relay(Protocol):
    """The socket a turn or step was started from: it gets that turn's events directly."""

    channel_name: str

    async def relay_events(self, events: list[dict[str, Any]]) -> None: ...

    def live_alone(self, group: str) -> bool:
        """Whether this socket knows that no other socket is in ``group``."""
        ...


def layer_message(events: list[dict[str, Any]], origin: str | None = None) -> dict[str, Any]:
    """What travels through the layer for some events of one turn, in order. ``origin`` is the
    channel of the socket that got them directly already."""
    return {"type": EVENTS, "events": events, "origin": origin or ""}


def send_slots() -> asyncio.Semaphore:
    """The running loop's shared layer-send slots."""
    loop = asyncio.get_running_loop()
    slots = _send_slots.get(loop)
    if slots is None:
        for stale in [other for other in _send_slots if other.is_closed()]:
            del _send_slots[stale]
        slots = _send_slots[loop] = asyncio.Semaphore(LAYER_SEND_SLOTS)
    return slots


class GroupEmitter:
    """An ``emit`` callable for a turn's worker thread that forwards events in order.

    Each event is handed to the event loop (``call_soon_threadsafe`` keeps their order) and a
    single task delivers them one batch after another, so the worker never waits on Redis and a
    delta never overtakes the one before it: to ``socket`` (the tab that started the turn, which
    alone gets "error" events and the job's last word, ``close(reply)``), and to the group as
    one layer message per ``linger``.

    The socket gets each batch in one frame. The loop takes a burst's first event as soon as it
    is handed over, so a batch that the thread follows at once with more (``followed``) waits
    for them, or the job's end, at most ``linger``: a turn's end shares its frame with the reply,
    a step's messages theirs with what comes next, a run of deltas is one frame per ``linger``.
    """

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        layer: Any,
        group: str,
        socket: Relay | None = None,
        linger: float = LAYER_LINGER_SECONDS,
    ) -> None:
        self._loop = loop
        self._layer = layer
        self._group = group
        self._socket = socket
        self._linger = linger
        self._reply: dict[str, Any] | None = None
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        # Events from the worker thread that the loop has yet to take (``_take``); whether a
        # ``_take`` is scheduled; whether the loop holds a batch for the socket and so takes
        # what the thread hands it by then anyway (``_collect``).
        self._handed: list[dict[str, Any]] = []
        self._handed_lock = threading.Lock()
        self._take_scheduled = False
        self._collecting = False
        self.failed_sends = 0

    def __call__(self, event: dict[str, Any]) -> None:
        # One wake-up of the event loop per burst of events (a step's messages, a run of
        # deltas), not one per event: the first schedules ``_take``, which takes them all. An
        # event that would only join a batch the loop holds anyway (``followed``) wakes it not
        # at all: the loop takes it when the batch is due. So a reply streamed in many deltas
        # costs a wake-up per ``linger``, not one per delta.
        with self._handed_lock:
            self._handed.append(event)
            if self._take_scheduled or (self._collecting and followed(event)):
                return
            self._take_scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._take)
        except RuntimeError:
            # The loop is gone (process shutting down): the turn is still stored.
            logger.warning("Dropped a %s event: the event loop is closed.", event.get("type"))

    def _take(self) -> None:
        with self._handed_lock:
            events, self._handed = self._handed, []
            self._take_scheduled = False
        for event in events:
            self._queue.put_nowait(event)

    def _collect(self, collecting: bool) -> None:
        """Whether the loop holds a batch, and will take what is handed by its due time."""
        with self._handed_lock:
            self._collecting = collecting
        if not collecting:
            self._take()  # what was left for the batch that is no longer held

    def put(self, event: dict[str, Any] | None) -> None:
        """Queues an event (None: the end) from the loop's own thread, after every event the
        worker thread handed before."""
        self._take()
        self._queue.put_nowait(event)

    def close(self, reply: dict[str, Any] | None = None) -> None:
        """Ends the turn's events; ``reply`` goes to ``socket`` alone, after them."""
        self._reply = reply
        self.put(None)

    async def drain(self) -> None:
        """Delivers the queued events until the end marker; returns once it is reached."""
        shared: list[dict[str, Any]] = []  # for the layer, until ``send_at``
        held: list[dict[str, Any]] = []  # for the socket, until ``hold_at``
        send_at = hold_at = 0.0
        while True:
            waits = [at for at, waiting in ((send_at, shared), (hold_at, held)) if waiting]
            batch = await self._next_batch(min(waits, default=None))
            ended = None in batch
            if ended:
                batch = batch[: batch.index(None)]
            events = [event for event in batch if event is not None]
            now = self._loop.time()
            if events:
                if not shared:
                    send_at = now + self._linger
                if not held:
                    hold_at = now + self._linger
                # "Your message was not accepted" concerns the tab that sent it only.
                shared += [e for e in events if self._socket is None or e.get("type") != "error"]
                held += events
            if ended and self._reply is not None:
                held.append(self._reply)
            if held and (ended or not followed(held[-1]) or now >= hold_at):
                await self._relay(coalesce(held))
                held = []
            if not ended:
                self._collect(bool(held))
            if shared and (ended or self._loop.time() >= send_at):
                await self._send(coalesce(shared))
                shared = []
            if ended:
                if self.failed_sends > 1:
                    logger.warning(
                        "%d live events of this turn did not reach %s.",
                        self.failed_sends,
                        self._group,
                    )
                return

    async def _next_batch(self, until: float | None) -> list[dict[str, Any] | None]:
        """What is queued, once something is (or ``until`` passed: maybe nothing)."""
        batch: list[dict[str, Any] | None] = []
        try:
            async with asyncio.timeout_at(until):
                batch.append(await self._queue.get())
        except TimeoutError:
            self._take()  # what the thread handed without waking the loop (``__call__``)
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _relay(self, events: list[dict[str, Any]]) -> None:
        if self._socket is None:
            return
        try:
            await self._socket.relay_events(events)
        except Exception:
            # A socket closing under the turn: the turn goes on and is stored.
            logger.warning("Could not relay a turn's events to its socket.", exc_info=True)

    async def _send(self, events: list[dict[str, Any]]) -> None:
        # Asked at each send: a tab that opens during the turn gets the rest of it.
        alone = self._socket is not None and self._socket.live_alone(self._group)
        handoff = any(event.get("type") == "handoff" for event in events)
        if alone and not handoff:
            return
        origin = None if self._socket is None else self._socket.channel_name
        async with send_slots():
            try:
                if not alone:
                    await self._layer.group_send(self._group, layer_message(events, origin))
                if handoff:
                    await self._layer.group_send(INBOX_GROUP, {"type": INBOX_CHANGED})
            except Exception:
                # The layer is best effort; the database keeps every stored message. While
                # Redis is away every send fails alike: one traceback per turn, then a count
                # at its end.
                self.failed_sends += len(events)
                if self.failed_sends == len(events):
                    logger.warning(
                        "Could not send %d live events to %s; the turn goes on and is stored.",
                        len(events),
                        self._group,
                        exc_info=True,
                    )


def coalesce(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merges back-to-back deltas of one turn.

    While the layer is slow, events queue up; sending them as fewer, larger messages keeps a
    process's shared inbound queue under the layer's capacity instead of overflowing it.
    """
    merged: list[dict[str, Any]] = []
    for event in events:
        last = merged[-1] if merged else None
        if (
            last is not None
            and event.get("type") == last.get("type") == "delta"
            and event.get("turn") == last.get("turn")
        ):
            merged[-1] = {**last, "text": last["text"] + event["text"]}
        else:
            merged.append(event)
    return merged


def followed(event: dict[str, Any]) -> bool:
    """Whether a turn's thread follows ``event`` at once with another or with its end: a stored
    message or hidden seqs (a step's others, the turn's start or end, a tool's status), a delta
    (the next), the turn's end (the job returns)."""
    kind = event.get("type")
    return kind in ("message", "hidden", "delta") or (
        kind == "turn" and event.get("state") == "ended"
    )
