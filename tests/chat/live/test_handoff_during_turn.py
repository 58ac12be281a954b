"""Asking for a person while the assistant is still acting: the handoff waits for the turn, and
nothing is decided nor asked of the model while a person holds the conversation.

Against the real server (daphne in its own process) with a slow model: the Bedrock stand-in,
which the real boto3 client talks to, holds its stream until the test lets it go on.
"""

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from chat.models import Conversation, ConversationStatus, PendingAction
from orders.models import Customer, Order, OrderStatus
from tests.chat.bedrock_standin import (
    BedrockStandIn,
    stream_reply,
    text_stream_frames,
    tool_stream_frames,
)
from tests.chat.sockets import (
    RawWebSocket,
    app_server,
    conversation_path,
    database_sessions_closed,  # noqa: F401 - a fixture
    session_cookie,
)
from tests.conftest import make_order

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("database_sessions_closed"),
]

ORDER = "81695"


@pytest.fixture(scope="module")
def standin() -> Iterator[BedrockStandIn]:
    server = BedrockStandIn()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(
    django_db_setup: None, django_db_blocker: Any, standin: BedrockStandIn, tmp_path_factory: Any
) -> Iterator[int]:
    missing = tmp_path_factory.mktemp("aws") / "missing"
    env = {
        "CHAT_MODEL": "bedrock",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": standin.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(missing),
        "AWS_SHARED_CREDENTIALS_FILE": str(missing),
        "BEDROCK_READ_TIMEOUT": "60",
        "CHAT_RATE_LIMIT_PER_MINUTE": "100",
        "CHAT_DAILY_TOKEN_BUDGET": "0",
    }
    with django_db_blocker.unblock(), app_server(env=env) as port:
        yield port


@pytest.fixture
def alice_user(alice: Customer) -> User:
    assert alice.user is not None
    make_order(ORDER, alice)
    return alice.user


async def open_chat(port: int, user: User, conversation: Conversation) -> RawWebSocket:
    cookie = await sync_to_async(session_cookie)(user)
    socket = await RawWebSocket.connect(port, conversation_path(conversation.pk), cookie=cookie)
    await socket.send({"type": "resume", "after_seq": 0})
    return socket


async def status_of(conversation: Conversation) -> str:
    return (await Conversation.objects.aget(pk=conversation.pk)).status


def is_turn(state: str) -> Any:
    return lambda event: event.get("type") == "turn" and event.get("state") == state


async def test_a_person_asked_for_mid_turn_joins_only_after_the_turn(
    server: int, standin: BedrockStandIn, conversation: Conversation, alice_user: User
) -> None:
    # The model says a word, then stalls: the turn is running when the customer asks.
    standin.script(
        stream_reply(text_stream_frames("<reply>Let me ", "check that.</reply>"), pause_at=2)
    )
    socket = await open_chat(server, alice_user, conversation)
    await socket.send(
        {"type": "send", "text": "where is my order?", "client_message_id": uuid.uuid4().hex}
    )
    await socket.receive_until(lambda event: event.get("type") == "delta")

    await socket.send({"type": "handoff"})
    await asyncio.sleep(1.5)  # long enough for a handoff that did not wait to be stored
    held_mid_turn = await status_of(conversation)
    standin.release()

    await socket.receive_until(is_turn("ended"))
    requested = await socket.receive_until(lambda event: event.get("type") == "handoff_requested")
    assert held_mid_turn == ConversationStatus.WITH_BOT
    assert requested["accepted"] is True
    assert await status_of(conversation) == ConversationStatus.WAITING_FOR_AGENT
    await socket.close()


async def test_a_cancellation_asked_mid_turn_is_never_approved_while_held(
    server: int, standin: BedrockStandIn, conversation: Conversation, alice_user: User
) -> None:
    # The report: "please cancel order 81695" with a slow model, then "talk to a person"
    # while the turn runs. The confirm card must not be approvable behind a person's back.
    standin.script(
        stream_reply(
            tool_stream_frames(
                "<reply>I can cancel that.</reply>",
                "tooluse_1",
                "cancel_order",
                {"order_id": ORDER},
            ),
            pause_at=2,
        ),
        stream_reply(text_stream_frames("<reply>Order 81695 is cancelled.</reply>")),
    )
    socket = await open_chat(server, alice_user, conversation)
    await socket.send(
        {"type": "send", "text": "please cancel order 81695", "client_message_id": "c" * 16}
    )
    await socket.receive_until(lambda event: event.get("type") == "delta")

    await socket.send({"type": "handoff"})
    await asyncio.sleep(1.5)
    held_mid_turn = await status_of(conversation)
    standin.release()

    confirm = await socket.receive_until(lambda event: event.get("type") == "confirm")
    refusal = await socket.receive_until(lambda event: event.get("type") == "error")
    assert held_mid_turn == ConversationStatus.WITH_BOT
    # Either the customer answers the question first, or the person is asked afterwards.
    assert refusal["code"] == "confirmation_pending"
    assert "answer the question" in refusal["text"]
    assert await status_of(conversation) == ConversationStatus.WITH_BOT

    # A person now holds it (the assistant asked for one, or the customer did after deciding):
    # the card can no longer be approved, and the model is not called.
    await Conversation.objects.filter(pk=conversation.pk).aupdate(
        status=ConversationStatus.WAITING_FOR_AGENT
    )
    calls_before = len(standin.received)
    start = len(socket.events)
    await socket.send({"type": "decide", "action_id": confirm["action_id"], "approve": True})

    def answered(_: Any) -> bool:  # the refusal and the "decided" frame, in either order
        kinds = {event.get("type") for event in socket.events[start:]}
        return {"error", "decided"} <= kinds

    await socket.receive_until(answered)
    error = next(event for event in socket.events[start:] if event["type"] == "error")
    decided = next(event for event in socket.events[start:] if event["type"] == "decided")
    assert error["code"] == "held"
    assert "support team has this conversation" in error["text"]
    assert decided["accepted"] is False
    assert (await Order.objects.aget(pk=ORDER)).status == OrderStatus.PROCESSING
    assert (await PendingAction.objects.aget(pk=confirm["action_id"])).state == "pending"
    assert len(standin.received) == calls_before
    await socket.close()
