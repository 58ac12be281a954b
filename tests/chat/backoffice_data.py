"""A small, hand-built set of conversations whose every backoffice number is known.

Rows are written directly (not through a model run) so each token, latency and timestamp is
chosen here; ``expected`` in each test spells out the arithmetic.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db.models import F

from chat.models import (
    Conversation,
    ConversationStatus,
    Feedback,
    Message,
    MessageKind,
    MessageRole,
    ModelCall,
    PendingAction,
    Turn,
)
from orders.models import Customer
from orders.services import Actor, order_cancel
from tests.chat.factories import make_conversation
from tests.conftest import make_order


def customer_text(text: str) -> list[dict[str, Any]]:
    return [{"text": text}]


def tool_use(use_id: str, name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    return {"toolUse": {"toolUseId": use_id, "name": name, "input": tool_input}}


def tool_result(use_id: str, payload: Any, status: str = "success") -> dict[str, Any]:
    content = [{"json": payload}] if status == "success" else [{"text": str(payload)}]
    return {"toolResult": {"toolUseId": use_id, "content": content, "status": status}}


def reply(text: str, thinking: str = "Answer briefly.") -> list[dict[str, Any]]:
    return [{"text": f"<thinking>{thinking}</thinking><reply>{text}</reply>"}]


class Builder:
    """Appends messages and model calls to one conversation, in order, in one turn."""

    def __init__(self, conversation: Conversation) -> None:
        self.conversation = conversation
        self.turn = Turn.objects.create(conversation=conversation, state="completed")

    def message(self, role: str, kind: str, content: list[dict[str, Any]]) -> Message:
        self.conversation.last_seq += 1
        Conversation.objects.filter(pk=self.conversation.pk).update(
            last_seq=self.conversation.last_seq
        )
        return Message.objects.create(
            conversation=self.conversation,
            turn=self.turn,
            seq=self.conversation.last_seq,
            role=role,
            kind=kind,
            content=content,
        )

    def customer(self, text: str) -> Message:
        return self.message(MessageRole.USER, MessageKind.CUSTOMER, customer_text(text))

    def assistant(self, content: list[dict[str, Any]]) -> Message:
        return self.message(MessageRole.ASSISTANT, MessageKind.ASSISTANT, content)

    def results(self, *blocks: dict[str, Any]) -> Message:
        return self.message(MessageRole.USER, MessageKind.TOOL_RESULTS, list(blocks))

    def call(
        self,
        stop_reason: str,
        tokens: tuple[int, int] = (0, 0),
        *,
        cache: tuple[int, int] = (0, 0),
        latency_ms: int = 0,
        error: str = "",
    ) -> ModelCall:
        return ModelCall.objects.create(
            conversation=self.conversation,
            turn=self.turn,
            model_id="test-model",
            stop_reason=stop_reason,
            input_tokens=tokens[0],
            output_tokens=tokens[1],
            cache_read_tokens=cache[0],
            cache_write_tokens=cache[1],
            latency_ms=latency_ms,
            error=error,
        )

    def rate(self, message: Message, score: int, comment: str = "") -> Feedback:
        return Feedback.objects.create(
            message=message,
            conversation=self.conversation,
            user=self.conversation.owner,
            score=score,
            comment=comment,
        )


def move_back(conversation: Conversation, delta: timedelta) -> None:
    """Makes a conversation (and everything in it) have happened ``delta`` earlier."""
    moved = {"created_at": F("created_at") - delta}
    Conversation.objects.filter(pk=conversation.pk).update(
        updated_at=F("updated_at") - delta, **moved
    )
    for model in (Message, ModelCall, Feedback, PendingAction):
        model.objects.filter(conversation=conversation).update(**moved)
    Turn.objects.filter(conversation=conversation).update(started_at=F("started_at") - delta)


@dataclass
class DataSet:
    a: Conversation  # today: one tool call, a cancellation, a thumbs up
    b: Conversation  # two days ago, waiting for an agent: a tool error, a model error, thumbs down
    c: Conversation  # forty days ago: outside a seven-day period
    d: Conversation  # today, resolved after an escalation, no messages


def build(alice: Customer, bob: Customer) -> DataSet:
    """Four conversations; the numbers each test expects are worked out next to it."""
    make_order("37129", alice)
    make_order("11111", alice)
    make_order("22222", bob)

    a = Builder(make_conversation(alice))
    a.customer("Where is my order 37129? Please cancel it.")
    a.call("tool_use", (1000, 100), latency_ms=800)
    a.assistant(
        [
            {"text": "<thinking>Look it up.</thinking>"},
            tool_use("a1", "cancel_order", {"order_id": "37129"}),
        ]
    )
    order_cancel(
        customer=alice,
        order_id="37129",
        actor=Actor.for_customer(alice, conversation_id=a.conversation.pk),
    )
    a.results(tool_result("a1", {"result": "Cancelled the order", "order": {"id": "37129"}}))
    a.call("end_turn", (1200, 50), latency_ms=1200)
    answer = a.assistant(reply("Order 37129 is cancelled."))
    a.rate(answer, 1, "Quick and clear")

    b = Builder(make_conversation(bob))
    b.customer("What about my orders?")
    b.call("tool_use", (500, 20), cache=(2000, 1000), latency_ms=400)
    b.assistant(
        [
            {"text": "<thinking>Two lookups.</thinking>"},
            tool_use("b1", "get_order_by_id", {"order_id": "99999"}),
            tool_use("b2", "get_customer_orders", {"customer_id": "054321"}),
        ]
    )
    b.results(
        tool_result("b1", "No order 99999 was found on this customer's account.", "error"),
        tool_result("b2", {"customer_id": "054321", "orders": [{"id": "22222"}]}),
    )
    b.call("", error="ModelBusy")
    b.call("end_turn", (600, 30), latency_ms=2000)
    sorry = b.assistant(reply("Sorry, I could not find order 99999."))
    b.rate(sorry, -1, "Wrong order")
    Conversation.objects.filter(pk=b.conversation.pk).update(
        status=ConversationStatus.WAITING_FOR_AGENT
    )
    move_back(b.conversation, timedelta(days=2))

    c = Builder(make_conversation(alice))
    c.customer("Old question")
    c.call("tool_use", (9000, 900), latency_ms=9000)
    c.assistant([tool_use("c1", "get_order_by_id", {"order_id": "11111"})])
    c.results(tool_result("c1", "nope", "error"))
    c.call("end_turn", (9000, 900), latency_ms=9000)
    old = c.assistant(reply("Old answer"))
    c.rate(old, 1)
    move_back(c.conversation, timedelta(days=40))

    d = make_conversation(bob)
    Conversation.objects.filter(pk=d.pk).update(
        status=ConversationStatus.RESOLVED, escalated_at=d.created_at
    )

    # Cancellations that are not the assistant's: by staff, and by a customer outside a chat.
    staff = User.objects.create_user(username="lead-for-data", is_staff=True)
    order_cancel(customer=alice, order_id="11111", actor=Actor.for_staff(staff))
    order_cancel(customer=bob, order_id="22222", actor=Actor.for_customer(bob))
    for built in (a, b, c):
        built.conversation.refresh_from_db()
    d.refresh_from_db()
    return DataSet(a=a.conversation, b=b.conversation, c=c.conversation, d=d)
