import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from orders.models import Customer, Order, OrderEvent, OrderStatus
from tests.conftest import make_order


@pytest.fixture
def admin_client_for(support: User) -> Client:
    support.is_superuser = True
    support.save()
    client = Client()
    client.force_login(support)
    return client


def test_the_cancel_action_goes_through_the_service_and_is_audited(
    admin_client_for: Client, alice: Customer, support: User
) -> None:
    make_order("37129", alice)
    make_order("32057", alice, status=OrderStatus.SHIPPED)
    response = admin_client_for.post(
        reverse("admin:orders_order_changelist"),
        {"action": "cancel_selected", "_selected_action": ["37129", "32057"]},
        follow=True,
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "Cancelled 1 order(s): 37129." in text
    assert "Not cancelled (no longer Processing): 32057." in text
    assert Order.objects.get(pk="37129").status == OrderStatus.CANCELLED
    assert Order.objects.get(pk="32057").status == OrderStatus.SHIPPED
    event = OrderEvent.objects.get()
    assert (event.order_id, event.actor_kind, event.actor_user) == ("37129", "staff", support)


def test_an_orders_status_is_not_editable_in_its_form(
    admin_client_for: Client, alice: Customer
) -> None:
    make_order("37129", alice)
    response = admin_client_for.get(reverse("admin:orders_order_change", args=["37129"]))
    assert response.status_code == 200
    assert 'name="status"' not in response.content.decode()


def test_a_superuser_cannot_change_add_or_delete_an_order_in_admin(
    admin_client_for: Client, alice: Customer, bob: Customer
) -> None:
    make_order("37129", alice, product="Sunglasses", quantity=2, unit_price="49.99")
    before = list(
        Order.objects.values_list("id", "customer_id", "product", "quantity", "unit_price")
    )

    change = admin_client_for.post(
        reverse("admin:orders_order_change", args=["37129"]),
        {
            "customer": bob.pk,
            "product": "Gold bar",
            "quantity": "99",
            "unit_price": "0.01",
            "status": OrderStatus.CANCELLED,
        },
    )
    add = admin_client_for.post(
        reverse("admin:orders_order_add"),
        {"id": "99999", "customer": alice.pk, "product": "Hat", "quantity": "1", "unit_price": "1"},
    )
    delete = admin_client_for.post(
        reverse("admin:orders_order_delete", args=["37129"]), {"post": "yes"}
    )
    form = admin_client_for.get(reverse("admin:orders_order_change", args=["37129"]))

    assert (change.status_code, add.status_code, delete.status_code) == (403, 403, 403)
    assert (
        list(Order.objects.values_list("id", "customer_id", "product", "quantity", "unit_price"))
        == before
    )
    assert Order.objects.get(pk="37129").status == OrderStatus.PROCESSING
    assert not OrderEvent.objects.exists()
    # The page still shows the order (read-only) with its audited cancel action on the list.
    assert form.status_code == 200
    assert 'name="product"' not in form.content.decode()


def test_customers_are_searchable_by_phone(
    admin_client_for: Client, alice: Customer, bob: Customer
) -> None:
    response = admin_client_for.get(
        reverse("admin:orders_customer_changelist"), {"q": "312-555-0100"}
    )
    assert "Alice Liddell" in response.content.decode()
    assert "Bob Builder" not in response.content.decode()


def test_order_events_cannot_be_changed_or_deleted_in_admin(
    admin_client_for: Client, alice: Customer
) -> None:
    from orders.services import Actor, order_cancel

    make_order("37129", alice)
    order_cancel(customer=alice, order_id="37129", actor=Actor.for_customer(alice))
    event = OrderEvent.objects.get()
    response = admin_client_for.post(
        reverse("admin:orders_orderevent_delete", args=[event.pk]), {"post": "yes"}
    )
    assert response.status_code == 403
    assert OrderEvent.objects.filter(pk=event.pk).exists()
    with pytest.raises(TypeError):
        OrderEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(TypeError):
        event.save()
