"""Runs turns off the event loop and carries their events to every open tab.

A turn blocks for as long as the model takes, so it runs on a dedicated thread pool, never on
the event loop nor on Channels' shared ``thread_sensitive`` thread (which would queue every
socket of the process behind one slow turn).

The socket that started a turn gets its events straight from the turn, in order, before it
hears "submitted" (which so never overtakes the turn's reply or end). Every other tab, in any
process, gets them through the conversation's channel layer group: a turn's events of up to
``LAYER_LINGER_SECONDS`` in one layer message (``layer_message``), back-to-back deltas merged,
naming the starting socket's channel, which gets no copy (``chat.live.layer``). The layer is
at-most-once; the database stays the source of truth (``chat.live.relay``). Layer sends of the
whole process share a few slots (``LAYER_SEND_SLOTS``) and so a few reused Redis connections.
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
from functools import partial
from typing import IO, Any, Protocol

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

# The layer message type: some events of one turn, in order (``layer_message``).
EVENTS = "chat.events"
# Concurrent layer sends per process: each holds one pooled Redis connection while it runs.
LAYER_SEND_SLOTS = 16
# How long a turn's events wait to share one layer message. Other tabs see them this much later
# at most (a turn's own socket gets each at once); a fast turn costs one layer message, a
# streamed reply some twenty a second instead of one per delta.
LAYER_LINGER_SECONDS = 0.05
# The staff inbox: one group for every open inbox page; told whenever a handoff changes.
INBOX_GROUP = "inbox"
INBOX_CHANGED = "inbox.changed"
METRICS_INTERVAL_SECONDS = 60.0

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
# asyncio keeps only weak references to tasks; these must outlive the socket that started them.
_turn_tasks: set[asyncio.Task[Any]] = set()
_open_websockets = 0
_reporters: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
_send_slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


def group_name(conversation_id: object) -> str:
    return f"conversation.{conversation_id}"


class Relay(Protocol):
    """The socket a turn or step was started from: it gets that turn's events directly."""

    channel_name: str

    async def relay_events(self, events: list[dict[str, Any]]) -> None: ...


def layer_message(events: list[dict[str, Any]], origin: str | None = None) -> dict[str, Any]:
    """What travels through the layer for some events of one turn, in order. ``origin`` is the
    channel of the socket that got them directly already."""
    return {"type": EVENTS, "events": events, "origin": origin or ""}


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
    delta never overtakes the one before it: first to ``socket`` (the tab that started the turn,
    which alone gets "error" events), then to the group as one layer message.
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
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        # Events from the worker thread that the loop has yet to take (``_take``).
        self._handed: list[dict[str, Any]] = []
        self._handed_lock = threading.Lock()
        self.failed_sends = 0

    def __call__(self, event: dict[str, Any]) -> None:
        # One wake-up of the event loop per burst of events (a step's messages, a run of
        # deltas), not one per event: the first schedules ``_take``, which takes them all.
        with self._handed_lock:
            self._handed.append(event)
            if len(self._handed) > 1:
                return
        try:
            self._loop.call_soon_threadsafe(self._take)
        except RuntimeError:
            # The loop is gone (process shutting down): the turn is still stored.
            logger.warning("Dropped a %s event: the event loop is closed.", event.get("type"))

    def _take(self) -> None:
        with self._handed_lock:
            events, self._handed = self._handed, []
        for event in events:
            self.put(event)

    def put(self, event: dict[str, Any] | None) -> None:
        """Queues an event (None: the end) from the loop's own thread."""
        self._queue.put_nowait(event)

    def close(self) -> None:
        self.put(None)

    async def drain(self) -> None:
        """Delivers the queued events until the end marker; returns once it is reached."""
        shared: list[dict[str, Any]] = []  # for the layer, waiting at most ``linger``
        send_at = 0.0
        while True:
            batch = await self._next_batch(send_at if shared else None)
            ended = None in batch
            if ended:
                batch = batch[: batch.index(None)]
            events = coalesce([event for event in batch if event is not None])
            if events:
                if not shared:
                    send_at = self._loop.time() + self._linger
                shared += await self._relay(events)
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
            pass
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _relay(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Relays ``events`` to the turn's socket; returns those for the group."""
        if self._socket is None:
            return events
        try:
            await self._socket.relay_events(events)
        except Exception:
            # A socket closing under the turn: the turn goes on and is stored.
            logger.warning("Could not relay a turn's events to its socket.", exc_info=True)
        # "Your message was not accepted" concerns the tab that sent it only.
        return [event for event in events if event.get("type") != "error"]

    async def _send(self, events: list[dict[str, Any]]) -> None:
        origin = None if self._socket is None else self._socket.channel_name
        async with send_slots():
            try:
                await self._layer.group_send(self._group, layer_message(events, origin))
                if any(event.get("type") == "handoff" for event in events):
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
    socket: Relay | None,
    on_done: Callable[[Any], Any] | None,
    executor: ThreadPoolExecutor | None = None,
) -> Any:
    loop = asyncio.get_running_loop()
    emitter = GroupEmitter(loop=loop, layer=layer, group=group, socket=socket)
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
        await on_done(result)
    return result


def start_turn(
    job: Callable[..., Any],
    *,
    layer: Any,
    group: str,
    socket: Relay | None = None,
    on_done: Callable[[Any], Any] | None = None,
) -> asyncio.Task[Any]:
    """Runs ``job(emit=...)`` on the turn pool as a task that outlives the socket.

    ``job`` is a blocking chat service call (``turn_submit``, ``action_decide``). The task is
    deliberately not tied to the consumer: when the socket drops mid-turn, the turn still
    completes and is stored, and other tabs still see it. ``socket`` (the one that asked) gets
    the events directly, "error" events only it. ``on_done`` gets the job's result (None if it
    raised) once every event of the turn was relayed to ``socket`` and handed to the layer.
    """
    task = asyncio.create_task(
        _run_turn(
            job,
            layer=layer,
            group=group,
            socket=socket,
            on_done=on_done,
            executor=turn_executor(),
        )
    )
    _turn_tasks.add(task)
    task.add_done_callback(_turn_tasks.discard)
    return task


async def run_step(
    job: Callable[..., Any], *, layer: Any, group: str, socket: Relay | None = None
) -> Any:
    """Runs a short blocking service call (a handoff step) and sends its events like a turn's.

    It runs on the loop's default pool, not the turn pool, so a staff reply never waits behind
    the model; it is awaited, as it takes a few queries. An unexpected exception becomes a
    generic "error" event and None.
    """
    return await _run_turn(job, layer=layer, group=group, socket=socket, on_done=None)


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
