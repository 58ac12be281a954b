"""Who runs a turn, and for how long that claim holds.

A running turn records its owner (``host:pid:start id`` of the process running it) and a lease:
the time until which that owner vouches for it. While a process holds turns (``held``), a
heartbeat thread renews all their leases in one UPDATE every third of
``CHAT_TURN_LEASE_SECONDS``, and storing a step renews it too (``chat.live.writes``). So a
turn whose lease lapsed, or whose owner is a process on this host that no longer exists, is
dead, and ``chat.live.recovery`` may close it.

The turn's own writes check that it is still running: once another process has closed it, its
late steps are refused (``TurnClosed``) instead of landing after the closing notice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.db.models import Q
from django.utils import timezone

from chat.live.dbcalls import connection_release
from chat.models import Turn, TurnState

logger = logging.getLogger(__name__)

_HOST = socket.gethostname()
_owner: tuple[int, str] | None = None
_held: dict[uuid.UUID, int] = {}
_held_lock = threading.Lock()
_heartbeat: threading.Thread | None = None


class TurnClosed(Exception):
    """The turn is no longer running: recovery closed it while its owner was cut off."""


def lease_seconds() -> float:
    return float(settings.CHAT_TURN_LEASE_SECONDS)


def owner_id() -> str:
    """This process as a turn's owner: host, process id and an id of this start of it."""
    global _owner
    pid = os.getpid()
    if _owner is None or _owner[0] != pid:
        # A new id after a fork too: the child is not the process that took the parent's turns.
        _owner = (pid, uuid.uuid4().hex[:12])
    return f"{_HOST}:{_owner[0]}:{_owner[1]}"


def lease_until() -> datetime:
    return timezone.now() + timedelta(seconds=lease_seconds())


def owner_gone(owner: str) -> bool:
    """Whether ``owner`` is certainly dead: a process of this host that no longer runs, or an
    earlier start of this very process id. Owners on other hosts are judged by their lease."""
    host, _, rest = owner.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != _HOST or not pid_text.isdigit() or not start:
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return owner != owner_id()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def local_owners() -> Q:
    """Turns owned by other processes of this host: ``owner_gone`` can tell if they died."""
    return Q(owner__startswith=f"{_HOST}:") & ~Q(owner=owner_id())


def held_ids() -> set[uuid.UUID]:
    """The turns this process is running now (never closed by its own recovery)."""
    with _held_lock:
        return set(_held)


@contextmanager
def held(turn_id: uuid.UUID) -> Iterator[None]:
    """Keeps ``turn_id``'s lease renewed for as long as the block runs."""
    global _heartbeat
    with _held_lock:
        _held[turn_id] = _held.get(turn_id, 0) + 1
        if _heartbeat is None:
            _heartbeat = threading.Thread(target=_beat, name="chat-turn-lease", daemon=True)
            _heartbeat.start()
    try:
        yield
    finally:
        with _held_lock:
            _held[turn_id] -= 1
            if not _held[turn_id]:
                del _held[turn_id]


def leases_renew(turn_ids: set[uuid.UUID]) -> int:
    """Extends the leases of these running turns; returns how many were still running."""
    return Turn.objects.filter(pk__in=turn_ids, state=TurnState.RUNNING).update(
        owner=owner_id(), lease_expires_at=lease_until()
    )


def lease_now() -> tuple[str, datetime]:
    """This process's claim on a turn as (owner, lease end), renewed with each stored step."""
    return owner_id(), lease_until()


def turn_finish_durably(finish: Callable[[], object], turn_id: uuid.UUID) -> None:
    """Runs a turn's last write, retrying on a fresh connection for up to a lease.

    If the database stays away longer, the lease lapses and recovery closes the turn once it is
    back; if recovery closed it already, there is nothing left to do.
    """
    try:
        with_reconnects(finish, within=lease_seconds())
    except TurnClosed:
        logger.warning("Turn %s was closed by recovery before it could finish", turn_id)


def connection_reset() -> None:
    """Drops this thread's database connection, so the next query opens a fresh one."""
    # Closing a connection whose server went away can itself fail; it is gone either way.
    with suppress(Exception):
        connection.close()


def with_reconnects[T](job: Callable[[], T], *, within: float) -> T:
    """Runs ``job``; when the database connection fails, retries on a fresh connection.

    For a turn's last write: a database restart mid-turn must not leave the turn "running".
    Gives up (re-raising) once ``within`` seconds have passed; the turn's lease then lapses and
    recovery closes it once the database is back. Only outside a transaction: a broken
    connection inside one cannot be replaced.
    """
    deadline = time.monotonic() + within
    delay = 0.2
    while True:
        try:
            return job()
        except (OperationalError, InterfaceError):
            if connection.in_atomic_block or time.monotonic() + delay > deadline:
                raise
            logger.warning("The database connection failed; retrying in %.1f s", delay)
            connection_reset()
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _beat() -> None:
    # One thread per process while it holds turns; it exits (closing its connection) when none
    # are left, so an idle process holds no connection for it.
    global _heartbeat
    try:
        while True:
            time.sleep(lease_seconds() / 3)
            with _held_lock:
                turn_ids = set(_held)
                if not turn_ids:
                    _heartbeat = None
                    return
            try:
                leases_renew(turn_ids)
                # Not held while it sleeps: it is one of the turns' pooled connections.
                connection_release()
            except DatabaseError:
                logger.warning("Could not renew %d turn lease(s); retrying", len(turn_ids))
                connection_reset()
    finally:
        with _held_lock:
            if _heartbeat is threading.current_thread():
                _heartbeat = None
        connection_reset()
