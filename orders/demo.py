"""The demo shop: the customers and orders in ``orders/fixtures``.

``manage.py reset_demo_data`` loads them into the app's database. The conversation evals load
them into a throwaway database and give a case's customer the orders the case lists
(``demo_orders_replace``); cases drafted from real conversations sign in as one of these
customers (``demo_records``).
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db import transaction

from orders.models import Customer, Order

DEMO_FIXTURES = ("customers", "orders")
_FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Far enough ahead that a case's orders are the customer's newest, whatever the fixtures hold.
_LISTED_FROM = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DemoOrder:
    id: str
    product: str
    quantity: int
    price: Decimal
    status: str


def demo_records(name: str) -> list[dict[str, Any]]:
    """The records of one demo fixture (``customers`` or ``orders``), as Django serialized them."""
    records: list[dict[str, Any]] = json.loads((_FIXTURES / f"{name}.json").read_text("utf-8"))
    return records


def demo_orders_replace(*, customer: Customer, orders: Sequence[DemoOrder]) -> None:
    """Makes ``orders`` the customer's only orders, listed newest first in the given order.

    For a throwaway copy of the demo data only (the evals): it deletes the customer's other
    orders and writes no audit row, which no real shop may do. No authorization: the caller
    owns the whole database.

    Raises: ``ValueError`` naming an order id that belongs to another customer.
    """
    clash = (
        Order.objects.filter(pk__in=[o.id for o in orders])
        .exclude(customer=customer)
        .values_list("pk", flat=True)
        .first()
    )
    if clash is not None:
        raise ValueError(f"order {clash} belongs to another demo customer; use another id")
    with transaction.atomic():
        Order.objects.filter(customer=customer).delete()
        for age, order in enumerate(orders):
            Order.objects.create(
                id=order.id,
                customer=customer,
                product=order.product,
                quantity=order.quantity,
                unit_price=order.price,
                status=order.status,
            )
            # created_at is set on insert; the shop lists orders newest first.
            Order.objects.filter(pk=order.id).update(
                created_at=_LISTED_FROM - timedelta(minutes=age)
            )
