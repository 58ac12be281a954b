"""Running the tool calls of one assistant message.

Each toolUse input is checked against its tool's JSON schema before anything runs. An unknown
tool, an invalid input or a domain error becomes a ``toolResult`` with status "error" and a short
reason; an unexpected exception in ``Tools.run`` is logged and the model only hears
``INTERNAL_ERROR_TEXT``. Results are filled in call order; a call that needs the customer's
confirmation pauses the message there (``ToolCallRunner.answer``) until ``complete_pending``
runs the rest once the customer has decided.
"""

import json
import logging
from functools import lru_cache
from typing import Any

from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from chat.engine.history import parse_tool_input
from chat.engine.types import PendingConfirmation, ToolOutcome, Tools, TurnSink

logger = logging.getLogger(__name__)

INTERNAL_ERROR_TEXT = "The tool failed because of an internal error."
NOT_AN_OBJECT_TEXT = "The tool input must be a JSON object."
ONE_AT_A_TIME_TEXT = "Only one cancellation can be confirmed at a time; ask again after this one."

MAX_REASON_CHARS = 300

Slots = list[dict[str, Any] | None]


def tool_result_block(tool_use_id: str, outcome: ToolOutcome) -> dict[str, Any]:
    """The Converse toolResult block for ``outcome``."""
    if outcome.status == "success":
        content = json.loads(json.dumps(outcome.content, default=str))
        # Converse only takes an object as a json tool result.
        if not isinstance(content, dict):
            content = {"result": content}
        blocks: list[dict[str, Any]] = [{"json": content}]
    else:
        reason = str(outcome.content).strip() or "The tool failed."
        blocks = [{"text": reason[:MAX_REASON_CHARS]}]
    return {"toolResult": {"toolUseId": tool_use_id, "content": blocks, "status": outcome.status}}


def error_result(tool_use_id: str, reason: str) -> dict[str, Any]:
    """An error toolResult block with a short reason for the model."""
    return tool_result_block(tool_use_id, ToolOutcome("error", reason))


def _schemas(specs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {}
    for spec in specs:
        tool_spec = spec.get("toolSpec") or {}
        name = tool_spec.get("name")
        if isinstance(name, str):
            schemas[name] = (tool_spec.get("inputSchema") or {}).get("json") or {"type": "object"}
    return schemas


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Validator:
    # Built once per process for each schema, not per turn: the tools' schemas rarely change.
    schema = json.loads(schema_json)
    return validator_for(schema)(schema)


class ToolCallRunner:
    """Checks and runs the toolUse blocks of one assistant message."""

    def __init__(self, tools: Tools, sink: TurnSink | None) -> None:
        self.tools = tools
        self.sink = sink
        self.schemas = _schemas(tools.specs)

    def check(self, tool_use: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The parsed input and "" if the call may run, else ({}, a short reason for the model)."""
        name = tool_use.get("name")
        schema = self.schemas.get(name) if isinstance(name, str) else None
        if schema is None:
            return {}, f"Unknown tool: {str(name)[:80]}."
        validator = _validator(json.dumps(schema, sort_keys=True))
        tool_input = parse_tool_input(tool_use.get("input"))
        if tool_input is None:
            return {}, NOT_AN_OBJECT_TEXT
        error = best_match(validator.iter_errors(tool_input))
        if error is not None:
            return {}, f"Invalid input for {name}: {error.message}"[:MAX_REASON_CHARS]
        return tool_input, ""

    def run(self, tool_use_id: str, name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
        if self.sink is not None:
            self.sink.tool_started(name, tool_input, self.tools.status_text(name, tool_input))
        try:
            outcome = self.tools.run(name, tool_input)
        except Exception:
            # Domain errors arrive as outcomes; anything else is a bug the model must not read.
            logger.exception("Tool %s failed unexpectedly", name)
            outcome = ToolOutcome("error", INTERNAL_ERROR_TEXT)
        return tool_result_block(tool_use_id, outcome)

    def answer(
        self, tool_uses: list[dict[str, Any]], slots: Slots | None = None
    ) -> tuple[Slots, int | None]:
        """Fill the result slots in call order, stopping before the first call that needs a yes.

        Returns the slots (``None`` for the paused call and the valid calls after it) and the
        index of the paused call, if any.
        """
        results: Slots = list(slots) if slots is not None else [None] * len(tool_uses)
        paused: int | None = None
        for index, tool_use in enumerate(tool_uses):
            if results[index] is not None:
                continue
            tool_use_id = tool_use["toolUseId"]
            tool_input, reason = self.check(tool_use)
            if reason:
                results[index] = error_result(tool_use_id, reason)
            elif self.tools.needs_confirmation(tool_use["name"], tool_input):
                if paused is None:
                    paused = index
                else:
                    results[index] = error_result(tool_use_id, ONE_AT_A_TIME_TEXT)
            elif paused is None:
                results[index] = self.run(tool_use_id, tool_use["name"], tool_input)
        return results, paused


def complete_pending(
    pending: PendingConfirmation,
    outcome: ToolOutcome,
    tools: Tools,
    *,
    message: dict[str, Any] | None = None,
    sink: TurnSink | None = None,
) -> dict[str, Any]:
    """The user message answering a paused assistant message, once the customer has decided.

    ``outcome`` is the result of the confirmed call (or an error saying the customer declined).
    The calls that waited behind it run now, in order; a further call that needs confirmation gets
    ``ONE_AT_A_TIME_TEXT``. ``message`` is the paused assistant message, needed only when
    ``pending.tool_uses`` is empty. Resume the turn with ``run_turn`` on the history plus the
    returned message.
    """
    tool_uses = [
        b["toolUse"]
        for b in (message or {}).get("content") or []
        if isinstance(b, dict) and "toolUse" in b
    ] or list(pending.tool_uses)
    decided = tool_result_block(pending.tool_use_id, outcome)
    if len(tool_uses) != len(pending.results):
        # Without the calls we cannot run the waiting ones; repair() gives them error results.
        first_open = next((i for i, r in enumerate(pending.results) if r is None), -1)
        blocks = [
            decided if b is None and i == first_open else b for i, b in enumerate(pending.results)
        ]
        return {"role": "user", "content": [b for b in blocks if b is not None]}
    slots = [
        decided if tool_use["toolUseId"] == pending.tool_use_id else slot
        for tool_use, slot in zip(tool_uses, pending.results, strict=True)
    ]
    runner = ToolCallRunner(tools, sink)
    filled, paused = runner.answer(tool_uses, slots)
    if paused is not None:  # cannot happen for a pending built by run_turn; stay consistent anyway
        filled[paused] = error_result(tool_uses[paused]["toolUseId"], ONE_AT_A_TIME_TEXT)
        filled, _ = runner.answer(tool_uses, filled)
    return {"role": "user", "content": [b for b in filled if b is not None]}
