"""Shared personas: Alice and Bob are customers, ``support`` is a staff member."""

import os
from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from orders.models import Customer, Order, OrderStatus

# The boto3 credential chain would otherwise probe an off-machine metadata address.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def make_customer(
    customer_id: str, name: str, *, email: str | None = None, phone: str = ""
) -> Customer:
    username = name.lower().replace(" ", "_")
    return Customer.objects.create(
        id=customer_id,
        name=name,
        email=email or f"{username}@example.com",
        phone=phone,
        username=username,
    )


def make_order(
    order_id: str,
    customer: Customer,
    *,
    status: str = OrderStatus.PROCESSING,
    product: str = "Sunglasses",
    quantity: int = 2,
    unit_price: str = "49.99",
) -> Order:
    return Order.objects.create(
        id=order_id,
        customer=customer,
        product=product,
        quantity=quantity,
        unit_price=Decimal(unit_price),
        status=status,
    )


def make_login(customer: Customer) -> User:
    user = User.objects.create_user(
        username=customer.username, email=customer.email, password="correct horse 9"
    )
    customer.user = user
    customer.save(update_fields=["user"])
    return user


@pytest.fixture
def alice(db: None) -> Customer:
    customer = make_customer("012345", "Alice Liddell", phone="312-555-0100")
    make_login(customer)
    return customer


@pytest.fixture
def bob(db: None) -> Customer:
    customer = make_customer("054321", "Bob Builder", phone="415-555-0199")
    make_login(customer)
    return customer


@pytest.fixture
def support(db: None) -> User:
    return User.objects.create_user(
        username="support", password="correct horse 9", is_staff=True, first_name="Sam"
    )
