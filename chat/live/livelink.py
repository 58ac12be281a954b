"""Sockets that stay open while the channel layer (Redis) is away.

Live events are a convenience on top of the database, so a Redis outage must not cost a
customer their socket: ``LiveLink`` catches the layer's failures, tells the page live updates
are paused (``{"type": "live", "state": "paused", "text"}``), and keeps retrying with a fresh
connection until it can join its groups again; then it says so (``{"type": "live", "state":
"resumed"}``) and calls ``live_resumed`` so the socket can send what it missed from the
database. Meanwhile turns still run and are stored; the tab that sent a message still gets the
reply from the database when its turn ends.

Channels' consumer loop ends the socket (close 1011) when the layer's ``receive`` raises, and a
failing ``group_add`` in ``connect`` turns the handshake into an HTTP 500; both go through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)

PAUSED_TEXT = (
    "Live updates are paused. Your messages are still sent and answered; "
    "replies appear when each one is finished."
)
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 5.0


class LiveLink:
    """Mixin for a Channels websocket consumer (before it in the bases)."""

    channel_layer: Any
    channel_name: str
    _layer_receive: Callable[[], Awaitable[dict[str, Any]]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.live_groups: list[str] = []
        self.live_paused = False
        self.live_accepted = False
        self._relinker: asyncio.Task[None] | None = None

    # Channels' consumer assigns ``channel_receive`` when it starts; every read of it gets the
    # layer's receive wrapped, so a failure pauses live updates instead of ending the socket.
    @property
    def channel_receive(self) -> Callable[[], Awaitable[dict[str, Any]]]:
        return self._live_receive

    @channel_receive.setter
    def channel_receive(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self._layer_receive = receive

    async def _live_receive(self) -> dict[str, Any]:
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                return await self._layer_receive()
            except Exception:
                # Whatever the layer raises (refused, reset, timed out): the socket stays.
                await self.live_lost()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def live_join(self, group: str) -> None:
        """Joins ``group``; if the layer is away, the socket opens paused and joins later."""
        self.live_groups.append(group)
        try:
            await self.channel_layer.group_add(group, self.channel_name)
        except Exception:
            logger.warning("Channel layer unavailable: socket opens with live updates paused")
            await self.live_lost()

    async def live_leave(self) -> None:
        """Leaves the groups (best effort: an expired membership costs nothing)."""
        if self._relinker is not None:
            self._relinker.cancel()
        for group in self.live_groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:
                logger.warning("Channel layer unavailable: could not leave %s", group)
        self.live_groups = []

    async def accept(self, *args: Any, **kwargs: Any) -> None:
        await super().accept(*args, **kwargs)  # type: ignore[misc]
        self.live_accepted = True
        if self.live_paused:
            await self._live_tell({"type": "live", "state": "paused", "text": PAUSED_TEXT})

    async def live_lost(self) -> None:
        """The layer failed: tell the page once and start rejoining."""
        if self.live_paused:
            return
        self.live_paused = True
        if self.live_accepted:
            await self._live_tell({"type": "live", "state": "paused", "text": PAUSED_TEXT})
        self._relinker = asyncio.create_task(self._relink())

    async def live_resumed(self) -> None:
        """Hook: live updates work again (send what was missed meanwhile)."""

    async def _relink(self) -> None:
        delay = RETRY_FIRST_SECONDS
        while True:
            await asyncio.sleep(delay)
            try:
                # Redis may have restarted empty: join again. A pooled connection that died
                # with the old server fails once and is replaced, so this also clears those.
                for group in self.live_groups:
                    await self.channel_layer.group_add(group, self.channel_name)
            except Exception:
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            break
        self.live_paused = False
        self._relinker = None
        logger.info("Channel layer back: live updates resumed")
        await self._live_tell({"type": "live", "state": "resumed"})
        try:
            await self.live_resumed()
        except Exception:
            logger.exception("Catching up after live updates resumed failed")

    async def _live_tell(self, event: dict[str, Any]) -> None:
        # The socket may be closing; nothing to tell then.
        with contextlib.suppress(Exception):
            await self.send_json(event)  # type: ignore[attr-defined]
