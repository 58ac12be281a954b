"""What the chat page is told: a preamble before a tool call is marked as one (status, not a reply
to rate), and a page catching up while a turn runs hears that the reply is still coming."""

import copy
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat.live.conversations import events_since, message_event
from chat.live.engine_config import stale_after
from chat.models import Turn, TurnState
from chat.staff.feedback import feedback_give
from chat.staff.transcript import conversation_transcript
from orders.models import Customer
from tests.chat.backoffice_data import Builder, reply, tool_result, tool_use
from tests.chat.factories import make_conversation, submit, user_of
from tests.chat.scripted import ScriptedModel, text_response, tool_call, tool_response
from tests.chat.sockets import (
    database_sessions_closed,  # noqa: F401 - a fixture
    signed_in_socket,
)
from tests.conftest import make_order

pytestmark = pytest.mark.django_db

LOOKING = "Let me look that up."


@pytest.fixture
def chat(alice: Customer) -> Builder:
    built = Builder(make_conversation(alice))
    built.customer("Where is order 37129?")  # seq 1
    built.assistant(  # seq 2: a preamble
        [
            {"text": f"<thinking>I need the order.</thinking><reply>{LOOKING}</reply>"},
            tool_use("t1", "get_order_by_id", {"order_id": "37129"}),
        ]
    )
    built.results(tool_result("t1", {"id": "37129", "status": "Processing"}))  # seq 3
    built.assistant(reply("Order 37129 is being processed."))  # seq 4
    return built


def shown(chat: Builder) -> list[dict[str, Any]]:
    return events_since(conversation=chat.conversation, after_seq=0)


def test_text_said_before_a_tool_call_is_marked_as_a_preamble(chat: Builder) -> None:
    events = shown(chat)

    assert [(e["seq"], e["role"], e["text"], e.get("preamble")) for e in events] == [
        (1, "customer", "Where is order 37129?", None),
        (2, "assistant", LOOKING, True),
        (4, "assistant", "Order 37129 is being processed.", None),
    ]


def test_a_tool_call_with_nothing_to_say_is_not_shown_at_all(alice: Customer) -> None:
    built = Builder(make_conversation(alice))
    silent = built.assistant(
        [{"text": "<thinking>Look it up.</thinking>"}, tool_use("t1", "get_order_by_id", {})]
    )

    assert message_event(silent) is None


def test_a_preamble_from_the_model_is_marked_as_it_is_stored(alice: Customer) -> None:
    conversation = make_conversation(alice)
    make_order("37129", alice)
    model = ScriptedModel(
        tool_response(
            tool_call("t1", "get_order_by_id", {"order_id": "37129"}),
            text=f"<reply>{LOOKING}</reply>",
        ),
        text_response("<reply>Order 37129 is being processed.</reply>"),
    )

    events = submit(conversation, alice, "Where is order 37129?", model=model)

    replies = [e for e in events.of_type("message") if e["role"] == "assistant"]
    assert [(e["text"], e.get("preamble", False)) for e in replies] == [
        (LOOKING, True),
        ("Order 37129 is being processed.", False),
    ]


def test_only_the_final_reply_can_be_rated(alice: Customer, chat: Builder) -> None:
    user = user_of(alice)

    with pytest.raises(ValueError, match=r"^Only the assistant's replies can be rated\.$"):
        feedback_give(user=user, conversation_id=chat.conversation.pk, seq=2, score=1)
    rated = feedback_give(user=user, conversation_id=chat.conversation.pk, seq=4, score=1)

    assert rated.message.seq == 4


def test_the_staff_transcript_still_shows_the_preamble(chat: Builder, support: User) -> None:
    entries = [e for e in conversation_transcript(chat.conversation) if e.kind == "message"]
    support.is_superuser = True
    support.save()
    client = Client()
    client.force_login(support)

    page = client.get(reverse("admin:chat_conversation_change", args=[chat.conversation.pk]))

    preamble = next(e for e in entries if e.message is not None and e.message.seq == 2)
    assert (preamble.text, preamble.preamble) == (LOOKING, True)
    assert [call.name for call in preamble.tool_calls] == ["get_order_by_id"]
    final = next(e for e in entries if e.message is not None and e.message.seq == 4)
    assert final.preamble is False
    assert page.status_code == 200
    assert LOOKING in page.content.decode()
    assert page.content.decode().count("shown to the customer as status") == 1


def test_a_page_catching_up_mid_turn_hears_the_turn_is_running(chat: Builder) -> None:
    turn = Turn.objects.create(
        conversation=chat.conversation, state=TurnState.RUNNING, active_at=timezone.now()
    )

    events = events_since(conversation=chat.conversation, after_seq=4)

    assert events == [{"type": "turn", "turn": str(turn.pk), "state": "started"}]


def test_a_turn_a_restart_left_running_is_not_reported(chat: Builder) -> None:
    Turn.objects.create(
        conversation=chat.conversation,
        state=TurnState.RUNNING,
        active_at=timezone.now() - stale_after() - timedelta(seconds=1),
    )

    assert events_since(conversation=chat.conversation, after_seq=4) == []


@pytest.mark.parametrize("state", [TurnState.COMPLETED, TurnState.AWAITING_CONFIRMATION])
def test_a_turn_that_is_not_running_is_not_reported(chat: Builder, state: str) -> None:
    Turn.objects.create(conversation=chat.conversation, state=state, active_at=timezone.now())

    assert events_since(conversation=chat.conversation, after_seq=4) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("database_sessions_closed")
async def test_a_socket_resuming_mid_turn_is_told_the_reply_is_still_coming(
    alice: Customer, settings: Any
) -> None:
    # A layer of its own: the Redis layer's locks belong to one event loop.
    settings.CHANNEL_LAYERS = copy.deepcopy(settings.CHANNEL_LAYERS)
    conversation = await sync_to_async(make_conversation)(alice)
    turn = await sync_to_async(Turn.objects.create)(
        conversation=conversation, state=TurnState.RUNNING, active_at=timezone.now()
    )
    socket = await signed_in_socket(await sync_to_async(user_of)(alice), conversation.pk)

    await socket.send({"type": "resume", "after_seq": 0})
    event = await socket.receive_until(lambda event: event["type"] == "turn")
    await socket.close()

    assert event == {"type": "turn", "turn": str(turn.pk), "state": "started"}
