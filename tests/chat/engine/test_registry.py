"""The tool registry: one object per tool, checked when registered, bound to one context."""

import uuid
from typing import Any

import pytest

from chat.engine.registry import (
    UNKNOWN_TOOL_TEXT,
    Tool,
    ToolContext,
    ToolRefused,
    ToolRegistry,
)
from chat.engine.types import ToolOutcome


class Echo(Tool):
    name = "echo"
    description = "Repeats the text back."
    input_schema = {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    }

    def run(self, context: ToolContext, tool_input: dict[str, Any]) -> ToolOutcome:
        if tool_input["text"] == "refuse":
            raise ToolRefused("Echo refuses that.")
        return ToolOutcome("success", {"text": tool_input["text"], "for": context.customer})


class Guarded(Echo):
    name = "guarded"
    status = "Guarding…"

    def needs_confirmation(self, context: ToolContext, tool_input: dict[str, Any]) -> bool:
        return True

    def confirmation_text(self, context: ToolContext, tool_input: dict[str, Any]) -> str:
        return f"Echo {tool_input['text']}?"

    def run(self, context: ToolContext, tool_input: dict[str, Any]) -> ToolOutcome:
        return ToolOutcome("error", "Not without a yes.")

    def run_confirmed(self, context: ToolContext, tool_input: dict[str, Any]) -> ToolOutcome:
        return ToolOutcome("success", {"echoed": tool_input["text"]})


def context(customer: str = "alice") -> ToolContext:
    return ToolContext(customer=customer, conversation_id=uuid.uuid4(), request_person=bool)


def test_it_offers_each_tool_as_a_converse_spec_in_registration_order() -> None:
    registry = ToolRegistry([Echo(), Guarded()])

    specs = registry.specs()

    assert [s["toolSpec"]["name"] for s in specs] == ["echo", "guarded"]
    assert specs[0] == {
        "toolSpec": {
            "name": "echo",
            "description": "Repeats the text back.",
            "inputSchema": {"json": Echo.input_schema},
        }
    }
    # Callers may annotate the specs (cache points) without touching the tools.
    specs[0]["toolSpec"]["inputSchema"]["json"]["required"].append("x")
    assert Echo.input_schema["required"] == ["text"]


def test_a_bound_registry_runs_each_call_for_its_context() -> None:
    tools = ToolRegistry([Echo()]).bind(context("bob"))

    assert tools.run("echo", {"text": "hi"}) == ToolOutcome("success", {"text": "hi", "for": "bob"})
    assert tools.status_text("echo", {"text": "hi"}) == "Working on it…"
    assert not tools.needs_confirmation("echo", {"text": "hi"})


def test_a_refusal_and_an_unknown_tool_become_error_outcomes() -> None:
    tools = ToolRegistry([Echo()]).bind(context())

    assert tools.run("echo", {"text": "refuse"}) == ToolOutcome("error", "Echo refuses that.")
    assert tools.run("nope", {}) == ToolOutcome("error", UNKNOWN_TOOL_TEXT.format(name="nope"))
    assert not tools.needs_confirmation("nope", {})


def test_a_tool_that_needs_a_yes_runs_its_confirmed_code_only_when_told() -> None:
    tools = ToolRegistry([Guarded()]).bind(context())

    assert tools.needs_confirmation("guarded", {"text": "x"})
    assert tools.confirmation_text("guarded", {"text": "x"}) == "Echo x?"
    assert tools.status_text("guarded", {"text": "x"}) == "Guarding…"
    assert tools.run("guarded", {"text": "x"}).status == "error"
    assert tools.run_confirmed("guarded", {"text": "x"}) == ToolOutcome("success", {"echoed": "x"})


def test_the_bound_specs_do_not_change_during_a_turn() -> None:
    registry = ToolRegistry([Echo()])
    tools = registry.bind(context())

    registry.register(Guarded())

    assert [s["toolSpec"]["name"] for s in tools.specs] == ["echo"]
    registry.unregister("guarded")
    assert registry.names() == ["echo"]


class Nameless(Echo):
    name = "has space"


class Undescribed(Echo):
    name = "undescribed"
    description = ""


class NotAnObject(Echo):
    name = "not_an_object"
    input_schema = {"type": "string"}


class BadSchema(Echo):
    name = "bad_schema"
    input_schema = {"type": "object", "properties": {"x": {"type": "strnig"}}}


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        (Nameless(), "letters, digits, underscores or hyphens"),
        (Undescribed(), "needs a description"),
        (NotAnObject(), "of type 'object'"),
        (BadSchema(), "invalid input schema"),
        (Echo(), "registered already"),
    ],
)
def test_it_refuses_a_tool_it_could_not_offer(tool: Tool, message: str) -> None:
    registry = ToolRegistry([Echo()])

    with pytest.raises(ValueError, match=message):
        registry.register(tool)

    assert registry.names() == ["echo"]
