"""What is sent of a long conversation: its latest turns, within a token budget.

A model call carries the whole history, so without a budget a conversation's cost (and its
time to first token) grows with every turn until Converse refuses it. ``within_budget`` drops
the oldest turns until the estimate fits. It cuts only where a customer's turn starts (a user
message with no tool results), so a tool call and its results are dropped or kept together and
the history stays valid. What the dropped turns were about is kept as a short note: the orders
they discussed (the customer's identity is in the system prompt already). The stored
conversation, the customer's transcript and the admin stay whole.

Tokens are estimated as characters of the serialised message over ``CHARS_PER_TOKEN``: a cheap,
slightly generous bound for English text and JSON, good enough to keep the request under a
budget set well below the model's context window.
"""

import json
from collections.abc import Sequence
from typing import Any

Message = dict[str, Any]

CHARS_PER_TOKEN = 4
ORDER_KEYS = ("order_id",)
# The note names at most this many orders, the latest ones.
NOTE_ORDERS = 20


def estimated_tokens(messages: list[Message]) -> int:
    """A cheap estimate of the tokens ``messages`` take in a request."""
    return sum(_tokens(message) for message in messages)


def _tokens(message: Message) -> int:
    return len(json.dumps(message, separators=(",", ":"))) // CHARS_PER_TOKEN + 1


def _turn_starts(messages: list[Message]) -> list[int]:
    # Where a history may start: a user message that answers no tool call.
    return [
        index
        for index, message in enumerate(messages)
        if message["role"] == "user"
        and not any("toolResult" in block for block in message["content"])
    ]


def _orders_discussed(messages: list[Message]) -> list[str]:
    found: list[str] = []
    for message in messages:
        for block in message["content"]:
            tool_input = block.get("toolUse", {}).get("input") if "toolUse" in block else None
            if not isinstance(tool_input, dict):
                continue
            for key in ORDER_KEYS:
                value = tool_input.get(key)
                if isinstance(value, str | int) and str(value) not in found:
                    found.append(str(value))
    return found


def earlier_note(dropped: list[Message], earlier_orders: Sequence[str] = ()) -> str:
    """The text standing in for the dropped turns (and for ``earlier_orders``, the orders of
    messages left out before ``dropped``)."""
    orders = list(earlier_orders)
    orders += [order for order in _orders_discussed(dropped) if order not in orders]
    return _note(orders[-NOTE_ORDERS:])


def _note(orders: list[str]) -> str:
    note = "[Earlier messages of this conversation are not shown."
    if orders:
        note += " Orders discussed earlier: " + ", ".join(orders) + "."
    return note + "]"


def within_budget(
    messages: list[Message], budget_tokens: int, earlier_orders: Sequence[str] | None = None
) -> list[Message]:
    """The latest turns of a valid history that fit ``budget_tokens`` (0: everything).

    ``earlier_orders`` is None when ``messages`` is the whole conversation; when it is only the
    conversation's latest part, the orders that the part left out discussed.

    The result is a valid Converse history too; at least the last turn is kept, even over the
    budget. The first kept message starts with ``earlier_note`` when anything was left out.
    """
    cut_before = earlier_orders is not None
    if not cut_before and (not budget_tokens or estimated_tokens(messages) <= budget_tokens):
        return messages
    starts = [0] if cut_before else []
    starts += [index for index in _turn_starts(messages) if index > 0]
    if not starts:
        return messages
    # Room for the longest note any cut could need, so the cut is found in one pass: the note's
    # block as serialised, its separating comma, and one token for the rounding down of sizes.
    named = sorted({*(earlier_orders or ()), *_orders_discussed(messages)}, key=len)
    block = json.dumps({"text": _note(named[-NOTE_ORDERS:])}, separators=(",", ":"))
    reserve = (len(block) + 1) // CHARS_PER_TOKEN + 1
    sizes = [_tokens(message) for message in messages]
    remaining = sum(sizes)
    cut = starts[-1]
    previous = 0
    for start in starts:
        remaining -= sum(sizes[previous:start])
        previous = start
        if not budget_tokens or remaining + reserve <= budget_tokens:
            cut = start
            break
    first = messages[cut]
    note = earlier_note(messages[:cut], earlier_orders or ())
    return [{**first, "content": [{"text": note}, *first["content"]]}, *messages[cut + 1 :]]
