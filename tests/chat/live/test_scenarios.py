"""The original README's sample conversations, end to end with the demo model and the demo data.

Each is played signed in as the customer it concerns, through ``chat.live.turns`` exactly as the
websocket does, with the model the settings choose (the offline demo model).
"""

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from chat.engine.demo.model import PREFIX
from chat.live.conversations import conversation_start, events_since
from chat.live.turns import action_decide, turn_submit
from chat.models import Conversation, PendingAction, Turn, TurnState
from orders.models import Customer, Order, OrderEvent, OrderStatus
from orders.services import customer_login_ensure
from tests.chat.factories import Recorder, stored_history, user_of

pytestmark = pytest.mark.django_db

SCENARIO_FILE = Path(__file__).parents[1] / "readme_scenarios.json"
SCENARIOS = {s["name"]: s for s in json.loads(SCENARIO_FILE.read_text())}


@pytest.fixture(autouse=True)
def demo_data(settings: Any) -> None:
    settings.CHAT_MODEL = "demo"
    settings.CHAT_DEMO_DELAY_SECONDS = 0.0
    call_command("loaddata", "customers", "orders", verbosity=0)


def play(
    scenario: str, *, approve: bool = True
) -> tuple[Conversation, list[tuple[str, dict[str, Any]]], Recorder]:
    """Plays the scenario's customer turns; clicks the confirmation button if one appears."""
    customer = Customer.objects.get(pk=_customer_id(SCENARIOS[scenario]))
    customer_login_ensure(customer=customer)
    customer.refresh_from_db()
    user = user_of(customer)
    conversation = conversation_start(user=user)
    events = Recorder()
    for number, text in enumerate(SCENARIOS[scenario]["user_turns"]):
        accepted = turn_submit(
            conversation=conversation,
            user=user,
            text=text,
            client_message_id=f"{scenario[:8]}-{number}",
            emit=events,
        )
        assert accepted
        for confirm in events.of_type("confirm"):
            if PendingAction.objects.filter(pk=confirm["action_id"], state="pending").exists():
                decided = action_decide(
                    conversation=conversation,
                    user=user,
                    action_id=confirm["action_id"],
                    approve=approve,
                    emit=events,
                )
                assert decided
    return conversation, tool_calls(conversation), events


def _customer_id(scenario: dict[str, Any]) -> str:
    return str(scenario["facts"]["customer"]["id"])


def tool_calls(conversation: Conversation) -> list[tuple[str, dict[str, Any]]]:
    return [
        (block["toolUse"]["name"], block["toolUse"]["input"])
        for message in stored_history(conversation)
        for block in message["content"]
        if "toolUse" in block
    ]


def replies(events: Recorder) -> list[str]:
    return [e["text"] for e in events.of_type("message") if e["role"] == "assistant"]


def assert_reloadable(conversation: Conversation, events: Recorder) -> None:
    """A reload shows exactly what the customer saw live, in order, every turn finished."""
    live = events.of_type("message")
    assert events_since(conversation=conversation, after_seq=0) == live
    assert [e["seq"] for e in live] == sorted({e["seq"] for e in live})
    assert all(text.startswith(PREFIX) for text in replies(events))
    assert set(Turn.objects.filter(conversation=conversation).values_list("state", flat=True)) == {
        TurnState.COMPLETED
    }


def test_order_lookup() -> None:
    conversation, calls, events = play("Order Lookup")

    assert calls == [("get_order_by_id", {"order_id": "32057"})]
    first, second = replies(events)
    assert "order number" in first
    assert "Your order 32057: 1 × Backpack at $59.99, status Shipped" in second
    assert_reloadable(conversation, events)


