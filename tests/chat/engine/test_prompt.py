"""The system prompt: fixed rules, a tool list generated from the registry, the customer's facts."""

from typing import Any

from chat.engine.prompt import customer_facts, instructions
from chat.engine.registry import Tool, ToolContext, ToolRegistry
from chat.engine.types import ToolOutcome
from chat.tools import registry


class Weather(Tool):
    name = "get_weather"
    description = "Today's weather at the customer's address."
    input_schema: dict[str, Any] = {"type": "object", "properties": {}}
    prompt_notes = "Only mention it when asked."

    def run(self, context: ToolContext, tool_input: dict[str, Any]) -> ToolOutcome:
        return ToolOutcome("success", {"sky": "clear"})


def test_it_lists_exactly_the_tools_it_is_given() -> None:
    prompt = instructions(tools=ToolRegistry([Weather()]))

    assert (
        "- get_weather: Today's weather at the customer's address. Only mention it when asked."
        in prompt
    )
    assert "cancel_order" not in prompt
    assert "<reply></reply>" in prompt


def test_the_customer_comes_in_as_plain_facts() -> None:
    facts = customer_facts(customer_name="Alice Liddell", customer_id="012345")

    assert facts == "The signed-in customer is Alice Liddell (customer id 012345)."


def test_without_tools_it_says_so() -> None:
    prompt = instructions(tools=ToolRegistry())

    assert "You have no tools" in prompt
    assert "Your tools:" not in prompt


def test_the_default_prompt_names_every_default_tool_with_its_notes() -> None:
    prompt = instructions(tools=registry)

    listed = [line.split(":")[0][2:] for line in prompt.splitlines() if line.startswith("- ")]
    assert listed == registry.names()
    assert listed == [
        "get_user",
        "get_order_by_id",
        "get_customer_orders",
        "cancel_order",
        "request_human_agent",
    ]
    assert "Never say an order is cancelled unless the tool result says so." in prompt
