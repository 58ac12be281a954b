"""Reads of customers and orders: always scoped by the customer who asks."""

import pytest

from orders.models import Customer, Order
from orders.selectors import (
    CustomerNotFound,
    OrderNotFound,
    customer_get,
    customer_list_with_order_counts,
    customer_lookup,
    customer_of_user,
    order_get,
    order_list,
)
from tests.conftest import make_order


@pytest.fixture
def alices_order(alice: Customer) -> Order:
    return make_order("37129", alice)


def test_it_gets_the_customers_own_order(alice: Customer, alices_order: Order) -> None:
    assert order_get(customer=alice, order_id=" 37129 ") == alices_order


def test_bob_cannot_read_alices_order_and_gets_the_missing_order_answer(
    alice: Customer, bob: Customer, alices_order: Order
) -> None:
    with pytest.raises(OrderNotFound) as theirs:
        order_get(customer=bob, order_id="37129")
    with pytest.raises(OrderNotFound) as missing:
        order_get(customer=bob, order_id="99999")
    assert str(theirs.value).replace("37129", "X") == str(missing.value).replace("99999", "X")


def test_bob_cannot_list_alices_orders(alice: Customer, bob: Customer, alices_order: Order) -> None:
    make_order("11111", bob, product="Backpack")
    assert [o.id for o in order_list(customer=bob)] == ["11111"]
    assert [o.id for o in order_list(customer=alice)] == ["37129"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("email", "alice_liddell@example.com"),
        ("email", "  ALICE_LIDDELL@Example.COM "),
        ("phone", "312-555-0100"),
        ("phone", "(312) 555-0100"),
        ("phone", "+1 312 555 0100"),
        ("username", "Alice_Liddell"),
    ],
)
def test_lookup_normalises_the_customers_own_email_phone_and_username(
    alice: Customer, key: str, value: str
) -> None:
    assert customer_lookup(customer=alice, key=key, value=value) == alice  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("email", "bob_builder@example.com"),
        ("phone", "(415) 555-0199"),
        ("username", "bob_builder"),
    ],
)
def test_lookup_of_another_customers_details_is_not_found(
    alice: Customer, bob: Customer, key: str, value: str
) -> None:
    with pytest.raises(CustomerNotFound) as theirs:
        customer_lookup(customer=alice, key=key, value=value)  # type: ignore[arg-type]
    with pytest.raises(CustomerNotFound) as nobodys:
        customer_lookup(customer=alice, key=key, value="nobody-0000")  # type: ignore[arg-type]
    assert str(theirs.value) == str(nobodys.value)


def test_lookup_of_a_non_ascii_email(db: None) -> None:
    from tests.conftest import make_customer

    marcia = make_customer("678902", "Márcia Oliveria", email="márcia_oliveria@example.com")
    assert (
        customer_lookup(customer=marcia, key="email", value="MÁRCIA_OLIVERIA@example.com") == marcia
    )


def test_the_customer_of_a_user_is_only_the_one_linked_to_it(
    alice: Customer, bob: Customer
) -> None:
    assert customer_of_user(user_id=alice.user_id) == alice
    assert customer_of_user(user_id=alice.user_id, customer_id=alice.pk) == alice
    assert customer_of_user(user_id=alice.user_id, customer_id=bob.pk) is None
    assert customer_of_user(user_id=None) is None


def test_a_customer_by_id_and_the_list_with_order_counts(alice: Customer, bob: Customer) -> None:
    make_order("37129", alice)
    make_order("37130", alice)

    assert customer_get(customer_id=bob.pk) == bob
    with pytest.raises(CustomerNotFound):
        customer_get(customer_id="nobody")
    counts = {c.pk: c.order_count for c in customer_list_with_order_counts()}  # type: ignore[attr-defined]
    assert counts == {alice.pk: 2, bob.pk: 0}
