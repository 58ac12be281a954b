import threading

import pytest
from django.db import close_old_connections, connection

from orders.models import Customer, Order, OrderEvent, OrderStatus
from orders.services import (
    Actor,
    CustomerNotFound,
    OrderNotCancellable,
    OrderNotFound,
    customer_lookup,
    order_cancel,
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


def test_bob_cannot_cancel_alices_order(
    alice: Customer, bob: Customer, alices_order: Order
) -> None:
    with pytest.raises(OrderNotFound):
        order_cancel(customer=bob, order_id="37129", actor=Actor.for_customer(bob))
    alices_order.refresh_from_db()
    assert alices_order.status == OrderStatus.PROCESSING
    assert not OrderEvent.objects.exists()


def test_cancelling_a_processing_order_writes_one_audit_event(
    alice: Customer, alices_order: Order
) -> None:
    order = order_cancel(customer=alice, order_id="37129", actor=Actor.for_customer(alice))
    assert order.status == OrderStatus.CANCELLED
    event = OrderEvent.objects.get()
    assert (event.order_id, event.kind, event.actor_kind, event.actor_customer) == (
        "37129",
        "cancelled",
        "customer",
        alice,
    )
    assert event.actor_user == alice.user


@pytest.mark.parametrize(
    "status", [OrderStatus.SHIPPED, OrderStatus.DELIVERED, OrderStatus.CANCELLED]
)
def test_it_refuses_to_cancel_an_order_that_is_not_processing(alice: Customer, status: str) -> None:
    make_order("32057", alice, status=status)
    with pytest.raises(OrderNotCancellable) as error:
        order_cancel(customer=alice, order_id="32057", actor=Actor.for_customer(alice))
    assert status in str(error.value)
    assert Order.objects.get(pk="32057").status == status
    assert not OrderEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_cancels_succeed_exactly_once() -> None:
    from tests.conftest import make_customer

    alice = make_customer("012345", "Alice Liddell")
    make_order("37129", alice)
    barrier = threading.Barrier(10)
    outcomes: list[str] = []
    lock = threading.Lock()

    def cancel() -> None:
        try:
            barrier.wait()
            order_cancel(customer=alice, order_id="37129", actor=Actor.for_customer(alice))
            result = "cancelled"
        except OrderNotCancellable:
            result = "refused"
        finally:
            close_old_connections()
            connection.close()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=cancel) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["cancelled"] + ["refused"] * 9
    assert OrderEvent.objects.filter(order_id="37129").count() == 1
    assert Order.objects.get(pk="37129").status == OrderStatus.CANCELLED


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
