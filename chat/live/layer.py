"""The channel layer the live chat runs on: channels-redis's, leaving a turn's own socket out.

The socket that started a turn gets its events directly from the turn (``chat.live.emitter``),
so the layer message carrying them to the other tabs names that socket's channel as its
``origin``. Sending it back to that channel would cost a Redis write and a read, only for the
socket to drop it; this layer leaves the origin out of the group send (with no other member,
no message is written at all). Other layers deliver it, and the socket skips it
(``chat.live.relay``).
"""

from typing import Any

from channels_redis.core import RedisChannelLayer


class OriginSkippingRedisChannelLayer(RedisChannelLayer):
    def _map_channel_keys_to_connection(
        self, channel_names: list[str], message: dict[str, Any]
    ) -> Any:
        # Called by ``group_send`` with the group's members, to pick whom to write to.
        origin = message.get("origin")
        if origin:
            channel_names = [name for name in channel_names if name != origin]
        return super()._map_channel_keys_to_connection(channel_names, message)
