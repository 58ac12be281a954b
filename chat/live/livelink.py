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

Presence. A group joined with ``announce`` (a conversation's) keeps track of its other members,
so a turn with nobody else to tell makes no layer send at all (``live_alone``, read by
``chat.live.emitter``): channels-redis's group send costs two Redis round trips even when it
finds nobody. After ``group_add``, the socket announces itself to the group ("joined"); the
layer's ``group_send_members`` returns the members that send found in the same round trip
(``chat.live.layer``), so the joiner knows at once who was there, and the members record the
joiner when the announcement reaches them. On leaving, a socket that knows of others says so
("left"). Every pair of members learns of each other one way or the other: whichever joined
second either saw the first in its read of the members, or the first was added after that read
and its own announcement reached the second. Until the socket knows (a layer that cannot list
the members, a membership lost meanwhile, while the layer is away) it always sends. Peers in a
crashed process never say goodbye: they cost a send each, as before.

The window left: a tab that joins announces itself, then reads the database (its resume). An
event another tab sends after that read, but before that tab's process has taken the
announcement from the layer, does not reach the joiner: it has the turn's messages when the
next event reaches it (a gap in seqs, or the turn's end and its ``last_seq``, read the rest from
the database, ``chat.live.relay``), at the latest on its next resume. The window is how long a
process takes to read a layer message: normally a millisecond or less.

The announcements travel as ``chat.events`` messages with no events, which sockets of an
earlier release (during a deploy) relay as nothing: a type they had no handler for would end
their socket. Those sockets never announce themselves, so a tab of a newer release that joined
before one of theirs does not know of it and sends it nothing until it reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from chat.live.emitter import layer_message

logger = logging.getLogger(__name__)

PAUSED_TEXT = (
    "Live updates are paused. Your messages are still sent and answered; "
    "replies appear when each one is finished."
)
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 5.0
JOINED = "joined"
LEFT = "left"


def presence_message(presence: str, group: str, channel: str) -> dict[str, Any]:
    """A socket's "joined" or "left" for the other members of ``group``."""
    return {**layer_message([], channel), "presence": presence, "group": group, "channel": channel}


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
        # The groups this socket announces itself to, the other members it heard of in each,
        # and those where it knows every member (only there may it be alone).
        self._announced: set[str] = set()
        self._peers: dict[str, set[str]] = {}
        self._peers_known: set[str] = set()
        self._outages = 0

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

    async def live_join(self, group: str, *, announce: bool = False) -> None:
        """Joins ``group``; if the layer is away, the socket opens paused and joins later.

        ``announce``: tells the group's other members, and keeps track of them (``live_alone``).
        """
        self.live_groups.append(group)
        if announce:
            self._announced.add(group)
        try:
            await self.channel_layer.group_add(group, self.channel_name)
            if announce and await self._announce(group):
                self._peers_known.add(group)
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
                if group in self._announced and not self.live_alone(group):
                    await self.channel_layer.group_send(
                        group, presence_message(LEFT, group, self.channel_name)
                    )
            except Exception:
                logger.warning("Channel layer unavailable: could not leave %s", group)
        self.live_groups = []
        self._peers_known.clear()

    def live_alone(self, group: str) -> bool:
        """Whether this socket knows that no other socket is in ``group``."""
        return group in self._peers_known and not self._peers.get(group)

    async def _announce(self, group: str) -> bool:
        """Announces this socket to ``group``; whether it now knows every other member."""
        # Members heard of from here on are kept, also those whose announcement arrives while
        # this one is under way.
        peers: set[str] = set()
        self._peers[group] = peers
        self._peers_known.discard(group)
        message = presence_message(JOINED, group, self.channel_name)
        send_members = getattr(self.channel_layer, "group_send_members", None)
        if send_members is None:
            await self.channel_layer.group_send(group, message)
            return False
        members = await send_members(group, message)
        # Not itself among them: its membership was lost meanwhile (Redis restarted).
        if members is None or self.channel_name not in members:
            return False
        peers.update(member for member in members if member != self.channel_name)
        return True

    async def dispatch(self, message: dict[str, Any]) -> None:
        presence = message.get("presence")
        if presence is None:
            await super().dispatch(message)  # type: ignore[misc]
            return
        peers = self._peers.get(message.get("group", ""))
        channel = message.get("channel")
        if peers is None or not isinstance(channel, str) or channel == self.channel_name:
            return
        if presence == JOINED:
            peers.add(channel)
        elif presence == LEFT:
            peers.discard(channel)

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
        self._outages += 1
        # Announcements may be lost meanwhile: every turn sends until the socket announces again.
        self._peers_known.clear()
        if self.live_accepted:
            await self._live_tell({"type": "live", "state": "paused", "text": PAUSED_TEXT})
        self._relinker = asyncio.create_task(self._relink())

    async def live_resumed(self) -> None:
        """Hook: live updates work again (send what was missed meanwhile)."""

    async def _relink(self) -> None:
        delay = RETRY_FIRST_SECONDS
        while True:
            await asyncio.sleep(delay)
            known = []
            try:
                # Redis may have restarted empty: join again. A pooled connection that died
                # with the old server fails once and is replaced, so this also clears those.
                for group in self.live_groups:
                    await self.channel_layer.group_add(group, self.channel_name)
                    if group in self._announced and await self._announce(group):
                        known.append(group)
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
        # This socket's read of the layer retries on its own clock, so announcements that
        # reached it since it joined again may wait that long to be read: until then, it sends.
        outages = self._outages
        await asyncio.sleep(RETRY_MAX_SECONDS + RETRY_FIRST_SECONDS)
        if self._outages == outages:
            self._peers_known.update(known)

    async def _live_tell(self, event: dict[str, Any]) -> None:
        # The socket may be closing; nothing to tell then.
        with contextlib.suppress(Exception):
            await self.send_json(event)  # type: ignore[attr-defined]
