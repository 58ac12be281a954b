"""A channel layer or cache that is down: sockets open paused, rate limits fail open."""

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import caches

from chat.live import limits, realtime
from chat.live.conversations import conversation_start
from chat.live.livelink import PAUSED_TEXT
from orders.models import Customer
from tests.chat.sockets import (
    database_sessions_closed,  # noqa: F401 - a fixture
    free_port,
    signed_in_socket,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("database_sessions_closed"),
]


@pytest.fixture
def redis_down(settings: Any) -> str:
    # Nothing listens on this port: every connection is refused, as when Redis is stopped.
    url = f"redis://127.0.0.1:{free_port()}/0"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": url, "socket_connect_timeout": 1}]},
        }
    }
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    }
    caches.close_all()
    settings.CHAT_MODEL = "demo"
    settings.CHAT_DEMO_DELAY_SECONDS = 0.0
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return url


async def test_a_socket_opens_with_live_updates_paused_when_redis_is_down(
    redis_down: str, alice: Customer
) -> None:
    assert alice.user is not None
    conversation = await sync_to_async(conversation_start)(user=alice.user)

    socket = await signed_in_socket(alice.user, conversation.pk)

    assert socket.connected
    event = await socket.receive()
    assert event == {"type": "live", "state": "paused", "text": PAUSED_TEXT}
    await socket.send({"type": "ping"})
    assert (await socket.receive_until(lambda e: e.get("type") == "pong"))["type"] == "pong"
    await socket.close()


def test_the_chat_rate_limit_fails_open_while_the_cache_is_down(
    redis_down: str, caplog: pytest.LogCaptureFixture
) -> None:
    limits.rate_limit_hit(user_id=1)

    assert "failing open" in caplog.text


async def test_while_the_layer_is_down_the_tab_that_sent_a_message_still_sees_it_stream(
    redis_down: str, alice: Customer
) -> None:
    assert alice.user is not None
    conversation = await sync_to_async(conversation_start)(user=alice.user)
    socket = await signed_in_socket(alice.user, conversation.pk)
    await socket.receive_until(lambda event: event.get("state") == "paused")
    await socket.send({"type": "resume", "after_seq": 0})
    frame = {"type": "send", "text": "Hello", "client_message_id": "while-redis-is-down"}

    await socket.send(frame)
    await socket.receive_until(lambda event: event.get("type") == "submitted", within=60)

    kinds = [event["type"] for event in socket.events]
    assert "delta" in kinds
    assert kinds.index("delta") < kinds.index("message", kinds.index("delta"))
    assert [event["role"] for event in socket.messages()] == ["customer", "assistant"]
    await socket.close()
    await realtime.turns_settled()
