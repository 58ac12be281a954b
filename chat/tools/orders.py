"""The assistant's tools, bound to the signed-in customer.

Whose data a tool reads is fixed when ``CustomerTools`` is built, from the session, never from
the model's input: a ``customer_id``, email or order id that is not the signed-in customer's
gives exactly the same "not found" as one that does not exist. Every rule lives in
``orders.services``; this module only translates between tool calls and those services.
"""

import uuid
from collections.abc import Callable
from typing import Any

from chat.agent import ToolOutcome
from chat.prompts import tool_specs
from orders.models import Customer, Order, OrderStatus
from orders.selectors import (
    LOOKUP_KEYS,
    CustomerNotFound,
    OrderNotFound,
    customer_lookup,
    order_get,
    order_list,
)
from orders.services import Actor, OrderNotCancellable, order_cancel

CANCELLED = "Cancelled the order"
HANDOFF_REQUESTED = (
    "A member of the support team has been asked to join and will reply in this chat. Tell the "
    "customer a person will join shortly. You will not be called again until they hand the "
    "conversation back."
)
HANDOFF_ALREADY = (
    "A member of the support team is already on the way or in the chat; tell the customer a "
    "person will reply here."
)


def order_payload(order: Order) -> dict[str, Any]:
    # The price is the exact decimal as a string: a float would turn 49.99 into 49.990000000000002
    # somewhere between here and the customer.
    return {
        "id": order.id,
        "customer_id": order.customer_id,
        "product": order.product,
        "quantity": order.quantity,
        "price": f"{order.unit_price:.2f}",
        "status": order.status,
    }


def customer_payload(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "name": customer.name,
        "email": customer.email,
        "phone": customer.phone,
        "username": customer.username,
    }


def _order_not_found(order_id: str) -> ToolOutcome:
    return ToolOutcome("error", f"No order {order_id} was found on this customer's account.")


def _not_cancellable(order: Order) -> ToolOutcome:
    return ToolOutcome(
        "error",
        f"Order {order.id} is {order.status}; "
        "only orders that are still Processing can be cancelled.",
    )


