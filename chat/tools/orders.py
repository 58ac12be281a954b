"""The order tools: look up the customer's account and orders, and cancel an order.

Names and input schemas are those of the original design, so transcripts and prompts written for
it keep working; the descriptions say what the tools really do now. Whose data a tool reads is
the context's customer, fixed by the session, never the model's input: a ``customer_id``, email
or order id that is not the signed-in customer's gives exactly the same "not found" as one that
does not exist. Every rule lives in ``orders.selectors`` and ``orders.services``; these classes
only translate between tool calls and them.
"""

from typing import Any

from chat.engine.registry import Tool, ToolContext
from chat.engine.types import ToolOutcome
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

_ORDER_ID_SCHEMA = {"type": "string"}


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


def order_not_found(order_id: str) -> ToolOutcome:
    return ToolOutcome("error", f"No order {order_id} was found on this customer's account.")


def not_cancellable(order: Order) -> ToolOutcome:
    return ToolOutcome(
        "error",
        f"Order {order.id} is {order.status}; "
        "only orders that are still Processing can be cancelled.",
    )


def order_id_of(tool_input: dict[str, Any]) -> str:
    return str(tool_input.get("order_id", "")).strip()


class GetUser(Tool):
    name = "get_user"
    description = (
        "Confirms the signed-in customer's account by their email, phone number or username and "
        "returns their customer id, name, email, phone and username. Any other value is reported "
        "as not found."
    )
    input_schema = {
        "type": "object",
        "properties": {
            "key": {
                "type": "string",
                "enum": list(LOOKUP_KEYS),
                "description": "The attribute to search by: email, phone or username.",
            },
            "value": {"type": "string", "description": "The value to match for that attribute."},
        },
        "required": ["key", "value"],
    }
    status = "Checking your account…"

    def run(self, context: ToolContext, tool_input: dict[str, Any]) -> ToolOutcome:
        key, value = str(tool_input["key"]), str(tool_input["value"])
        if key not in LOOKUP_KEYS:
            return ToolOutcome("error", "The key must be email, phone or username.")
        try:
            customer = customer_lookup(customer=context.customer, key=key, value=value)
        except CustomerNotFound:
            return ToolOutcome("error", f"No customer with that {key} was found.")
        return ToolOutcome("success", customer_payload(customer))


class GetOrderById(Tool):
    name = "get_order_by_id"
    description = (
        "Retrieves one of the signed-in customer's orders by its order id: the order id, "
        "customer id, product name, quantity, unit price (a decimal string in US dollars) and "
        "status (Processing, Shipped, Delivered or Cancelled)."
    )
    input_schema = {
        "type": "object",
        "properties": {
            "order_id": {**_ORDER_ID_SCHEMA, "description": "The order id, e.g. '32057'."}
        },
        "required": ["order_id"],
    }

    def status_text(self, context: ToolContext, tool_input: dict[str, Any]) -> str:
        return f"Looking up order {order_id_of(tool_input)}…"

    def run(self, context: ToolContext, tool_input: dict[str, Any]) -> ToolOutcome:
        order_id = order_id_of(tool_input)
        try:
            order = order_get(customer=context.customer, order_id=order_id)
        except OrderNotFound:
            return order_not_found(order_id)
        return ToolOutcome("success", order_payload(order))


class GetCustomerOrders(Tool):
    name = "get_customer_orders"
    description = (
        "Lists all orders of the signed-in customer. Pass the signed-in customer's own customer "
        "id; any other id is reported as not found."
    )
    input_schema = {
        "type": "object",
        "properties": {
            "customer_id": {
                "type": "string",
                "description": "The signed-in customer's customer id.",
            }
        },
        "required": ["customer_id"],
    }
    status = "Looking up your orders…"

    def run(self, context: ToolContext, tool_input: dict[str, Any]) -> ToolOutcome:
        customer: Customer = context.customer
        customer_id = str(tool_input["customer_id"]).strip()
        if customer_id != customer.id:
            return ToolOutcome("error", f"No customer with id {customer_id} was found.")
        orders = order_list(customer=customer)
        return ToolOutcome(
            "success",
            {"customer_id": customer.id, "orders": [order_payload(order) for order in orders]},
        )


class CancelOrder(Tool):
    """Cancelling waits for the customer's yes in the app; only ``run_confirmed`` cancels."""

    name = "cancel_order"
    description = (
        "Cancels one of the signed-in customer's orders by its order id. Only orders whose status "
        "is Processing can be cancelled. The customer is asked to confirm in the app first; the "
        "result says 'Cancelled the order' or why nothing was cancelled."
    )
    input_schema = {
        "type": "object",
        "properties": {
            "order_id": {**_ORDER_ID_SCHEMA, "description": "The order id of the order to cancel."}
        },
        "required": ["order_id"],
    }
    prompt_notes = (
        "Check an order's current status with get_order_by_id before you offer to cancel it. "
        "When you call cancel_order, the app asks the customer to confirm in the chat before "
        "anything happens; the tool result tells you whether the order was cancelled or the "
        "customer chose to keep it. Never say an order is cancelled unless the tool result says so."
    )

    def status_text(self, context: ToolContext, tool_input: dict[str, Any]) -> str:
        return f"Preparing to cancel order {order_id_of(tool_input)}…"

    def needs_confirmation(self, context: ToolContext, tool_input: dict[str, Any]) -> bool:
        """Only a cancel that could succeed asks.

        For an order that is not the customer's, or no longer Processing, ``run`` answers with
        the same error at once, so a confirmation prompt never reveals anything about another
        customer's order.
        """
        try:
            order = order_get(customer=context.customer, order_id=order_id_of(tool_input))
        except OrderNotFound:
            return False
        return order.status == OrderStatus.PROCESSING

    def confirmation_text(self, context: ToolContext, tool_input: dict[str, Any]) -> str:
        order_id = order_id_of(tool_input)
        try:
            order = order_get(customer=context.customer, order_id=order_id)
        except OrderNotFound:
            return f"Cancel order {order_id}?"
        return f"Cancel order {order.id} ({order.quantity} × {order.product})?"

    def run(self, context: ToolContext, tool_input: dict[str, Any]) -> ToolOutcome:
        # Reached only when needs_confirmation() said no: the order is not the customer's or
        # cannot be cancelled. Never cancels; a cancel only runs through run_confirmed().
        order_id = order_id_of(tool_input)
        try:
            order = order_get(customer=context.customer, order_id=order_id)
        except OrderNotFound:
            return order_not_found(order_id)
        if order.status != OrderStatus.PROCESSING:
            return not_cancellable(order)
        # The order became cancellable after the check (a staff reset): ask again next time.
        return ToolOutcome(
            "error", f"Order {order.id} was not cancelled: the customer has not confirmed it yet."
        )

    def run_confirmed(self, context: ToolContext, tool_input: dict[str, Any]) -> ToolOutcome:
        order_id = order_id_of(tool_input)
        customer: Customer = context.customer
        actor = Actor.for_customer(customer, conversation_id=context.conversation_id)
        try:
            order = order_cancel(customer=customer, order_id=order_id, actor=actor)
        except OrderNotFound:
            return order_not_found(order_id)
        except OrderNotCancellable as exc:
            return not_cancellable(exc.order)
        return ToolOutcome("success", {"result": CANCELLED, "order": order_payload(order)})
