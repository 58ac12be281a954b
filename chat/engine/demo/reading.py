"""What the offline demo model reads from the Converse messages it is sent.

The customer's own text (a support agent's notes left out), the tool results of the last message
paired with their calls, and what the model noted in its own earlier thinking ("Goal: cancel",
"Offer: orders"), since the messages are all it sees.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

ORDER_ID = re.compile(r"(?<![\w-])(\d{5})(?![\w@-])")
# What a support agent wrote, as the app stores it in the customer's turn.
STAFF_NOTE = re.compile(r"^\[Support agent[^\]\n]*\]: ")
GOAL = re.compile(r"Goal: (\w+)")
OFFER = re.compile(r"Offer: (\w+)")


@dataclass
class Result:
    name: str
    tool_input: dict[str, Any]
    status: str
    data: Any  # the json content, or the error text


def blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [block for block in message.get("content") or [] if isinstance(block, dict)]


def user_text(message: dict[str, Any]) -> str:
    """The customer's own text in a user message (a support agent's notes left out)."""
    return "\n".join(
        block["text"]
        for block in blocks(message)
        if isinstance(block.get("text"), str) and not STAFF_NOTE.match(block["text"])
    ).strip()


def tool_uses(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [block["toolUse"] for block in blocks(message) if "toolUse" in block]


def previous_assistant(messages: list[dict[str, Any]], before: int) -> dict[str, Any] | None:
    for message in reversed(messages[:before]):
        if message.get("role") == "assistant":
            return message
    return None


def thinking_text(message: dict[str, Any] | None) -> str:
    if message is None:
        return ""
    return " ".join(
        block["text"] for block in blocks(message) if isinstance(block.get("text"), str)
    )


def goal_of(message: dict[str, Any] | None) -> str:
    match = GOAL.search(thinking_text(message))
    return match.group(1) if match else "none"


def offer_of(message: dict[str, Any] | None) -> str:
    match = OFFER.search(thinking_text(message))
    return match.group(1) if match else ""


def result_data(result: dict[str, Any]) -> Any:
    for block in result.get("content") or []:
        if "json" in block:
            return block["json"]
        if "text" in block:
            if result.get("status") == "error":
                return block["text"]
            try:
                return json.loads(block["text"])
            except ValueError:
                return block["text"]
    return None


def results_of(messages: list[dict[str, Any]]) -> list[Result]:
    """The tool results in the last message, paired with the calls they answer."""
    calls: dict[str, dict[str, Any]] = {}
    caller = previous_assistant(messages, len(messages) - 1)
    if caller is not None:
        calls = {use["toolUseId"]: use for use in tool_uses(caller)}
    results = []
    for block in blocks(messages[-1]):
        if "toolResult" not in block:
            continue
        result = block["toolResult"]
        call = calls.get(result.get("toolUseId", ""), {})
        results.append(
            Result(
                name=str(call.get("name", "")),
                tool_input=dict(call.get("input") or {}),
                status=str(result.get("status", "success")),
                data=result_data(result),
            )
        )
    return results


def known_order_id(messages: list[dict[str, Any]]) -> str:
    """The order the conversation is about: the last one the customer named or a tool looked up."""
    for message in reversed(messages):
        if message.get("role") == "user":
            found = ORDER_ID.findall(user_text(message))
            if found:
                return str(found[-1])
        else:
            for use in reversed(tool_uses(message)):
                order_id = (use.get("input") or {}).get("order_id")
                if order_id:
                    return str(order_id)
    return ""


def known_customer_id(messages: list[dict[str, Any]]) -> str:
    """The customer id a successful get_user returned earlier in the conversation."""
    calls = {use.get("toolUseId"): use for message in messages for use in tool_uses(message)}
    for message in reversed(messages):
        for block in reversed(blocks(message)):
            result = block.get("toolResult")
            if not result or result.get("status") == "error":
                continue
            call = calls.get(result.get("toolUseId"), {})
            data = result_data(result)
            if call.get("name") == "get_user" and isinstance(data, dict) and data.get("id"):
                return str(data["id"])
    return ""
