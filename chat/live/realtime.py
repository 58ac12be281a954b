"""Runs turns off the event loop and carries their events to every open tab.

A turn blocks for as long as the model takes, so it runs on a dedicated thread pool, never on
the event loop nor on Channels' shared ``thread_sensitive`` thread (which would queue every
socket of the process behind one slow turn). Its events reach the tab that started it and the
conversation's group through ``chat.live.emitter``.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import IO, Any

from django.conf import settings
from django.db import close_old_connections

from chat.live.emitter import GroupEmitter, Relay

logger = logging.getLogger(__name__)

METRICS_INTERVAL_SECONDS = 60.0

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
# asyncio keeps only weak references to tasks; these must outlive the socket that started them.
_turn_tasks: set[asyncio.Task[Any]] = set()
_open_websockets = 0
_reporters: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


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
    reply: Callable[[Any], Awaitable[dict[str, Any] | None]] | None,
    executor: ThreadPoolExecutor | None = None,
) -> Any:
    loop = asyncio.get_running_loop()
    emitter = GroupEmitter(loop=loop, layer=layer, group=group, socket=socket)
    sender = asyncio.create_task(emitter.drain())
    result: Any = None
    last_word: dict[str, Any] | None = None
    try:
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
        if reply is not None:
            last_word = await reply(result)
    finally:
        emitter.close(last_word)
        await sender
    return result


def start_turn(
    job: Callable[..., Any],
    *,
    layer: Any,
    group: str,
    socket: Relay | None = None,
    reply: Callable[[Any], Awaitable[dict[str, Any] | None]] | None = None,
) -> asyncio.Task[Any]:
    """Runs ``job(emit=...)`` on the turn pool as a task that outlives the socket.

    ``job`` is a blocking chat service call (``turn_submit``, ``action_decide``). The task is
    deliberately not tied to the consumer: when the socket drops mid-turn, the turn still
    completes and is stored, and other tabs still see it. ``socket`` (the one that asked) gets
    the events directly, "error" events only it. ``reply`` makes, from the job's result (None if
    it raised), the event ``socket`` gets after every event of the turn (None: nothing).
    """
    task = asyncio.create_task(
        _run_turn(
            job,
            layer=layer,
            group=group,
            socket=socket,
            reply=reply,
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
    return await _run_turn(job, layer=layer, group=group, socket=socket, reply=None)


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
