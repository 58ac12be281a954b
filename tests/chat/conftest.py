"""Fixtures shared by the chat's tests: a demo-model chat with its limits out of the way for the
socket tests, and the real boto3 client against the local Bedrock stand-in."""

import copy
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from chat.live import realtime
from chat.live.conversations import conversation_start
from chat.live.engine_config import bedrock_client_reset
from chat.models import Conversation
from orders.models import Customer
from tests.chat.bedrock_standin import BedrockStandIn, offline_aws


@pytest.fixture
def socket_settings(settings: Any) -> None:
    """The demo model without delay, a cache of the test's own and limits no test reaches."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            # Throttle counters must not leak from one test into the next.
            "LOCATION": f"socket-tests-{uuid.uuid4()}",
        }
    }
    # A channel layer of its own per test: the Redis layer's locks belong to one event loop, and
    # each test runs on a new one.
    settings.CHANNEL_LAYERS = copy.deepcopy(settings.CHANNEL_LAYERS)
    settings.CHAT_MODEL = "demo"
    settings.CHAT_DEMO_DELAY_SECONDS = 0.0
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 100
    settings.CHAT_DAILY_TOKEN_BUDGET = 0


@pytest.fixture
async def turns_settled() -> AsyncIterator[None]:
    yield
    # Turns outlive their sockets by design; let them end before the database is flushed.
    await realtime.turns_settled()


@pytest.fixture(scope="module")
def turn_pool_stopped() -> Iterator[None]:
    yield
    realtime.turn_executor_shutdown()


@pytest.fixture
def alice_user(alice: Customer) -> User:
    assert alice.user is not None
    return alice.user


@pytest.fixture
def bob_user(bob: Customer) -> User:
    assert bob.user is not None
    return bob.user


@pytest.fixture
def conversation(alice_user: User) -> Conversation:
    return conversation_start(user=alice_user)


@pytest.fixture
def bedrock_standin(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[BedrockStandIn]:
    """The app's real boto3 client (made afresh) against the local Bedrock stand-in, with dummy
    credentials."""
    offline_aws(monkeypatch, tmp_path)
    server = BedrockStandIn()
    server.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.url)
    bedrock_client_reset()
    yield server
    bedrock_client_reset()
    server.stop()
