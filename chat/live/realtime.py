"""Runs turns off the event loop and carries their events to every open tab.

A turn blocks for as long as the model takes, so it runs on a dedicated thread pool, never on
the event loop nor on Channels' shared ``thread_sensitive`` thread (which would queue every
socket of the process behind one slow turn). Its events travel through the channel layer group
of the conversation, so every tab of the customer, in any process, sees them.

The layer is at-most-once. A stored message travels as its "message" event, seq included, so a
socket relays it without reading the database; a socket that sees a gap in the seqs (a dropped
message) reads what it missed from the database, which stays the source of truth. Deltas and
status lines are sent as they are; losing one only makes the stream less smooth. The socket
that started a turn also gets the turn's end from the turn itself (``TurnTrail``), so it always
learns the turn ended, and in order, even when the layer loses or delays the event.

Layer sends of the whole process share a few slots (``LAYER_SEND_SLOTS``): under a burst of
turns they queue and go out batched (back-to-back deltas merged) over reused Redis connections,
instead of each opening a connection of its own and timing out.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import IO, Any

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

MESSAGE = "chat.message"
EVENT = "chat.event"
# Concurrent layer sends per process: each holds one pooled Redis connection while it runs.
LAYER_SEND_SLOTS = 16
# The staff inbox: one group for every open inbox page; told whenever a handoff changes.
INBOX_GROUP = "inbox"
INBOX_CHANGED = "inbox.changed"
METRICS_INTERVAL_SECONDS = 60.0

Emit = Callable[[dict[str, Any]], None]

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
# asyncio keeps only weak references to tasks; these must outlive the socket that started them.
_turn_tasks: set[asyncio.Task[Any]] = set()
_open_websockets = 0
_reporters: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
_send_slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


def group_name(conversation_id: object) -> str:
    return f"conversation.{conversation_id}"


def turn_executor() -> ThreadPoolExecutor:
    """The process's turn pool, created on first use with ``CHAT_MAX_CONCURRENT_TURNS`` threads."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=settings.CHAT_MAX_CONCURRENT_TURNS, thread_name_prefix="chat-turn"
            )
        return _executor


def _run_with_fresh_connection(job: Callable[[], Any]) -> Any:
    # The pool's threads live long; treat each job like a request so connections past
    # CONN_MAX_AGE or broken by a database restart are replaced.
    close_old_connections()
    try:
        return job()
    finally:
        close_old_connections()


def group_message(event: dict[str, Any]) -> dict[str, Any]:
    """What travels through the layer for one service event."""
    if event.get("type") == "message" and isinstance(event.get("seq"), int):
        return {"type": MESSAGE, "event": event}
    return {"type": EVENT, "event": event}


def send_slots() -> asyncio.Semaphore:
    """The running loop's shared layer-send slots."""
    loop = asyncio.get_running_loop()
    slots = _send_slots.get(loop)
    if slots is None:
        for stale in [other for other in _send_slots if other.is_closed()]:
            del _send_slots[stale]
        slots = _send_slots[loop] = asyncio.Semaphore(LAYER_SEND_SLOTS)
    return slots


@dataclass
class TurnTrail:
    """What a turn told its sockets, for the socket that started it: the highest stored seq
    and the turn's "ended" event."""

    last_seq: int = 0
    ended: dict[str, Any] | None = None
    # The "message" events of the messages the turn stored, in seq order.
    messages: list[dict[str, Any]] = field(default_factory=list)

    def saw(self, event: dict[str, Any]) -> None:
        if event.get("type") == "message" and isinstance(event.get("seq"), int):
            self.last_seq = max(self.last_seq, event["seq"])
            self.messages.append(event)
        elif event.get("type") == "turn" and event.get("state") == "ended":
            self.ended = event

    def messages_after(self, seq: int) -> list[dict[str, Any]] | None:
        """The turn's messages after ``seq`` when they follow it without a gap, else None
        (someone else stored a message in between: the database has it)."""
        after = [event for event in self.messages if event["seq"] > seq]
        expected = list(range(seq + 1, seq + 1 + len(after)))
        return after if [event["seq"] for event in after] == expected else None


