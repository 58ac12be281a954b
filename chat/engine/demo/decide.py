"""How the offline demo model decides what to say: plain rules over the Converse messages.

``decide`` reads only the request's messages: order ids, emails and phone numbers in the
customer's text, "cancel", "orders", yes/no, and the tool results it got back. It carries what it
is working on from one turn to the next in its own thinking ("Goal: cancel", "Offer: orders"),
since the messages are all it sees. Asked for a person ("I want to talk to a person"), it calls
``request_human_agent``.
"""

import re
from dataclasses import dataclass, field
from typing import Any

from chat.engine.demo.reading import (
    ORDER_ID,
    Result,
    goal_of,
    known_customer_id,
    known_order_id,
    offer_of,
    previous_assistant,
    results_of,
    user_text,
)

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
_THANKS = re.compile(r"\bthanks?\b|\bthank you\b", re.IGNORECASE)
_TAGS = re.compile(r"</?\s*(?:reply|thinking)\s*>", re.IGNORECASE)

HELP = (
    "I can look up your orders and your account, and cancel orders that have not shipped yet. "
    'Try "My order is 32057", "What are my orders?" or "Please cancel my order".'
)


@dataclass
class Decision:
    """What the demo model says next: reply text, or one tool call."""

    thinking: str
    goal: str = "none"
    reply: str = ""
    offer: str = ""
    tool: str = ""
    tool_input: dict[str, Any] = field(default_factory=dict)


def decide(messages: list[dict[str, Any]]) -> Decision:
    """What the demo model says next, given the conversation so far."""
    last = messages[-1]
    text = user_text(last)
    results = results_of(messages)
    previous = previous_assistant(messages, len(messages) - 1)
    # New customer text next to tool results (the app merges them when a reply was cut short)
    # takes priority, except after a cancel the customer was asked to confirm.
    if results and (not text or results[-1].name == "cancel_order"):
        return _after_tool(results[-1], text, messages)
    return _on_text(text, messages, carried_goal=goal_of(previous), offer=offer_of(previous))