def test_cancel_order_after_the_customer_confirms() -> None:
    conversation, calls, events = play("Cancel Order")

    assert calls == [
        ("get_order_by_id", {"order_id": "37129"}),
        ("get_order_by_id", {"order_id": "37129"}),
        ("cancel_order", {"order_id": "37129"}),
    ]
    assert events.texts("confirm") == ["Cancel order 37129 (2 × Sunglasses)?"]
    assert "Processing" in replies(events)[1]
    assert replies(events)[-1] == f"{PREFIX}Done: order 37129 (2 × Sunglasses) is cancelled."
    assert Order.objects.get(pk="37129").status == OrderStatus.CANCELLED
    event = OrderEvent.objects.get()
    assert (event.order_id, event.actor_customer_id, event.conversation_id) == (
        "37129",
        "901235",
        conversation.pk,
    )
    assert_reloadable(conversation, events)


def test_cancel_order_declined_keeps_the_order() -> None:
    conversation, _, events = play("Cancel Order", approve=False)

    assert Order.objects.get(pk="37129").status == OrderStatus.PROCESSING
    assert not OrderEvent.objects.exists()
    assert "haven't cancelled order 37129" in replies(events)[-1]
    assert_reloadable(conversation, events)


def test_account_lookup() -> None:
    conversation, calls, events = play("Account Lookup")

    assert calls == [
        ("get_user", {"key": "email", "value": "anacarolina_silva@example.com"}),
        ("get_customer_orders", {"customer_id": "345678"}),
    ]
    assert "Ana Carolina Silva" in replies(events)[-2]
    listing = replies(events)[-1]
    assert "86420: 1 × Fitness Tracker at $129.99, Delivered" in listing
    assert "81695: 1 × Wireless Keyboard at $49.99, Processing" in listing
    assert_reloadable(conversation, events)


def test_combining_requests_finds_nothing_to_cancel() -> None:
    before = list(Order.objects.values_list("id", "status").order_by("id"))

    conversation, calls, events = play("Combining Requests")

    assert calls == [
        ("get_user", {"key": "phone", "value": "312-555-8204"}),
        ("get_customer_orders", {"customer_id": "456789"}),
    ]
    final = replies(events)[-1]
    assert "none of your orders can be cancelled" in final
    assert "54321 (3 × Laptop Sleeve) is Shipped" in final
    assert list(Order.objects.values_list("id", "status").order_by("id")) == before
    assert not PendingAction.objects.exists()
    assert_reloadable(conversation, events)


def test_readme_walkthrough_rechecks_and_refuses_a_shipped_order() -> None:
    conversation, calls, events = play(
        "README walkthrough (Tools Required / Continued conversation)"
    )

    assert calls == [
        ("get_order_by_id", {"order_id": "14826"}),
        ("get_order_by_id", {"order_id": "14826"}),
    ]
    assert "Your order 14826: 1 × Backpack at $59.99, status Shipped" in replies(events)[1]
    assert "can't cancel order 14826" in replies(events)[-1]
    assert Order.objects.get(pk="14826").status == OrderStatus.SHIPPED
    assert not PendingAction.objects.exists()
    assert not OrderEvent.objects.exists()
    assert_reloadable(conversation, events)


def test_cancel_without_the_order_id_asks_to_confirm_the_one_cancellable_order() -> None:
    customer = Customer.objects.get(pk="345678")
    user = customer_login_ensure(customer=customer)
    conversation = conversation_start(user=user)
    events = Recorder()
    for number, text in enumerate(
        [
            "I want to cancel an order but I forgot the number",
            "It's anacarolina_silva@example.com",
            "yes",
        ]
    ):
        turn_submit(
            conversation=conversation,
            user=user,
            text=text,
            client_message_id=f"forgot-{number}",
            emit=events,
        )

    assert tool_calls(conversation)[-2:] == [
        ("get_customer_orders", {"customer_id": "345678"}),
        ("cancel_order", {"order_id": "81695"}),
    ]
    assert events.texts("confirm") == ["Cancel order 81695 (1 × Wireless Keyboard)?"]
    assert Order.objects.get(pk="81695").status == OrderStatus.PROCESSING

    turn_submit(
        conversation=conversation, user=user, text="Yes", client_message_id="forgot-3", emit=events
    )

    assert Order.objects.get(pk="81695").status == OrderStatus.CANCELLED
    assert replies(events)[-1] == f"{PREFIX}Done: order 81695 (1 × Wireless Keyboard) is cancelled."
    assert_reloadable(conversation, events)