class CustomerTools:
    """The ``chat.agent.Tools`` of one conversation with one signed-in customer."""

    def __init__(
        self,
        *,
        customer: Customer,
        conversation_id: uuid.UUID,
        emit: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.customer = customer
        self.conversation_id = conversation_id
        # Where the turn's live events go, so a handoff shows up in every tab and the inbox.
        self.emit = emit
        self.specs: list[dict[str, Any]] = tool_specs()

    def needs_confirmation(self, name: str, tool_input: dict[str, Any]) -> bool:
        """Cancelling waits for the customer's yes in the app.

        Only a cancel that could succeed asks: for an order that is not the customer's, or no
        longer Processing, ``run`` answers with the same error at once, so a confirmation
        prompt never reveals anything about another customer's order.
        """
        if name != "cancel_order":
            return False
        try:
            order = order_get(customer=self.customer, order_id=_order_id(tool_input))
        except OrderNotFound:
            return False
        return order.status == OrderStatus.PROCESSING

    def describe(self, name: str, tool_input: dict[str, Any]) -> str:
        if name == "get_order_by_id":
            return f"Looking up order {_order_id(tool_input)}…"
        if name == "get_customer_orders":
            return "Looking up your orders…"
        if name == "get_user":
            return "Checking your account…"
        if name == "cancel_order":
            return f"Preparing to cancel order {_order_id(tool_input)}…"
        if name == "request_human_agent":
            return "Asking our support team to join…"
        return "Working on it…"

    def confirmation_text(self, name: str, tool_input: dict[str, Any]) -> str:
        """The question the app asks before running a tool that needs confirmation."""
        order_id = _order_id(tool_input)
        try:
            order = order_get(customer=self.customer, order_id=order_id)
        except OrderNotFound:
            return f"Cancel order {order_id}?"
        return f"Cancel order {order.id} ({order.quantity} × {order.product})?"

    def run(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome:
        if name == "get_user":
            return self._get_user(str(tool_input["key"]), str(tool_input["value"]))
        if name == "get_order_by_id":
            return self._get_order(_order_id(tool_input))
        if name == "get_customer_orders":
            return self._get_customer_orders(str(tool_input["customer_id"]).strip())
        if name == "cancel_order":
            return self._cancel_unconfirmed(_order_id(tool_input))
        if name == "request_human_agent":
            return self._request_human_agent(str(tool_input.get("reason") or ""))
        return ToolOutcome("error", f"There is no tool called {name}.")

    def run_confirmed(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome:
        """Runs a tool call the customer approved in the app (only ``cancel_order`` asks)."""
        if name != "cancel_order":
            return self.run(name, tool_input)
        order_id = _order_id(tool_input)
        actor = Actor.for_customer(self.customer, conversation_id=self.conversation_id)
        try:
            order = order_cancel(customer=self.customer, order_id=order_id, actor=actor)
        except OrderNotFound:
            return _order_not_found(order_id)
        except OrderNotCancellable as exc:
            return _not_cancellable(exc.order)
        return ToolOutcome("success", {"result": CANCELLED, "order": order_payload(order)})

    def _request_human_agent(self, reason: str) -> ToolOutcome:
        # Imported here: chat.handoff builds on chat.services, which builds these tools.
        from chat.handoff import HandoffRefused, handoff_request
        from chat.models import Conversation

        conversation = Conversation.objects.filter(
            pk=self.conversation_id, customer_id=self.customer.pk
        ).first()
        if conversation is None:
            return ToolOutcome("error", "This conversation cannot be handed to a person.")
        try:
            requested = handoff_request(
                conversation=conversation,
                user=None,
                reason=reason,
                emit=self.emit,
            )
        except HandoffRefused as refused:
            return ToolOutcome("error", refused.text)
        return ToolOutcome(
            "success", {"result": HANDOFF_REQUESTED if requested else HANDOFF_ALREADY}
        )

    def _get_user(self, key: str, value: str) -> ToolOutcome:
        if key not in LOOKUP_KEYS:
            return ToolOutcome("error", "The key must be email, phone or username.")
        try:
            customer = customer_lookup(customer=self.customer, key=key, value=value)
        except CustomerNotFound:
            return ToolOutcome("error", f"No customer with that {key} was found.")
        return ToolOutcome("success", customer_payload(customer))

    def _get_order(self, order_id: str) -> ToolOutcome:
        try:
            order = order_get(customer=self.customer, order_id=order_id)
        except OrderNotFound:
            return _order_not_found(order_id)
        return ToolOutcome("success", order_payload(order))

    def _get_customer_orders(self, customer_id: str) -> ToolOutcome:
        if customer_id != self.customer.id:
            return ToolOutcome("error", f"No customer with id {customer_id} was found.")
        orders = order_list(customer=self.customer)
        return ToolOutcome(
            "success",
            {"customer_id": self.customer.id, "orders": [order_payload(order) for order in orders]},
        )

    def _cancel_unconfirmed(self, order_id: str) -> ToolOutcome:
        # Reached only when needs_confirmation() said no: the order is not the customer's or
        # cannot be cancelled. Never cancels; a cancel only runs through run_confirmed().
        try:
            order = order_get(customer=self.customer, order_id=order_id)
        except OrderNotFound:
            return _order_not_found(order_id)
        if order.status != OrderStatus.PROCESSING:
            return _not_cancellable(order)
        # The order became cancellable after the check (a staff reset): ask again next time.
        return ToolOutcome(
            "error", f"Order {order.id} was not cancelled: the customer has not confirmed it yet."
        )


def _order_id(tool_input: dict[str, Any]) -> str:
    return str(tool_input.get("order_id", "")).strip()
