"""The channel layer the live chat runs on: channels-redis's, leaving a turn's own socket out.

The socket that started a turn gets its events directly from the turn (``chat.live.emitter``),
so the layer message carrying them to the other tabs names that socket's channel as its
``origin``. Sending it back to that channel would cost a Redis write and a read, only for the
socket to drop it; this layer leaves the origin out of the group send (with no other member,
no message is written at all). Other layers deliver it, and the socket skips it
(``chat.live.relay``).

A socket joining a conversation announces itself with a group send (``chat.live.livelink``);
``group_send_members`` also returns the members that send found, read in the same round trip,
so the joiner learns who was there before it without waiting for their answers.
"""

from contextvars import ContextVar
from typing import Any

from channels_redis.core import RedisChannelLayer

# The members the current task's ``group_send_members`` found (None: not read yet).
_members_found: ContextVar[list[list[str]] | None] = ContextVar("members_found", default=None)


class OriginSkippingRedisChannelLayer(RedisChannelLayer):
    async def group_send_members(self, group: str, message: dict[str, Any]) -> list[str] | None:
        """``group_send``, returning the group's members it read (the origin among them), or
        None when this version of channels-redis did not say."""
        found: list[list[str]] = []
        token = _members_found.set(found)
        try:
            await self.group_send(group, message)
        finally:
            _members_found.reset(token)
        return found[0] if found else None

    def _map_channel_keys_to_connection(
        self, channel_names: list[str], message: dict[str, Any]
    ) -> Any:
        # Called by ``group_send`` with the group's members, to pick whom to write to.
        found = _members_found.get()
        if found is not None:
            found.append(list(channel_names))
        origin = message.get("origin")
        if origin:
            channel_names = [name for name in channel_names if name != origin]
        return super()._map_channel_keys_to_connection(channel_names, message)
