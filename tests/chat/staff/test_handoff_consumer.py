"""The handoff over websockets: the customer's button, the staff inbox and an agent's socket,
through the real ASGI stack (origin check, session auth, URL routing)."""

import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from chat.live.handoff import REQUESTED_NOTICE, handoff_request
from chat.models import Conversation, ConversationStatus, Message, MessageKind, ModelCall
from chat.staff.handoff import RELEASED_NOTICE, handoff_claim
from tests.chat.handoff_helpers import make_agent
from tests.chat.sockets import (
    Socket,
    database_sessions_closed,  # noqa: F401 - a fixture
    is_submitted,
    session_cookie,
    signed_in_socket,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures(
        "database_sessions_closed", "socket_settings", "turns_settled", "turn_pool_stopped"
    ),
]

INBOX = "/ws/staff/inbox/"


@pytest.fixture
def agent(db: None) -> User:
    return make_agent("sam", "Sam")


def staff_path(conversation_id: object) -> str:
    return f"/ws/staff/conversations/{conversation_id}/"


async def socket_as(user: User | None, path: str) -> Socket:
    cookie = await sync_to_async(session_cookie)(user) if user is not None else None
    return await Socket(path, cookie=cookie).connect()


def of_type(kind: str, **fields: Any) -> Any:
    return lambda event: (
        event.get("type") == kind and all(event.get(key) == value for key, value in fields.items())
    )


# --- Who may connect --------------------------------------------------------------------------


async def test_the_staff_sockets_refuse_an_anonymous_visitor(conversation: Conversation) -> None:
    for path in (INBOX, staff_path(conversation.pk)):
        socket = await socket_as(None, path)
        # Accepted, then closed: refused before, the browser would only see 1006.
        assert (socket.connected, await socket.closed_with()) == (True, 4401)


@pytest.mark.parametrize("who", ["a customer", "staff without the permission"])
async def test_the_staff_sockets_refuse_anyone_but_support_agents(
    conversation: Conversation, alice_user: User, who: str
) -> None:
    if who == "a customer":
        user = alice_user
    else:
        user = await sync_to_async(User.objects.create_user)(
            username="clerk", password="correct horse 9", is_staff=True
        )

    for path in (INBOX, staff_path(conversation.pk)):
        socket = await socket_as(user, path)
        assert (socket.connected, await socket.closed_with()) == (True, 4403)


async def test_a_missing_conversation_is_not_found_for_an_agent(agent: User) -> None:
    socket = await socket_as(agent, staff_path(uuid.uuid4()))

    assert (socket.connected, await socket.closed_with()) == (True, 4404)


# --- The whole handoff, live --------------------------------------------------------------------


async def test_an_agents_reply_reaches_the_customers_socket_live(
    conversation: Conversation, alice_user: User, agent: User
) -> None:
    customer = await signed_in_socket(alice_user, conversation.pk)
    await customer.send({"type": "resume", "after_seq": 0})
    inbox = await socket_as(agent, INBOX)
    assert (await inbox.receive())["items"] == []

    await customer.send({"type": "handoff"})
    await customer.receive_until(of_type("handoff_requested", accepted=True))
    waiting = await inbox.receive_until(lambda e: e.get("type") == "inbox" and e["items"])
    assert [(i["id"], i["status"]) for i in waiting["items"]] == [
        (str(conversation.pk), "waiting_for_agent")
    ]
    assert await customer.seen(of_type("message", text=REQUESTED_NOTICE))

    staff = await socket_as(agent, staff_path(conversation.pk))
    await staff.send({"type": "resume", "after_seq": 0})
    state = await staff.receive_until(of_type("handoff"))
    assert state["status"] == "waiting_for_agent"
    await staff.send({"type": "claim"})
    await staff.receive_until(of_type("done", action="claim", accepted=True))
    joined = await customer.receive_until(of_type("handoff", status="with_agent"))
    assert joined["agent_name"] == "Sam"
    assert "agent_id" not in joined

    await staff.send({"type": "reply", "text": "Hi, I'm Sam.", "client_message_id": "agent-0001"})
    await staff.receive_until(of_type("replied", client_message_id="agent-0001", accepted=True))
    said = await customer.receive_until(of_type("message", role="staff"))
    assert (said["name"], said["text"]) == ("Sam", "Hi, I'm Sam.")

    await customer.send(
        {"type": "send", "text": "Thanks, Sam!", "client_message_id": "customer-0001"}
    )
    await customer.receive_until(is_submitted("customer-0001"))
    heard = await staff.receive_until(of_type("message", role="customer"))
    assert heard["text"] == "Thanks, Sam!"
    assert await sync_to_async(ModelCall.objects.filter(conversation=conversation).count)() == 0

    await staff.send({"type": "release"})
    await staff.receive_until(of_type("done", action="release", accepted=True))
    assert await customer.seen(of_type("message", text=RELEASED_NOTICE))
    assert await customer.seen(of_type("handoff", status="with_bot"))
    for socket in (customer, inbox, staff):
        await socket.close()


async def test_a_second_agent_cannot_claim_nor_reply(
    conversation: Conversation, alice_user: User, agent: User
) -> None:
    await sync_to_async(handoff_request)(conversation=conversation, user=alice_user, reason="")
    await sync_to_async(handoff_claim)(conversation_id=conversation.pk, agent=agent)
    robin = await sync_to_async(make_agent)("robin", "Robin")
    staff = await socket_as(robin, staff_path(conversation.pk))

    await staff.send({"type": "claim"})
    refused = await staff.receive_until(of_type("error"))
    await staff.send({"type": "reply", "text": "Me too", "client_message_id": "robin-0001"})
    await staff.receive_until(of_type("replied", accepted=False))

    assert refused["code"] == "already_claimed"
    assert not await sync_to_async(
        Message.objects.filter(conversation=conversation, kind=MessageKind.STAFF).exists
    )()
    await staff.close()


async def test_the_customer_cannot_claim_through_their_own_socket(
    conversation: Conversation, alice_user: User
) -> None:
    await sync_to_async(handoff_request)(conversation=conversation, user=alice_user, reason="")
    customer = await signed_in_socket(alice_user, conversation.pk)

    await customer.send({"type": "claim"})
    refused = await customer.receive_until(of_type("error"))

    assert refused["code"] == "unknown_type"
    status = await sync_to_async(Conversation.objects.values_list("status", flat=True).get)(
        pk=conversation.pk
    )
    assert status == ConversationStatus.WAITING_FOR_AGENT
    await customer.close()