def _on_text(
    text: str, messages: list[dict[str, Any]], *, carried_goal: str, offer: str
) -> Decision:
    if _PERSON.search(text):
        return Decision(
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
        return Decision(
            thinking=f"The customer gave their {key}; I will look up their account.",
            goal=goal if goal != "none" else "orders",
            tool="get_user",
            tool_input={"key": key, "value": value},
        )

    order_ids = ORDER_ID.findall(text)
    if order_ids:
        order_id = order_ids[-1]
        return Decision(
            thinking=f"The customer gave order id {order_id}; I will look it up first.",
            goal="cancel" if own_goal else "lookup",
            tool="get_order_by_id",
            tool_input={"order_id": order_id},
        )

    if own_goal:
        known = known_order_id(messages)
        if _FORGOT.search(text) or not known:
            customer_id = known_customer_id(messages)
            if customer_id and not _FORGOT.search(text):
                return _list_orders(customer_id, goal="cancel")
            return Decision(
                thinking="The customer wants to cancel an order but has not given its id.",
                goal="cancel",
                reply=(
                    "I can help with that. Which order would you like to cancel? If you don't "
                    "have the order number, tell me the email address or phone number on your "
                    "account and I'll look up your orders."
                ),
            )
        return Decision(
            thinking=f"The customer wants to cancel order {known}. I will check its status first.",
            goal="cancel",
            tool="get_order_by_id",
            tool_input={"order_id": known},
        )

    if _ORDERS.search(text) or (_FORGOT.search(text) and _ORDER.search(text)):
        customer_id = known_customer_id(messages)
        if customer_id and not _FORGOT.search(text):
            return _list_orders(customer_id, goal="orders")
        return Decision(
            thinking="I need the customer's account before I can list their orders.",
            goal="orders",
            reply=(
                "No problem. Please tell me the email address, phone number or username on your "
                "account and I'll look up your orders."
            ),
        )

    if _YES.match(text):
        if offer == "orders":
            customer_id = known_customer_id(messages)
            if customer_id:
                return _list_orders(customer_id, goal=carried_goal)
        return Decision(thinking="The customer agreed, but I had not asked anything.", reply=HELP)

    if _NO.match(text):
        return Decision(
            thinking="The customer declined.", reply="OK. Is there anything else I can help with?"
        )

    if _ORDER.search(text):
        return Decision(
            thinking="To look up an order I need its order id. I should ask the customer for it.",
            goal="lookup",
            reply="Sure, I'd be happy to help with your order. What is the order number?",
        )

    if _THANKS.search(text):
        return Decision(
            thinking="The customer said thanks.", reply="You're welcome! Anything else?"
        )

    if _GREETING.search(text):
        return Decision(
            thinking="The customer is asking for help in general.", reply=f"Hello! {HELP}"
        )

    quoted = _TAGS.sub("", text).strip()
    if len(quoted) > 200:
        quoted = quoted[:200] + "…"
    return Decision(
        thinking="I did not understand the message.",
        reply=(
            "I'm the offline demo model and only understand a few requests. "
            f'You wrote: "{quoted}". {HELP}'
        ),
    )


def _after_tool(result: Result, text: str, messages: list[dict[str, Any]]) -> Decision:
    caller = previous_assistant(messages, len(messages) - 1)
    goal = goal_of(caller)
    data = result.data

    if result.name == "get_order_by_id":
        order_id = str(result.tool_input.get("order_id", ""))
        if result.status != "success":
            return Decision(
                thinking=f"Order {order_id} was not found for this customer.",
                reply=f"I couldn't find order {order_id} on your account. Please check the number.",
            )
        if goal != "cancel":
            return Decision(thinking="I have the order details.", reply=_order_summary(data))
        if data["status"] == "Processing":
            return Decision(
                thinking=f"Order {data['id']} is still Processing, so it can be cancelled.",
                goal="cancel",
                tool="cancel_order",
                tool_input={"order_id": data["id"]},
            )
        return Decision(
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
            return Decision(
                thinking="The tool cancelled the order.",
                reply=(
                    f"Done: order {order_id} ({order.get('quantity')} × {order.get('product')}) "
                    "is cancelled."
                ),
            )
        reason = str(data)
        if "keep" in reason:
            return Decision(
                thinking="The customer chose to keep the order.",
                reply=f"OK, I haven't cancelled order {order_id}; it stays as it is.",
            )
        if "did not confirm" in reason:
            if not text:
                return Decision(
                    thinking="Nothing was cancelled.",
                    reply=f"I haven't cancelled order {order_id}.",
                )
            follow_up = _on_text(text, messages, carried_goal="none", offer="")
            if follow_up.tool:
                return follow_up
            follow_up.reply = f"I haven't cancelled order {order_id}. {follow_up.reply}"
            return follow_up
        return Decision(
            thinking="The cancel failed.", reply=f"I couldn't cancel order {order_id}: {reason}"
        )

    if result.name == "request_human_agent":
        if result.status != "success":
            return Decision(
                thinking="The support team could not be asked to join.",
                reply=f"Sorry, I couldn't reach our support team: {data}",
            )
        return Decision(
            thinking="A person from the support team will join.",
            reply=(
                "I've asked a member of our support team to join this chat. "
                "They'll reply here shortly."
            ),
        )

    if result.name == "get_user":
        key = str(result.tool_input.get("key", "details"))
        if result.status != "success":
            return Decision(
                thinking=f"No account matched that {key}.",
                goal=goal,
                reply=f"I couldn't find an account with that {key}. Please check it and try again.",
            )
        purpose = " so we can find the one to cancel" if goal == "cancel" else ""
        return Decision(
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
            return Decision(
                thinking="The orders were not found.",
                reply="I couldn't find the orders for that account.",
            )
        orders = data.get("orders", [])
        if goal == "cancel":
            return _choose_cancellable(orders)
        if not orders:
            return Decision(
                thinking="The customer has no orders.", reply="You don't have any orders yet."
            )
        lines = "\n".join(f"- {_order_line(order)}" for order in orders)
        noun = "order" if len(orders) == 1 else "orders"
        return Decision(
            thinking="I have the customer's orders.",
            reply=f"You have {len(orders)} {noun}:\n{lines}",
        )

    return Decision(thinking=f"I got a result from {result.name}.", reply=HELP)


def _choose_cancellable(orders: list[dict[str, Any]]) -> Decision:
    cancellable = [order for order in orders if order.get("status") == "Processing"]
    if not cancellable:
        others = "; ".join(
            f"order {o['id']} ({o['quantity']} × {o['product']}) is {o['status']}" for o in orders
        )
        detail = f" {others[0].upper()}{others[1:]}." if others else ""
        return Decision(
            thinking="None of the customer's orders is still Processing.",
            reply=(
                f"I'm sorry, none of your orders can be cancelled.{detail} Only orders that are "
                "still Processing can be cancelled."
            ),
        )
    if len(cancellable) == 1:
        order = cancellable[0]
        return Decision(
            thinking=(
                f"Only order {order['id']} can be cancelled; the app asks the customer to confirm."
            ),
            goal="cancel",
            tool="cancel_order",
            tool_input={"order_id": order["id"]},
        )
    lines = "\n".join(f"- {_order_line(order)}" for order in cancellable)
    return Decision(
        thinking="Several orders can be cancelled; the customer must choose.",
        goal="cancel",
        reply=f"These orders can still be cancelled:\n{lines}\nWhich one would you like to cancel?",
    )


def _list_orders(customer_id: str, *, goal: str) -> Decision:
    return Decision(
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
