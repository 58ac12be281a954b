"""Adding a tool is one registry entry: nothing else changes for it to be offered, run and audited.

The tool below exists only in this test. Registered with the registry the live chat uses, it is
in the ``toolConfig`` and the system prompt the model gets, the loop runs it for the signed-in
customer, and staff see its call and result in the admin transcript.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chat.engine.registry import Tool, ToolContext
from chat.engine.types import ToolOutcome
from chat.tools import registry
from orders.models import Customer
from tests.chat.factories import make_conversation, submit, tool_results
from tests.chat.scripted import ScriptedModel, text_response, tool_call, tool_response

pytestmark = pytest.mark.django_db


class GiftCardBalance(Tool):
    name = "get_gift_card_balance"
    description = "Returns the balance left on one of the signed-in customer's gift cards."
    input_schema = {
        "type": "object",
        "properties": {"card": {"type": "string", "pattern": "^GC-[0-9]{4}$"}},
        "required": ["card"],
    }
    status = "Checking your gift card…"
    prompt_notes = "Ask for the card number (GC- and four digits) if you do not have it."

    def run(self, context: ToolContext, tool_input: dict[str, Any]) -> ToolOutcome:
        customer: Customer = context.customer
        return ToolOutcome(
            "success", {"card": tool_input["card"], "balance": "25.00", "customer": customer.id}
        )


@pytest.fixture
def gift_cards() -> Iterator[GiftCardBalance]:
    tool = registry.register(GiftCardBalance())
    yield tool
    registry.unregister(tool.name)


def test_a_tool_registered_in_a_test_is_offered_run_and_shown_to_staff(
    gift_cards: GiftCardBalance, alice: Customer, support: User
) -> None:
    conversation = make_conversation(alice)
    model = ScriptedModel(
        tool_response(tool_call("t1", "get_gift_card_balance", {"card": "GC-1234"})),
        text_response("<reply>Your gift card GC-1234 has $25.00 left.</reply>"),
    )

    events = submit(conversation, alice, "How much is left on gift card GC-1234?", model=model)

    first = model.requests[0]
    offered = {spec["toolSpec"]["name"]: spec for spec in first["toolConfig"]["tools"]}
    assert offered["get_gift_card_balance"] == gift_cards.spec()
    assert (
        "- get_gift_card_balance: Returns the balance left on one of the signed-in customer's "
        "gift cards. Ask for the card number (GC- and four digits) if you do not have it."
    ) in first["system"][0]["text"]
    [result] = tool_results(model)
    assert result["status"] == "success"
    assert result["content"] == [
        {"json": {"card": "GC-1234", "balance": "25.00", "customer": alice.id}}
    ]
    assert "Checking your gift card…" in events.texts("status")
    assert events.texts()[-1] == "Your gift card GC-1234 has $25.00 left."

    support.is_superuser = True
    support.save()
    staff = Client()
    staff.force_login(support)
    page = staff.get(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Tool call <code>get_gift_card_balance</code> → success" in html
    assert "&quot;balance&quot;: &quot;25.00&quot;" in html


def test_the_registry_checks_a_new_tools_input_before_it_runs(
    gift_cards: GiftCardBalance, alice: Customer
) -> None:
    conversation = make_conversation(alice)
    model = ScriptedModel(
        tool_response(tool_call("t1", "get_gift_card_balance", {"card": "1234"})),
        text_response("<reply>Which card?</reply>"),
    )

    submit(conversation, alice, "gift card 1234", model=model)

    [result] = tool_results(model)
    assert result["status"] == "error"
    assert "Invalid input for get_gift_card_balance" in result["content"][0]["text"]
