"""Tabs and staff sockets of one conversation know of each other, so a turn with nobody else to
tell makes no channel layer send, and every other socket still sees it live.

Through the real ASGI stack on the real Redis layer, counting its group sends.
"""

import copy
import os
import uuid
from typing import Any, ClassVar

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from chat.live.layer import OriginSkippingRedisChannelLayer
from chat.live.livelink import JOINED, LEFT
from chat.live.realtime import group_name
from chat.models import Conversation
from tests.chat.handoff_helpers import make_agent
from tests.chat.sockets import (
    Socket,
    database_sessions_closed,  # noqa: F401 - a fixture
    eventually,
    is_submitted,
    session_cookie,
    signed_in_socket,
)

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures(
        "database_sessions_closed", "socket_settings", "turns_settled", "turn_pool_stopped"
    ),
]


class CountingLayer(OriginSkippingRedisChannelLayer):
    """The real Redis layer, keeping the group sends it made and the announcements it read."""

    sends: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    heard: ClassVar[list[str]] = []

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        CountingLayer.sends.append((group, message))
        await super().group_send(group, message)

    async def receive(self, channel: str) -> dict[str, Any]:
        message: dict[str, Any] = await super().receive(channel)
        if message.get("presence"):
            CountingLayer.heard.append(message["presence"])
        return message


@pytest.fixture(autouse=True)
def counting_layer(settings: Any) -> None:
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["BACKEND"] = f"{__name__}.CountingLayer"
    settings.CHANNEL_LAYERS = layers
    CountingLayer.sends.clear()
    CountingLayer.heard.clear()


def turn_sends(conversation: Conversation) -> list[dict[str, Any]]:
    """The layer messages sent to the conversation's group other than announcements."""
    group = group_name(conversation.pk)
    return [m for g, m in CountingLayer.sends if g == group and "presence" not in m]


async def heard(presence: str) -> bool:
    async def check() -> bool:
        return presence in CountingLayer.heard

    return bool(await eventually(check, within=10))


async def open_tab(user: User, conversation: Conversation, path: str | None = None) -> Socket:
    if path is None:
        socket = await signed_in_socket(user, conversation.pk)
    else:
        socket = await Socket(path, cookie=await sync_to_async(session_cookie)(user)).connect()
    assert socket.connected
    await socket.send({"type": "resume", "after_seq": 0})
    await socket.send({"type": "ping"})
    await socket.receive_until(lambda event: event.get("type") == "pong")
    return socket


async def take_turn(socket: Socket, text: str = "I need help with an order") -> None:
    client_message_id = str(uuid.uuid4())
    await socket.send({"type": "send", "text": text, "client_message_id": client_message_id})
    await socket.receive_until(is_submitted(client_message_id))


def is_reply(event: dict[str, Any]) -> bool:
    return event.get("type") == "message" and event.get("role") == "assistant"


async def test_a_turn_in_the_only_open_tab_makes_no_layer_send(
    conversation: Conversation, alice_user: User
) -> None:
    tab = await open_tab(alice_user, conversation)

    await take_turn(tab)

    assert [event["seq"] for event in tab.messages()] == [1, 2]
    assert turn_sends(conversation) == []
    await tab.close()


async def test_a_tab_that_opens_later_gets_the_next_turn_of_the_first_live(
    conversation: Conversation, alice_user: User
) -> None:
    first = await open_tab(alice_user, conversation)
    second = await open_tab(alice_user, conversation)
    assert await heard(JOINED)

    await take_turn(first)
    await second.receive_until(is_reply)

    # Deltas only ever travel live: the database has none.
    assert any(event["type"] == "delta" for event in second.events)
    assert [event["seq"] for event in second.messages()] == [1, 2]
    assert turn_sends(conversation)
    await first.close()
    await second.close()


async def test_the_first_tab_gets_the_turn_of_a_tab_that_opened_later_live(
    conversation: Conversation, alice_user: User
) -> None:
    first = await open_tab(alice_user, conversation)
    second = await open_tab(alice_user, conversation)

    await take_turn(second)
    await first.receive_until(is_reply)

    assert any(event["type"] == "delta" for event in first.events)
    assert [event["seq"] for event in first.messages()] == [1, 2]
    await first.close()
    await second.close()


async def test_once_the_other_tab_closed_a_turn_makes_no_layer_send(
    conversation: Conversation, alice_user: User
) -> None:
    first = await open_tab(alice_user, conversation)
    second = await open_tab(alice_user, conversation)
    await take_turn(first)
    await second.receive_until(is_reply)

    await second.close()
    assert await heard(LEFT)
    # The ping's answer comes after the first tab has taken the goodbye from the layer.
    await first.send({"type": "ping"})
    await first.receive_until(lambda event: event.get("type") == "pong")
    CountingLayer.sends.clear()
    await take_turn(first)

    assert [event["seq"] for event in first.messages()] == [1, 2, 3, 4]
    assert turn_sends(conversation) == []
    await first.close()


async def test_a_staff_socket_watching_sees_the_customers_turn_live(
    conversation: Conversation, alice_user: User
) -> None:
    agent = await sync_to_async(make_agent)("sam", "Sam")
    customer = await open_tab(alice_user, conversation)
    staff = await open_tab(agent, conversation, f"/ws/staff/conversations/{conversation.pk}/")
    assert await heard(JOINED)

    await take_turn(customer)
    await staff.receive_until(is_reply)

    assert any(event["type"] == "delta" for event in staff.events)
    assert [event["seq"] for event in staff.messages()] == [1, 2]
    await customer.close()
    await staff.close()
