import csv
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, transaction

from orders.models import Customer, Order, OrderEvent, OrderStatus
from orders.services import Actor, order_cancel
from tests.conftest import make_customer, make_order

REFERENCE = Path(__file__).resolve().parents[2] / "orders" / "fixtures"


@pytest.fixture
def demo(db: None) -> None:
    call_command("loaddata", "customers", "orders", verbosity=0)


def test_fixtures_load_every_customer_and_order(demo: None) -> None:
    assert Customer.objects.count() == 34
    assert Order.objects.count() == 38
    statuses = Counter(Order.objects.values_list("status", flat=True))
    assert statuses == {"Shipped": 15, "Processing": 12, "Delivered": 11}


def test_fixtures_keep_leading_zeros_non_ascii_emails_and_exact_prices(demo: None) -> None:
    terry = Customer.objects.get(pk="012347")
    assert (terry.name, terry.email, terry.phone) == (
        "Terry Whitlock",
        "terry_whitlock@example.com",
        "417-555-9356",
    )
    assert Customer.objects.get(pk="678902").email == "márcia_oliveria@example.com"
    assert Customer.objects.get(pk="789013").email == "maría_garcia@example.com"
    sunglasses = Order.objects.get(pk="37129")
    assert (sunglasses.customer_id, sunglasses.quantity, sunglasses.unit_price) == (
        "901235",
        2,
        Decimal("49.99"),
    )


def test_fixtures_match_the_reference_data_row_for_row(demo: None) -> None:
    # Copies of the original design's demo data, the source the fixtures were made from.
    shared = Path(__file__).resolve().parent / "reference"
    with (shared / "customers.csv").open(encoding="utf-8") as f:
        customers = list(csv.DictReader(f))
    with (shared / "orders.csv").open(encoding="utf-8") as f:
        orders = list(csv.DictReader(f))
    assert {(c.id, c.name, c.email, c.phone, c.username) for c in Customer.objects.all()} == {
        (r["id"], r["name"], r["email"], r["phone"], r["username"]) for r in customers
    }
    assert {
        (o.id, o.customer_id, o.product, o.quantity, o.unit_price, o.status)
        for o in Order.objects.all()
    } == {
        (
            r["id"],
            r["customer_id"],
            r["product"],
            int(r["quantity"]),
            Decimal(r["price"]),
            r["status"],
        )
        for r in orders
    }


def test_reset_demo_data_restores_a_cancelled_order_and_keeps_its_history(demo: None) -> None:
    mary = Customer.objects.get(pk="901235")
    order_cancel(customer=mary, order_id="37129", actor=Actor.for_customer(mary))
    call_command("reset_demo_data", verbosity=0)
    assert Order.objects.get(pk="37129").status == OrderStatus.PROCESSING
    assert list(OrderEvent.objects.filter(order_id="37129").values_list("kind", flat=True)) == [
        "cancelled",
        "status_reset",
    ]


def test_reset_demo_data_if_empty_leaves_existing_data_alone(demo: None) -> None:
    Order.objects.filter(pk="37129").update(status=OrderStatus.CANCELLED)
    call_command("reset_demo_data", "--if-empty", verbosity=0)
    assert Order.objects.get(pk="37129").status == OrderStatus.CANCELLED


def test_reset_demo_data_keeps_sign_in_links(demo: None) -> None:
    call_command("create_customer_login", "mary_major@example.com", "--no-password", verbosity=0)
    call_command("reset_demo_data", verbosity=0)
    assert Customer.objects.get(pk="901235").user is not None


def test_the_database_refuses_invalid_orders(alice: Customer) -> None:
    for kwargs in ({"quantity": 0}, {"unit_price": "-1.00"}, {"status": "Lost"}):
        with pytest.raises(IntegrityError), transaction.atomic():
            make_order("1", alice, **kwargs)


def test_emails_are_unique_ignoring_case(alice: Customer) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        make_customer("999", "Other Person", email="ALICE_LIDDELL@example.com")


def test_non_ascii_emails_pass_validation_and_garbage_does_not(db: None) -> None:
    customer = Customer(id="1", name="María", email="maría_garcia@example.com", username="maria")
    customer.full_clean()
    customer.email = "not an email"
    with pytest.raises(ValidationError):
        customer.full_clean()


def test_fixture_files_are_utf8_json() -> None:
    text = (REFERENCE / "customers.json").read_text(encoding="utf-8")
    assert "márcia_oliveria@example.com" in text