class GroupEmitter:
    """An ``emit`` callable for a turn's worker thread that forwards events in order.

    Each event is handed to the event loop (``call_soon_threadsafe`` keeps their order) and a
    single task sends them to the group one after another, so the worker never waits on Redis
    and a delta never overtakes the one before it.
    """

    def __init__(
        self, *, loop: asyncio.AbstractEventLoop, layer: Any, group: str, channel: str | None = None
    ) -> None:
        self._loop = loop
        self._layer = layer
        self._group = group
        self._channel = channel
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.trail = TurnTrail()
        self.failed_sends = 0

    def __call__(self, event: dict[str, Any]) -> None:
        try:
            self._loop.call_soon_threadsafe(self.put, event)
        except RuntimeError:
            # The loop is gone (process shutting down): the turn is still stored.
            logger.warning("Dropped a %s event: the event loop is closed.", event.get("type"))

    def put(self, event: dict[str, Any] | None) -> None:
        """Queues an event (None: the end) from the loop's own thread."""
        if event is not None:
            self.trail.saw(event)
        self._queue.put_nowait(event)

    def close(self) -> None:
        self.put(None)

    async def drain(self) -> None:
        """Sends the queued events until the end marker; returns once it is reached."""
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            ended = None in batch
            if ended:
                batch = batch[: batch.index(None)]
            async with send_slots():
                for event in coalesce([event for event in batch if event is not None]):
                    await self._send(event)
            if ended:
                if self.failed_sends > 1:
                    logger.warning(
                        "%d live events of this turn did not reach %s.",
                        self.failed_sends,
                        self._group,
                    )
                return

    async def _send(self, event: dict[str, Any]) -> None:
        try:
            if event.get("type") == "error" and self._channel:
                # "Your message was not accepted" concerns the tab that sent it only.
                await self._layer.send(self._channel, group_message(event))
            else:
                await self._layer.group_send(self._group, group_message(event))
            if event.get("type") == "handoff":
                await self._layer.group_send(INBOX_GROUP, {"type": INBOX_CHANGED})
        except Exception:
            # The layer is best effort; the database keeps every stored message. While Redis is
            # away every event fails alike: one traceback per turn, then a count at its end.
            self.failed_sends += 1
            if self.failed_sends == 1:
                logger.warning(
                    "Could not send a %s event to %s; the turn goes on and is stored.",
                    event.get("type"),
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


FAILED_EVENT = {
    "type": "error",
    "text": "Sorry, something went wrong on our side. Please try again.",
    "retryable": True,
}


async def _run_turn(
    job: Callable[..., Any],
    *,
    layer: Any,
    group: str,
    channel: str | None,
    on_done: Callable[[Any, TurnTrail], Any] | None,
    executor: ThreadPoolExecutor | None = None,
) -> Any:
    loop = asyncio.get_running_loop()
    emitter = GroupEmitter(loop=loop, layer=layer, group=group, channel=channel)
    sender = asyncio.create_task(emitter.drain())
    result: Any = None
    try:
        # A copy of the socket's context, so the turn's log lines carry the socket's ids.
        result = await loop.run_in_executor(
            executor,
            contextvars.copy_context().run,
            partial(_run_with_fresh_connection, partial(job, emit=emitter)),
        )
    except Exception:
        logger.exception("A turn failed unexpectedly in %s.", group)
        # Queued directly, ahead of the end marker below (not through call_soon_threadsafe,
        # which would put it after the marker and leave the sender waiting forever).
        emitter.put(dict(FAILED_EVENT))
    finally:
        emitter.close()
        await sender
    if on_done is not None:
        await on_done(result, emitter.trail)
    return result


def start_turn(
    job: Callable[..., Any],
    *,
    layer: Any,
    group: str,
    channel: str | None = None,
    on_done: Callable[[Any, TurnTrail], Any] | None = None,
) -> asyncio.Task[Any]:
    """Runs ``job(emit=...)`` on the turn pool as a task that outlives the socket.

    ``job`` is a blocking chat service call (``turn_submit``, ``action_decide``). The task is
    deliberately not tied to the consumer: when the socket drops mid-turn, the turn still
    completes and is stored, and other tabs still see it. "error" events go to ``channel``
    (the socket that asked) only. ``on_done`` gets the job's result (None if it raised) and the
    turn's ``TurnTrail``, after every event of the turn was handed to the layer.
    """
    task = asyncio.create_task(
        _run_turn(
            job,
            layer=layer,
            group=group,
            channel=channel,
            on_done=on_done,
            executor=turn_executor(),
        )
    )
    _turn_tasks.add(task)
    task.add_done_callback(_turn_tasks.discard)
    return task


async def run_step(
    job: Callable[..., Any], *, layer: Any, group: str, channel: str | None = None
) -> Any:
    """Runs a short blocking service call (a handoff step) and sends its events like a turn's.

    It runs on the loop's default pool, not the turn pool, so a staff reply never waits behind
    the model; it is awaited, as it takes a few queries. An unexpected exception becomes a
    generic "error" event and None.
    """
    return await _run_turn(job, layer=layer, group=group, channel=channel, on_done=None)


async def turns_settled() -> None:
    """Waits for the turns started on this loop (tests and graceful shutdown)."""
    loop = asyncio.get_running_loop()
    mine = [task for task in _turn_tasks if task.get_loop() is loop]
    if mine:
        await asyncio.gather(*mine, return_exceptions=True)


# --- Metrics for autoscaling ------------------------------------------------------------------


def websocket_opened() -> None:
    global _open_websockets
    _open_websockets += 1
    _ensure_reporter()


def websocket_closed() -> None:
    global _open_websockets
    _open_websockets = max(0, _open_websockets - 1)


def metrics() -> dict[str, int]:
    return {
        "open_websockets": _open_websockets,
        "turns_in_flight": sum(1 for task in _turn_tasks if not task.done()),
    }


def write_metrics(stream: IO[str] | None = None) -> None:
    """One JSON line per metric on stdout, which the log driver ships as is."""
    out = stream or sys.stdout
    for name, value in metrics().items():
        out.write(json.dumps({"metric": name, "value": value}) + "\n")
    out.flush()


async def report_metrics(
    interval: float = METRICS_INTERVAL_SECONDS, stream: IO[str] | None = None
) -> None:
    while True:
        await asyncio.sleep(interval)
        write_metrics(stream)


def _ensure_reporter() -> None:
    loop = asyncio.get_running_loop()
    task = _reporters.get(loop)
    if task is None or task.done():
        for stale in [other for other in _reporters if other.is_closed()]:
            del _reporters[stale]
        _reporters[loop] = loop.create_task(report_metrics())


def turn_executor_shutdown() -> None:
    """Lets running turns finish, then stops the pool (graceful shutdown and tests).

    The next turn creates a new pool. The finished threads' database connections close with them.
    """
    global _executor
    with _executor_lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True)
