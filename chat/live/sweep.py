"""Every server process closes dead turns by itself: no operator command after a crash.

The first socket of an event loop starts a sweep there that runs every quarter of
``CHAT_TURN_LEASE_SECONDS``: a turn whose process died, or lost the database for longer than a
lease, is closed within about a lease and a quarter (``chat.live.recovery``), and its tabs hear
the notice and the turn's end through the channel layer. A socket that opens also closes its
conversation's dead turns at once, so a customer coming back after a restart need not wait.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from django.db import DatabaseError

from chat.live.dbcalls import short_query
from chat.live.leases import connection_reset, lease_seconds
from chat.live.realtime import group_message, group_name
from chat.live.recovery import Recovered, turns_recover

logger = logging.getLogger(__name__)

_sweepers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


def _recover(conversation_id: uuid.UUID | None) -> list[Recovered]:
    try:
        return turns_recover(conversation_id=conversation_id)
    except DatabaseError:
        # The database is away: try again on a fresh connection next time.
        connection_reset()
        raise


recover = short_query(_recover)


async def announce(layer: Any, recovered: list[Recovered]) -> None:
    """Tells the open tabs of each conversation that its turn was closed."""
    for closed in recovered:
        for event in closed.events:
            try:
                await layer.group_send(group_name(closed.conversation_id), group_message(event))
            except Exception:
                # Live delivery is best effort: the notice is stored and a resume fetches it.
                logger.warning("Could not announce closed turn %s", closed.turn_id)
                return


async def sweep_forever(layer: Any, interval: float | None = None) -> None:
    while True:
        await asyncio.sleep(lease_seconds() / 4 if interval is None else interval)
        try:
            recovered = await recover(None)
        except DatabaseError:
            logger.warning("Could not look for dead turns: the database is unavailable")
            continue
        except Exception:
            logger.exception("Looking for dead turns failed")
            continue
        await announce(layer, recovered)


def sweeper_ensure(layer: Any) -> None:
    """Starts this event loop's sweep, unless it runs already."""
    loop = asyncio.get_running_loop()
    task = _sweepers.get(loop)
    if task is None or task.done():
        for stale in [other for other in _sweepers if other.is_closed()]:
            del _sweepers[stale]
        _sweepers[loop] = loop.create_task(sweep_forever(layer))


async def socket_opened(conversation_id: uuid.UUID, layer: Any) -> None:
    """A customer's socket opened: make sure the sweep runs, and close the conversation's dead
    turns now, before the socket resumes (so it finds the notice stored)."""
    sweeper_ensure(layer)
    try:
        recovered = await recover(conversation_id)
    except DatabaseError:
        return  # the sweep tries again; the socket works without it
    await announce(layer, recovered)
