"""An offline stand-in for Claude, so the app runs end to end without AWS.

``DemoModel`` speaks the Converse request and response shapes (``converse`` and
``converse_stream``, with boto3's keyword names) and decides its answer only from the request's
``messages``: order ids, emails and phone numbers in the customer's text, "cancel", "orders",
yes/no, and the tool results it got back. It calls the real tools through the same loop as the
real model, so the app's rules (customer scoping, the confirmation before a cancel) apply to it
unchanged.

Like Claude with the app's system prompt, it thinks inside ``<thinking>`` and answers inside
``<reply>``. It carries what it is working on from one turn to the next in its own thinking
("Goal: cancel", "Offer: orders"), since the messages are all it sees. Every reply starts with
``[Demo model]`` so nobody mistakes it for the real assistant. Asked for a person ("I want to
talk to a person"), it calls ``request_human_agent``.

It rejects requests that Bedrock would reject (roles not alternating, a toolUse without its
toolResult), so tests played against it catch history bugs too.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from chat.modelapi import ModelRequestRejected

PREFIX = "[Demo model] "
MODEL_ID = "demo"

_ORDER_ID = re.compile(r"(?<![\w-])(\d{5})(?![\w@-])")
_EMAIL = re.compile(r"[^\s@<>\"'(),;:]+@[^\s@<>\"'(),;:]+\.[^\s@<>\"'(),;:.!?]+")
_PHONE = re.compile(r"(?<!\d)(?:\+?1[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}(?!\d)")
_USERNAME = re.compile(r"\busername\b\s*(?:is\s*)?[:=]?\s*@?([\w.\-]+)", re.IGNORECASE)
_CANCEL = re.compile(r"\bcancel", re.IGNORECASE)
_ORDERS = re.compile(
    r"\borders\b|\border history\b|\bwhat (?:did|have) i (?:order|buy|bought)", re.IGNORECASE
)
_FORGOT = re.compile(
    r"\b(?:don'?t|do not|can'?t|cannot) (?:remember|recall|find|know)\b|\bforg[oe]t", re.IGNORECASE
)
_ORDER = re.compile(r"\border\b", re.IGNORECASE)
_YES = re.compile(
    r"^\s*(?:yes|yeah|yep|y|sure|ok|okay|please do|go ahead|confirm)\b[\s\w,.!]*$", re.IGNORECASE
)
_NO = re.compile(r"^\s*(?:no|nope|n|don'?t|do not|keep it)\b[\s\w,.!']*$", re.IGNORECASE)
_GREETING = re.compile(
    r"^\s*(?:hi|hello|hey|good (?:morning|afternoon|evening))\b|\bhelp\b", re.IGNORECASE
)
_PERSON = re.compile(
    r"\b(?:talk|speak|chat|connect)\w*\b.*\b(?:person|human|agent|someone|somebody|"
    r"representative|staff)\b|\b(?:real|actual) (?:person|human)\b|\bhuman agent\b",
    re.IGNORECASE,
)
# What a support agent wrote, as the app stores it in the customer's turn.
_STAFF_NOTE = re.compile(r"^\[Support agent[^\]\n]*\]: ")
_THANKS = re.compile(r"\bthanks?\b|\bthank you\b", re.IGNORECASE)
_GOAL = re.compile(r"Goal: (\w+)")
_OFFER = re.compile(r"Offer: (\w+)")
_TAGS = re.compile(r"</?\s*(?:reply|thinking)\s*>", re.IGNORECASE)

HELP = (
    "I can look up your orders and your account, and cancel orders that have not shipped yet. "
    'Try "My order is 32057", "What are my orders?" or "Please cancel my order".'
)


@dataclass
class _Decision:
    """What the demo model says next: reply text, or one tool call."""

    thinking: str
    goal: str = "none"
    reply: str = ""
    offer: str = ""
    tool: str = ""
    tool_input: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Result:
    name: str
    tool_input: dict[str, Any]
    status: str
    data: Any  # the json content, or the error text


class DemoModel:
    """A deterministic ``chat.modelapi.ModelClient`` for local use, demos and tests."""

    def __init__(self, *, delay_seconds: float | None = None, chunk_chars: int = 12) -> None:
        if delay_seconds is None:
            from django.conf import settings

            delay_seconds = float(getattr(settings, "CHAT_DEMO_DELAY_SECONDS", 0.0))
        self.delay_seconds = delay_seconds
        self.chunk_chars = max(1, chunk_chars)

    # -- the ModelClient protocol ----------------------------------------------------------

    def converse(self, **kwargs: Any) -> dict[str, Any]:
        content, stop_reason = self._respond(kwargs)
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        return {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop_reason,
            "usage": self._usage(kwargs, content),
            "metrics": {"latencyMs": int(self.delay_seconds * 1000)},
        }

    def converse_stream(self, **kwargs: Any) -> dict[str, Any]:
        # Decide before returning, as Bedrock validates the request before the stream starts.
        content, stop_reason = self._respond(kwargs)
        return {"stream": self._events(content, stop_reason, self._usage(kwargs, content))}

    # -- shapes ----------------------------------------------------------------------------

    def _events(
        self, content: list[dict[str, Any]], stop_reason: str, usage: dict[str, int]
    ) -> Iterator[dict[str, Any]]:
        started = time.monotonic()
        yield {"messageStart": {"role": "assistant"}}
        for index, block in enumerate(content):
            if "text" in block:
                for chunk in _chunks(block["text"], self.chunk_chars):
                    self._pause()
                    yield {
                        "contentBlockDelta": {"delta": {"text": chunk}, "contentBlockIndex": index}
                    }
            else:
                tool_use = block["toolUse"]
                start = {"toolUseId": tool_use["toolUseId"], "name": tool_use["name"]}
                yield {
                    "contentBlockStart": {"start": {"toolUse": start}, "contentBlockIndex": index}
                }
                raw = json.dumps(tool_use["input"])
                for chunk in _chunks(raw, max(1, len(raw) // 2)):
                    self._pause()
                    yield {
                        "contentBlockDelta": {
                            "delta": {"toolUse": {"input": chunk}},
                            "contentBlockIndex": index,
                        }
                    }
            yield {"contentBlockStop": {"contentBlockIndex": index}}
        yield {"messageStop": {"stopReason": stop_reason}}
        latency = int((time.monotonic() - started) * 1000)
        yield {"metadata": {"usage": usage, "metrics": {"latencyMs": latency}}}

    def _pause(self) -> None:
        if self.delay_seconds:
            time.sleep(self.delay_seconds)

    @staticmethod
    def _usage(request: dict[str, Any], content: list[dict[str, Any]]) -> dict[str, int]:
        # Roughly four characters a token, like English text for Claude.
        size_in = len(json.dumps([request.get("system"), request.get("messages")], default=str))
        size_out = len(json.dumps(content))
        tokens_in, tokens_out = max(1, size_in // 4), max(1, size_out // 4)
        return {
            "inputTokens": tokens_in,
            "outputTokens": tokens_out,
            "totalTokens": tokens_in + tokens_out,
        }

    # -- deciding ----------------------------------------------------------------------------

    def _respond(self, request: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        messages = request.get("messages") or []
        _validate(messages)
        offered = {
            spec["toolSpec"]["name"]
            for spec in (request.get("toolConfig") or {}).get("tools", [])
            if isinstance(spec, dict) and "toolSpec" in spec
        }
        decision = _decide(messages)
        if decision.tool and decision.tool not in offered:
            decision = _Decision(
                thinking=f"I would use {decision.tool}, but it is not available.",
                reply="Sorry, I can't look that up right now.",
            )
        thinking = f"<thinking>{decision.thinking} Goal: {decision.goal}."
        if decision.offer:
            thinking += f" Offer: {decision.offer}."
        thinking += "</thinking>"
        if decision.tool:
            tool_use = {
                "toolUseId": _tool_use_id(messages),
                "name": decision.tool,
                "input": decision.tool_input,
            }
            return [{"text": thinking}, {"toolUse": tool_use}], "tool_use"
        return [{"text": f"{thinking}\n<reply>{PREFIX}{decision.reply}</reply>"}], "end_turn"


def _decide(messages: list[dict[str, Any]]) -> _Decision:
    last = messages[-1]
    text = _user_text(last)
    results = _results(messages)
    previous = _previous_assistant(messages, len(messages) - 1)
    # New customer text next to tool results (the app merges them when a reply was cut short)
    # takes priority, except after a cancel the customer was asked to confirm.
    if results and (not text or results[-1].name == "cancel_order"):
        return _after_tool(results[-1], text, messages)
    return _on_text(text, messages, carried_goal=_goal(previous), offer=_offer(previous))


def _on_text(
    text: str, messages: list[dict[str, Any]], *, carried_goal: str, offer: str
) -> _Decision:
    if _PERSON.search(text):
        return _Decision(
            thinking="The customer wants to talk to a person; I will ask the support team to join.",
            tool="request_human_agent",
            tool_input={"reason": " ".join(text.split())[:200]},
        )

    own_goal = "cancel" if _CANCEL.search(text) else ""
    goal = own_goal or carried_goal

    email, phone, username = _EMAIL.search(text), _PHONE.search(text), _USERNAME.search(text)
    if email or phone or username:
        if email:
            key, value = "email", email.group(0)
        elif phone:
            key, value = "phone", phone.group(0)
        else:
            assert username is not None
            key, value = "username", username.group(1)
        return _Decision(
            thinking=f"The customer gave their {key}; I will look up their account.",
            goal=goal if goal != "none" else "orders",
            tool="get_user",
            tool_input={"key": key, "value": value},
        )

    order_ids = _ORDER_ID.findall(text)
    if order_ids:
        order_id = order_ids[-1]
        return _Decision(
            thinking=f"The customer gave order id {order_id}; I will look it up first.",
            goal="cancel" if own_goal else "lookup",
            tool="get_order_by_id",
            tool_input={"order_id": order_id},
        )

    if own_goal:
        known = _known_order_id(messages)
        if _FORGOT.search(text) or not known:
            customer_id = _known_customer_id(messages)
            if customer_id and not _FORGOT.search(text):
                return _list_orders(customer_id, goal="cancel")
            return _Decision(
                thinking="The customer wants to cancel an order but has not given its id.",
                goal="cancel",
                reply=(
                    "I can help with that. Which order would you like to cancel? If you don't "
                    "have the order number, tell me the email address or phone number on your "
                    "account and I'll look up your orders."
                ),
            )
        return _Decision(
            thinking=f"The customer wants to cancel order {known}. I will check its status first.",
            goal="cancel",
            tool="get_order_by_id",
            tool_input={"order_id": known},
        )

    if _ORDERS.search(text) or (_FORGOT.search(text) and _ORDER.search(text)):
        customer_id = _known_customer_id(messages)
        if customer_id and not _FORGOT.search(text):
            return _list_orders(customer_id, goal="orders")
        return _Decision(
            thinking="I need the customer's account before I can list their orders.",
            goal="orders",
            reply=(
                "No problem. Please tell me the email address, phone number or username on your "
                "account and I'll look up your orders."
            ),
        )

    if _YES.match(text):
        if offer == "orders":
            customer_id = _known_customer_id(messages)
            if customer_id:
                return _list_orders(customer_id, goal=carried_goal)
        return _Decision(thinking="The customer agreed, but I had not asked anything.", reply=HELP)

    if _NO.match(text):
        return _Decision(
            thinking="The customer declined.", reply="OK. Is there anything else I can help with?"
        )

    if _ORDER.search(text):
        return _Decision(
            thinking="To look up an order I need its order id. I should ask the customer for it.",
            goal="lookup",
            reply="Sure, I'd be happy to help with your order. What is the order number?",
        )

    if _THANKS.search(text):
        return _Decision(
            thinking="The customer said thanks.", reply="You're welcome! Anything else?"
        )

    if _GREETING.search(text):
        return _Decision(
            thinking="The customer is asking for help in general.", reply=f"Hello! {HELP}"
        )

    quoted = _TAGS.sub("", text).strip()
    if len(quoted) > 200:
        quoted = quoted[:200] + "…"
    return _Decision(
        thinking="I did not understand the message.",
        reply=(
            "I'm the offline demo model and only understand a few requests. "
            f'You wrote: "{quoted}". {HELP}'
        ),
    )


def _after_tool(result: _Result, text: str, messages: list[dict[str, Any]]) -> _Decision:
    caller = _previous_assistant(messages, len(messages) - 1)
    goal = _goal(caller)
    data = result.data

    if result.name == "get_order_by_id":
        order_id = str(result.tool_input.get("order_id", ""))
        if result.status != "success":
            return _Decision(
                thinking=f"Order {order_id} was not found for this customer.",
                reply=f"I couldn't find order {order_id} on your account. Please check the number.",
            )
        if goal != "cancel":
            return _Decision(thinking="I have the order details.", reply=_order_summary(data))
        if data["status"] == "Processing":
            return _Decision(
                thinking=f"Order {data['id']} is still Processing, so it can be cancelled.",
                goal="cancel",
                tool="cancel_order",
                tool_input={"order_id": data["id"]},
            )
        return _Decision(
            thinking=f"Order {data['id']} is {data['status']}, so it cannot be cancelled.",
            reply=(
                f"I'm sorry, I can't cancel order {data['id']} ({data['quantity']} × "
                f"{data['product']}): its status is {data['status']}, and only orders that are "
                "still Processing can be cancelled."
            ),
        )

    if result.name == "cancel_order":
        order_id = str(result.tool_input.get("order_id", ""))
        if result.status == "success":
            order = data.get("order", {})
            return _Decision(
                thinking="The tool cancelled the order.",
                reply=(
                    f"Done: order {order_id} ({order.get('quantity')} × {order.get('product')}) "
                    "is cancelled."
                ),
            )
        reason = str(data)
        if "keep" in reason:
            return _Decision(
                thinking="The customer chose to keep the order.",
                reply=f"OK, I haven't cancelled order {order_id}; it stays as it is.",
            )
        if "did not confirm" in reason:
            if not text:
                return _Decision(
                    thinking="Nothing was cancelled.",
                    reply=f"I haven't cancelled order {order_id}.",
                )
            follow_up = _on_text(text, messages, carried_goal="none", offer="")
            if follow_up.tool:
                return follow_up
            follow_up.reply = f"I haven't cancelled order {order_id}. {follow_up.reply}"
            return follow_up
        return _Decision(
            thinking="The cancel failed.", reply=f"I couldn't cancel order {order_id}: {reason}"
        )

    if result.name == "request_human_agent":
        if result.status != "success":
            return _Decision(
                thinking="The support team could not be asked to join.",
                reply=f"Sorry, I couldn't reach our support team: {data}",
            )
        return _Decision(
            thinking="A person from the support team will join.",
            reply=(
                "I've asked a member of our support team to join this chat. "
                "They'll reply here shortly."
            ),
        )

    if result.name == "get_user":
        key = str(result.tool_input.get("key", "details"))
        if result.status != "success":
            return _Decision(
                thinking=f"No account matched that {key}.",
                goal=goal,
                reply=f"I couldn't find an account with that {key}. Please check it and try again.",
            )
        purpose = " so we can find the one to cancel" if goal == "cancel" else ""
        return _Decision(
            thinking=f"I found customer {data['id']}.",
            goal=goal,
            offer="orders",
            reply=(
                f"Thanks, {data['name']}, I found your account (customer id {data['id']}). "
                f"Would you like me to look up your orders{purpose}?"
            ),
        )

    if result.name == "get_customer_orders":
        if result.status != "success":
            return _Decision(
                thinking="The orders were not found.",
                reply="I couldn't find the orders for that account.",
            )
        orders = data.get("orders", [])
        if goal == "cancel":
            return _choose_cancellable(orders)
        if not orders:
            return _Decision(
                thinking="The customer has no orders.", reply="You don't have any orders yet."
            )
        lines = "\n".join(f"- {_order_line(order)}" for order in orders)
        noun = "order" if len(orders) == 1 else "orders"
        return _Decision(
            thinking="I have the customer's orders.",
            reply=f"You have {len(orders)} {noun}:\n{lines}",
        )

    return _Decision(thinking=f"I got a result from {result.name}.", reply=HELP)


def _choose_cancellable(orders: list[dict[str, Any]]) -> _Decision:
    cancellable = [order for order in orders if order.get("status") == "Processing"]
    if not cancellable:
        others = "; ".join(
            f"order {o['id']} ({o['quantity']} × {o['product']}) is {o['status']}" for o in orders
        )
        detail = f" {others[0].upper()}{others[1:]}." if others else ""
        return _Decision(
            thinking="None of the customer's orders is still Processing.",
            reply=(
                f"I'm sorry, none of your orders can be cancelled.{detail} Only orders that are "
                "still Processing can be cancelled."
            ),
        )
    if len(cancellable) == 1:
        order = cancellable[0]
        return _Decision(
            thinking=(
                f"Only order {order['id']} can be cancelled; the app asks the customer to confirm."
            ),
            goal="cancel",
            tool="cancel_order",
            tool_input={"order_id": order["id"]},
        )
    lines = "\n".join(f"- {_order_line(order)}" for order in cancellable)
    return _Decision(
        thinking="Several orders can be cancelled; the customer must choose.",
        goal="cancel",
        reply=f"These orders can still be cancelled:\n{lines}\nWhich one would you like to cancel?",
    )


def _list_orders(customer_id: str, *, goal: str) -> _Decision:
    return _Decision(
        thinking=f"I know the customer id {customer_id}; I will list their orders.",
        goal=goal or "orders",
        tool="get_customer_orders",
        tool_input={"customer_id": customer_id},
    )


def _order_summary(order: dict[str, Any]) -> str:
    notes = {
        "Processing": "It hasn't shipped yet, so it can still be cancelled if you need to.",
        "Shipped": "It is on its way.",
        "Delivered": "It has been delivered.",
        "Cancelled": "It was cancelled.",
    }
    note = notes.get(str(order.get("status")), "")
    return (
        f"Your order {order['id']}: {order['quantity']} × {order['product']} at ${order['price']}, "
        f"status {order['status']}. {note}"
    ).strip()


def _order_line(order: dict[str, Any]) -> str:
    return (
        f"{order['id']}: {order['quantity']} × {order['product']} at ${order['price']}, "
        f"{order['status']}"
    )


# -- reading the conversation ------------------------------------------------------------------


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [block for block in message.get("content") or [] if isinstance(block, dict)]


def _user_text(message: dict[str, Any]) -> str:
    """The customer's own text in a user message (a support agent's notes left out)."""
    return "\n".join(
        block["text"]
        for block in _blocks(message)
        if isinstance(block.get("text"), str) and not _STAFF_NOTE.match(block["text"])
    ).strip()


def _tool_uses(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [block["toolUse"] for block in _blocks(message) if "toolUse" in block]


def _previous_assistant(messages: list[dict[str, Any]], before: int) -> dict[str, Any] | None:
    for message in reversed(messages[:before]):
        if message.get("role") == "assistant":
            return message
    return None


def _thinking(message: dict[str, Any] | None) -> str:
    if message is None:
        return ""
    return " ".join(
        block["text"] for block in _blocks(message) if isinstance(block.get("text"), str)
    )


def _goal(message: dict[str, Any] | None) -> str:
    match = _GOAL.search(_thinking(message))
    return match.group(1) if match else "none"


def _offer(message: dict[str, Any] | None) -> str:
    match = _OFFER.search(_thinking(message))
    return match.group(1) if match else ""


def _result_data(result: dict[str, Any]) -> Any:
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


def _results(messages: list[dict[str, Any]]) -> list[_Result]:
    """The tool results in the last message, paired with the calls they answer."""
    calls: dict[str, dict[str, Any]] = {}
    caller = _previous_assistant(messages, len(messages) - 1)
    if caller is not None:
        calls = {use["toolUseId"]: use for use in _tool_uses(caller)}
    results = []
    for block in _blocks(messages[-1]):
        if "toolResult" not in block:
            continue
        result = block["toolResult"]
        call = calls.get(result.get("toolUseId", ""), {})
        results.append(
            _Result(
                name=str(call.get("name", "")),
                tool_input=dict(call.get("input") or {}),
                status=str(result.get("status", "success")),
                data=_result_data(result),
            )
        )
    return results


def _known_order_id(messages: list[dict[str, Any]]) -> str:
    """The order the conversation is about: the last one the customer named or a tool looked up."""
    for message in reversed(messages):
        if message.get("role") == "user":
            found = _ORDER_ID.findall(_user_text(message))
            if found:
                return str(found[-1])
        else:
            for use in reversed(_tool_uses(message)):
                order_id = (use.get("input") or {}).get("order_id")
                if order_id:
                    return str(order_id)
    return ""


def _known_customer_id(messages: list[dict[str, Any]]) -> str:
    """The customer id a successful get_user returned earlier in the conversation."""
    calls = {use.get("toolUseId"): use for message in messages for use in _tool_uses(message)}
    for message in reversed(messages):
        for block in reversed(_blocks(message)):
            result = block.get("toolResult")
            if not result or result.get("status") == "error":
                continue
            call = calls.get(result.get("toolUseId"), {})
            data = _result_data(result)
            if call.get("name") == "get_user" and isinstance(data, dict) and data.get("id"):
                return str(data["id"])
    return ""


def _tool_use_id(messages: list[dict[str, Any]]) -> str:
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()
    return f"tooluse_demo_{len(messages)}_{digest[:12]}"


def _chunks(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _validate(messages: list[dict[str, Any]]) -> None:
    """Rejects what Bedrock's Converse API rejects, so history bugs show up offline too."""
    if not messages:
        raise ModelRequestRejected("messages must not be empty")
    if messages[0].get("role") != "user" or messages[-1].get("role") != "user":
        raise ModelRequestRejected("the conversation must start and end with a user message")
    expected: set[Any] = set()
    for index, message in enumerate(messages):
        role = message.get("role")
        if index and role == messages[index - 1].get("role"):
            raise ModelRequestRejected(f"message {index}: roles must alternate")
        blocks = _blocks(message)
        if not blocks:
            raise ModelRequestRejected(f"message {index}: content must not be empty")
        answered = {
            block["toolResult"].get("toolUseId") for block in blocks if "toolResult" in block
        }
        if role == "user":
            if answered != expected:
                raise ModelRequestRejected(
                    f"message {index}: toolResult blocks must answer the previous toolUse blocks"
                )
            expected = set()
        else:
            if answered:
                raise ModelRequestRejected(
                    f"message {index}: an assistant message cannot hold tool results"
                )
            expected = {use.get("toolUseId") for use in _tool_uses(message)}
