"""Small builders for chat tests that touch the database: conversations, an event recorder.

The personas (``alice``, ``bob``, ``support``) are the fixtures of ``tests/conftest.py``; the
scripted model double is ``tests.chat.scripted``.
"""

import json
import uuid
from typing import Any

from django.contrib.auth.models import User

from chat.engine.client import ModelClient
from chat.engine.types import ModelCallRecord
from chat.live.turns import turn_submit
from chat.live.writes import Step, step_write
from chat.models import Conversation, Message, Turn, TurnState
from orders.models import Customer, Order, OrderEvent
from tests.chat.scripted import ScriptedModel


def make_conversation(customer: Customer) -> Conversation:
    return Conversation.objects.create(owner=user_of(customer), customer=customer)


def tool_results(model: ScriptedModel, request: int = -1) -> list[dict[str, Any]]:
    """The toolResult blocks in the last message of one of the model's recorded requests."""
    content = model.requests[request]["messages"][-1]["content"]
    return [block["toolResult"] for block in content if "toolResult" in block]


class Recorder:
    """An ``emit`` callable that keeps the events."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        json.dumps(event)  # events must be JSON-able: the consumer forwards them as they are
        self.events.append(event)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == kind]

    def texts(self, kind: str = "message") -> list[str]:
        return [event["text"] for event in self.of_type(kind)]


def database_snapshot() -> tuple[list[tuple[str, str, str]], int]:
    """Every order's (id, customer, status) and the number of order events."""
    orders = list(Order.objects.order_by("id").values_list("id", "customer_id", "status"))
    return orders, OrderEvent.objects.count()


def stored_history(conversation: Conversation) -> list[dict[str, Any]]:
    """The conversation as stored, in seq order (notices included)."""
    return [
        {"seq": m.seq, "role": m.role, "kind": m.kind, "content": m.content}
        for m in Message.objects.filter(conversation=conversation).order_by("seq")
    ]


def user_of(customer: Customer) -> User:
    assert customer.user is not None, "the customer needs a sign-in account"
    return customer.user


def submit(
    conversation: Conversation,
    customer: Customer,
    text: str,
    *,
    model: ModelClient | None = None,
    client_message_id: str = "",
) -> Recorder:
    """One customer message through ``chat.live.turns.turn_submit``; returns the events."""
    events = Recorder()
    accepted = turn_submit(
        conversation=conversation,
        user=user_of(customer),
        text=text,
        client_message_id=client_message_id or uuid.uuid4().hex,
        emit=events,
        client=model,
    )
    assert accepted, "the message was not accepted"
    return events


def spend_tokens(customer_id: str, tokens: int) -> None:
    """Stores a model call of ``tokens`` input tokens in a finished turn of a new conversation
    of the customer, as a turn stores its calls (``chat.live.writes``)."""
    conversation = make_conversation(Customer.objects.get(pk=customer_id))
    turn = Turn.objects.create(conversation=conversation, state=TurnState.COMPLETED)
    call = ModelCallRecord("demo", "end_turn", tokens, 0, 0, 0, 1, "")
    step_write(
        Step(
            conversation_id=conversation.pk,
            turn_id=turn.pk,
            model_calls=[(call, "")],
            while_running=False,
        )
    )
