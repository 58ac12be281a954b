import threading

import pytest
from django.db import close_old_connections, connection

from orders.models import Customer, Order, OrderEvent, OrderStatus
from orders.selectors import OrderNotFound
from orders.services import Actor, OrderNotCancellable, order_cancel
from tests.conftest import make_order


@pytest.fixture
def alices_order(alice: Customer) -> Order:
    return make_order("37129", alice)


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
