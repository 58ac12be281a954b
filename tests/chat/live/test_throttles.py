"""Per-user throttles on what costs the server without costing the user: reloading a
conversation's messages (``resume`` frames), opening sockets, starting conversations. Each says
in words what to do; counts live in the cache, per user, so another user is unaffected."""

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from chat.live import limits
from chat.models import Conversation
from orders.models import Customer
from tests.chat.handoff_helpers import make_agent
from tests.chat.sockets import (
    Socket,
    database_sessions_closed,  # noqa: F401 - a fixture
    session_cookie,
    signed_in_socket,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures(
        "database_sessions_closed", "socket_settings", "turns_settled", "turn_pool_stopped"
    ),
]


async def test_resume_frames_past_the_limit_are_refused_in_words(
    conversation: Conversation, alice_user: User, settings: Any
) -> None:
    settings.CHAT_RESUMES_PER_MINUTE = 3
    socket = await signed_in_socket(alice_user, conversation.pk)

    for _ in range(3):
        await socket.send({"type": "resume", "after_seq": 0})
        await socket.send({"type": "ping"})
        assert (await socket.receive_until(lambda e: e["type"] in ("pong", "error")))["type"] == (
            "pong"
        )
    await socket.send({"type": "resume", "after_seq": 0})
    refused = await socket.receive()

    assert refused["code"] == "resumes_limited"
    assert "wait" in refused["text"]
    await socket.send({"type": "ping"})
    assert await socket.receive() == {"type": "pong"}  # still open
    await socket.close()


async def test_a_staff_socket_counts_its_resumes_too(
    conversation: Conversation, settings: Any
) -> None:
    settings.CHAT_RESUMES_PER_MINUTE = 1
    agent = await sync_to_async(make_agent)("sam", "Sam")
    cookie = await sync_to_async(session_cookie)(agent)
    staff = await Socket(f"/ws/staff/conversations/{conversation.pk}/", cookie=cookie).connect()

    await staff.send({"type": "resume", "after_seq": 0})
    await staff.send({"type": "resume", "after_seq": 0})

    refused = await staff.receive_until(lambda event: event.get("type") == "error")
    assert refused["code"] == "resumes_limited"
    await staff.close()


async def test_socket_connections_past_the_limit_are_closed_with_4429(
    conversation: Conversation, alice_user: User, bob_user: User, settings: Any
) -> None:
    settings.CHAT_CONNECTS_PER_MINUTE = 2
    first = await signed_in_socket(alice_user, conversation.pk)
    second = await signed_in_socket(alice_user, conversation.pk)

    third = await signed_in_socket(alice_user, conversation.pk)

    assert third.connected  # accepted, then closed: the page can say why
    assert await third.closed_with() == 4429
    bobs = await signed_in_socket(bob_user, uuid.uuid4())  # another user: their own count
    assert await bobs.closed_with() == 4404
    for socket in (first, second):
        await socket.send({"type": "ping"})
        assert await socket.receive() == {"type": "pong"}
        await socket.close()


def test_starting_conversations_past_the_limit_answers_429_with_a_message(
    alice: Customer, alice_user: User, settings: Any
) -> None:
    settings.CHAT_CONVERSATIONS_PER_HOUR = 2
    client = Client()
    client.force_login(alice_user)

    answers = [client.post(reverse("chat:conversation_new")) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [302, 302, 429]
    assert "started many conversations" in answers[2].content.decode()
    assert Conversation.objects.filter(customer=alice).count() == 2


def redis_cache(settings: Any) -> str:
    """Makes the cache the real Redis, with keys of this test's own; its URL."""
    url = os.environ["REDIS_URL"]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": f"test-{uuid.uuid4().hex}",
        }
    }
    return url


@pytest.mark.redis
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL")
def test_in_redis_the_rate_limit_counts_per_user_and_minute_in_keys_that_expire(
    settings: Any,
) -> None:
    url = redis_cache(settings)
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 2
    minute = 29_000_000
    start = minute * 60.0

    limits.rate_limit_hit(user_id=1, now=start)
    limits.rate_limit_hit(user_id=1, now=start + 59)
    with pytest.raises(limits.RateLimited):
        limits.rate_limit_hit(user_id=1, now=start + 59.5)
    limits.rate_limit_hit(user_id=2, now=start + 59.5)  # another user: a count of their own
    limits.rate_limit_hit(user_id=1, now=start + 60)  # the next minute starts again

    key = f"chat:rate:1:{minute}"
    assert cache.get(key) == 3  # the refused attempt counts too
    assert 0 < redis.Redis.from_url(url).ttl(cache.make_key(key)) <= 120


@pytest.mark.redis
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL")
def test_counting_from_many_threads_shares_one_redis_connection(settings: Any) -> None:
    # Turns count on their own threads, hundreds of them: one connection each would be
    # hundreds of connections, each opened on a turn's first count.
    url = redis_cache(settings)
    server = redis.Redis.from_url(url)
    first_minute = int(time.time() // 60)
    limits.rate_limit_hit(user_id=1)  # the first count connects
    opened_before = server.info("stats")["total_connections_received"]

    for _ in range(16):  # one after another, each on a thread of its own
        with ThreadPoolExecutor(max_workers=1) as thread:
            thread.submit(limits.rate_limit_hit, user_id=1).result()

    opened = server.info("stats")["total_connections_received"] - opened_before
    assert opened <= 2  # the info calls' own connection; no thread opened one
    minutes = range(first_minute, int(time.time() // 60) + 1)
    assert sum(cache.get(f"chat:rate:1:{minute}", 0) for minute in minutes) == 17
