"""Many more turn workers than database connections: turns share the process's pool."""

import asyncio
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import psycopg
import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.contrib.auth.models import User
from django.db import connection

from anycompany.dbpool import pool_reset
from chat.live import realtime
from chat.live.conversations import conversation_start, events_since
from chat.live.turns import turn_submit
from chat.models import Conversation, Turn, TurnState
from orders.models import Customer
from tests.chat.scripted import ScriptedModel, text_response, tool_call, tool_response
from tests.conftest import make_order

pytestmark = pytest.mark.django_db(transaction=True)

TURNS = 40
POOL = 4


class RemoteModel:
    """The scripted model, answering after a pause like one across the network."""

    def __init__(self, model: ScriptedModel, seconds: float) -> None:
        self.model = model
        self.seconds = seconds

    def converse_stream(self, **kwargs: Any) -> dict[str, Any]:
        time.sleep(self.seconds)
        return self.model.converse_stream(**kwargs)


class Backends:
    """The most client connections the test database had at once, sampled from another
    connection (outside the app's pool) while the block runs."""

    def __init__(self) -> None:
        params = connection.get_connection_params()
        self.conninfo = {
            key: params[key]
            for key in ("dbname", "user", "password", "host", "port")
            if key in params
        }
        self.peak = 0
        self.samples = 0
        self._done = threading.Event()

    def _sample(self) -> None:
        with psycopg.connect(**self.conninfo, autocommit=True) as db:
            while not self._done.is_set():
                row = db.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                ).fetchone()
                self.peak = max(self.peak, row[0] if row else 0)
                self.samples += 1
                time.sleep(0.005)

    def __enter__(self) -> "Backends":
        self._thread = threading.Thread(target=self._sample)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


@pytest.fixture
def small_pool(settings: Any) -> Iterator[None]:
    """A pool of POOL connections and TURNS turn workers, for this test only."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    saved = dict(connection.settings_dict)
    options = dict(saved["OPTIONS"])
    options["pool"] = {**(options.get("pool") or {}), "min_size": 1, "max_size": POOL}
    settings.CHAT_MAX_CONCURRENT_TURNS = TURNS
    realtime.turn_executor_shutdown()
    pool_reset()
    connection.settings_dict.update({"OPTIONS": options, "CONN_MAX_AGE": 0})
    try:
        yield
    finally:
        realtime.turn_executor_shutdown()
        pool_reset()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def conversations_of(customer: Customer, count: int) -> list[Conversation]:
    assert customer.user is not None
    make_order("40001", customer)
    started = [conversation_start(user=customer.user) for _ in range(count)]
    connection.close()  # back to the pool: only the turns hold connections from here on
    return started


def one_tool_model(number: int) -> RemoteModel:
    return RemoteModel(
        ScriptedModel(
            tool_response(tool_call(f"t-{number}", "get_order_by_id", {"order_id": "40001"})),
            text_response(f"<reply>Order 40001 is processing ({number}).</reply>"),
        ),
        seconds=0.2,
    )


async def test_more_concurrent_turns_than_connections_all_finish_within_the_pool(
    small_pool: None, alice: Customer
) -> None:
    user: User = alice.user  # type: ignore[assignment]
    conversations = await sync_to_async(conversations_of)(alice, TURNS)
    layer = InMemoryChannelLayer()

    with Backends() as backends:
        tasks = [
            realtime.start_turn(
                partial(
                    turn_submit,
                    conversation=conversation,
                    user=user,
                    text="Where is order 40001?",
                    client_message_id=f"m-{number}",
                    client=one_tool_model(number),
                ),
                layer=layer,
                group=realtime.group_name(conversation.pk),
            )
            for number, conversation in enumerate(conversations)
        ]
        accepted = await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)

    assert accepted == [True] * TURNS
    assert backends.samples > 0
    assert 0 < backends.peak <= POOL

    def stored() -> tuple[list[str], list[str]]:
        states = list(Turn.objects.values_list("state", flat=True))
        replies = [
            event["text"]
            for conversation in conversations
            for event in events_since(conversation=conversation, after_seq=0)
            if event.get("role") == "assistant"
        ]
        connection.close()
        return states, replies

    states, replies = await sync_to_async(stored)()
    assert states == [TurnState.COMPLETED] * TURNS
    assert sorted(replies) == sorted(f"Order 40001 is processing ({n})." for n in range(TURNS))
