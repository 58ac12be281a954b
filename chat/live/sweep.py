"""Every server process closes dead turns by itself: no operator command after a crash.

The first socket of an event loop starts a sweep there that runs every quarter of
``CHAT_TURN_LEASE_SECONDS``: a turn whose process died, or lost the database for longer than a
lease, is closed within about a lease and a quarter (``chat.live.recovery``), and its tabs hear
the notice and the turn's end through the channel layer. A turn whose process on this host is
gone (a restarted server) is closed at the first sweep, a quarter lease after the first socket.
Sockets do not query on connect: a reconnect storm after a restart must stay cheap; a message
sent to the conversation closes its dead turn at once (``chat.live.turns``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.db import DatabaseError

from chat.live.dbcalls import short_query
from chat.live.emitter import layer_message
from chat.live.leases import connection_reset, lease_seconds
from chat.live.realtime import group_name
from chat.live.recovery import Recovered, turns_recover

logger = logging.getLogger(__name__)

_sweepers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


def _recover() -> list[Recovered]:
    try:
        return turns_recover()
    except DatabaseError:
        # The database is away: try again on a fresh connection next time.
        connection_reset()
        raise


recover = short_query(_recover)


async def announce(layer: Any, recovered: list[Recovered]) -> None:
    """Tells the open tabs of each conversation that its turn was closed."""
    for closed in recovered:
        try:
            await layer.group_send(group_name(closed.conversation_id), layer_message(closed.events))
        except Exception:
            # Live delivery is best effort: the notice is stored and a resume fetches it.
            logger.warning("Could not announce closed turn %s", closed.turn_id)
            return


async def sweep_forever(layer: Any, interval: float | None = None) -> None:
    while True:
        await asyncio.sleep(lease_seconds() / 4 if interval is None else interval)
        try:
            recovered = await recover()
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
