"""Every read of customers, orders and order events that code outside ``orders`` needs.

Writes live in ``orders.services``; reads live here, so the chat (its tools, views and staff
pages) never builds its own queries on these tables. Functions that act for a customer take that
customer and scope every query by it, so another customer's order is indistinguishable from a
missing one.
"""

import uuid
from datetime import datetime
from functools import cache
from typing import Literal

from django.db import connection
from django.db.models import Count, QuerySet

from orders.models import ActorKind, Customer, Order, OrderEvent, OrderEventKind

LookupKey = Literal["email", "phone", "username"]
LOOKUP_KEYS: tuple[LookupKey, ...] = ("email", "phone", "username")


class CustomerNotFound(Exception):
    """No customer matches, or the match is not the acting customer."""


class OrderNotFound(Exception):
    """The order does not exist or belongs to someone else."""


# --- Customers -------------------------------------------------------------------------------


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def customer_lookup(*, customer: Customer, key: LookupKey, value: str) -> Customer:
    """Confirms that ``value`` is the acting customer's own email, phone or username.

    Only the acting customer can ever be found: a value that belongs to someone else gives the
    same ``CustomerNotFound`` as a value that belongs to nobody, so the lookup cannot be used to
    enumerate customers. Email and username compare case-insensitively; phone compares digits
    only, so ``(312) 555-8204`` matches ``312-555-8204``.

    Raises: ``CustomerNotFound``; ``ValueError`` for an unknown key.
    """
    value = value.strip()
    if key == "email":
        matches = value.casefold() == customer.email.casefold()
    elif key == "username":
        matches = value.casefold() == customer.username.casefold()
    elif key == "phone":
        digits = _digits(value)
        own = _digits(customer.phone)
        # A leading country code 1 (+1 312 555 8204) is the same North American number.
        matches = bool(digits) and (
            digits == own or (len(digits) == 11 and digits[0] == "1" and digits[1:] == own)
        )
    else:
        raise ValueError(f"Unknown lookup key {key!r}; use email, phone or username.")
    if not matches:
        raise CustomerNotFound(f"No customer with that {key}.")
    return customer


def customer_of_user(*, user_id: int | None, customer_id: str | None = None) -> Customer | None:
    """The customer a sign-in account acts as, or None (staff, anonymous, unlinked).

    With ``customer_id``, only that customer, and only while it is still linked to the account.
    """
    if user_id is None:
        return None
    customers = Customer.objects.filter(user_id=user_id)
    if customer_id is not None:
        customers = customers.filter(pk=customer_id)
    return customers.first()


def customer_get(*, customer_id: str) -> Customer:
    """Any customer by id, for staff tools and the demo sign-in (not for a customer's request).

    Raises: ``CustomerNotFound``.
    """
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        raise CustomerNotFound(f"No customer {customer_id!r}.")
    return customer


def customer_list_with_order_counts() -> QuerySet[Customer]:
    """Every customer by name, each annotated with ``order_count``."""
    return Customer.objects.annotate(order_count=Count("orders")).order_by("name")


def customer_list_with_orders() -> list[Customer]:
    """Every customer by id with their orders prefetched, for staff tools that look across all.

    Not for a customer's request: it reads everyone's data.
    """
    return list(Customer.objects.prefetch_related("orders").order_by("pk"))


# --- Orders ----------------------------------------------------------------------------------


def order_get(*, customer: Customer, order_id: str) -> Order:
    """Returns one of the customer's orders.

    Raises: ``OrderNotFound`` when it does not exist or belongs to another customer.
    """
    order_id = order_id.strip()
    if connection.vendor == "postgresql":
        # Written out: the assistant reads an order in most turns, and building this query and
        # its result through the ORM cost three times the CPU of the read itself.
        with connection.cursor() as cursor:
            cursor.execute(_order_get_sql(), [order_id, customer.pk])
            row = cursor.fetchone()
        order = None if row is None else Order.from_db(connection.alias, _ORDER_FIELDS, row)
    else:
        order = Order.objects.filter(pk=order_id, customer=customer).first()
    if order is None:
        raise OrderNotFound(f"No order {order_id!r} found.")
    return order


_ORDER_FIELDS = [field.attname for field in Order._meta.concrete_fields]


@cache
def _order_get_sql() -> str:
    # PostgreSQL returns every column as the model's field holds it (no converters needed).
    meta = Order._meta
    column = {field.name: f'"{field.column}"' for field in meta.concrete_fields}
    columns = ", ".join(column.values())
    # Names from the model's metadata only; both values are parameters.
    return (
        f'SELECT {columns} FROM "{meta.db_table}" '  # noqa: S608
        f"WHERE {column['id']} = %s AND {column['customer']} = %s"
    )


def order_list(*, customer: Customer) -> list[Order]:
    """Returns the customer's own orders, newest first."""
    return list(Order.objects.filter(customer=customer).order_by("-created_at", "id"))


def order_statuses() -> dict[str, str]:
    """Every order's status by order id, across all customers (to compare the shop over time).

    Not for a customer's request: it reads everyone's orders.
    """
    return dict(Order.objects.order_by("pk").values_list("pk", "status"))


# --- Order events (the audit trail) ---------------------------------------------------------


def order_events_of_conversation(*, conversation_id: uuid.UUID) -> list[OrderEvent]:
    """What happened to orders through one conversation, oldest first, for staff."""
    return list(
        OrderEvent.objects.filter(conversation_id=conversation_id).select_related(
            "order", "actor_user", "actor_customer"
        )
    )


def order_events_cancelled() -> QuerySet[OrderEvent]:
    """Every cancellation in the audit trail; callers narrow it (e.g. by conversation)."""
    return OrderEvent.objects.filter(kind=OrderEventKind.CANCELLED)


def order_events_naming(*, order_id: str) -> QuerySet[OrderEvent]:
    """The audit trail of one order id (for finding the conversations that touched it)."""
    return OrderEvent.objects.filter(order_id=order_id)


def cancellations_by_customers_count(*, since: datetime, until: datetime) -> int:
    """Orders customers cancelled themselves through a conversation in [since, until)."""
    return OrderEvent.objects.filter(
        created_at__gte=since,
        created_at__lt=until,
        kind=OrderEventKind.CANCELLED,
        actor_kind=ActorKind.CUSTOMER,
        conversation_id__isnull=False,
    ).count()
