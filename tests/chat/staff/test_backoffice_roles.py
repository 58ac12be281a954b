"""Support agents and leads get only what their work needs; orders show their audit trail."""

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from chat.models import Conversation
from orders.models import Customer, Order, OrderEvent, OrderStatus
from tests.chat.backoffice_data import DataSet, build
from tests.conftest import make_order

pytestmark = pytest.mark.django_db


@pytest.fixture
def data(alice: Customer, bob: Customer) -> DataSet:
    return build(alice, bob)


def member_of(group: str, username: str) -> tuple[User, Client]:
    user = User.objects.create_user(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return user, client


@pytest.fixture
def agent() -> tuple[User, Client]:
    return member_of("Support agent", "arun")


@pytest.fixture
def lead() -> tuple[User, Client]:
    return member_of("Support lead", "lena")


def test_the_roles_hold_exactly_their_permissions(db: None) -> None:
    def codes(name: str) -> set[str]:
        group = Group.objects.get(name=name)
        return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}

    agent = {
        "orders.view_customer",
        "orders.view_order",
        "orders.view_orderevent",
        "orders.cancel_order",
        "chat.view_conversation",
        "chat.view_message",
        "chat.view_modelcall",
        "chat.reply_conversation",
    }
    assert codes("Support agent") == agent
    assert codes("Support lead") == agent | {"chat.view_dashboard", "chat.export_conversations"}


def test_an_agent_views_everything(agent: tuple[User, Client], data: DataSet) -> None:
    _, client = agent
    pages = [
        reverse("admin:chat_conversation_changelist"),
        reverse("admin:chat_conversation_change", args=[data.a.pk]),
        reverse("admin:chat_modelcall_changelist"),
        reverse("admin:orders_order_changelist"),
        reverse("admin:orders_order_change", args=["37129"]),
        reverse("admin:orders_customer_changelist"),
        reverse("admin:orders_orderevent_changelist"),
    ]

    assert [client.get(page).status_code for page in pages] == [200] * len(pages)


def test_an_agent_cannot_edit_a_transcript_or_delete_a_conversation(
    agent: tuple[User, Client], data: DataSet
) -> None:
    _, client = agent
    change = client.post(
        reverse("admin:chat_conversation_change", args=[data.a.pk]), {"title": "edited"}
    )
    delete = client.post(
        reverse("admin:chat_conversation_delete", args=[data.a.pk]), {"post": "yes"}
    )

    assert (change.status_code, delete.status_code) == (403, 403)
    assert Conversation.objects.filter(pk=data.a.pk, title="").exists()


def test_an_agent_cannot_change_an_orders_fields(
    agent: tuple[User, Client], alice: Customer
) -> None:
    make_order("40000", alice)
    user, client = agent
    response = client.post(
        reverse("admin:orders_order_change", args=["40000"]),
        {"customer": alice.pk, "product": "Gold bar", "quantity": 99, "unit_price": "0.01"},
    )

    assert response.status_code == 403
    assert not user.has_perm("orders.change_order")
    assert Order.objects.get(pk="40000").product == "Sunglasses"


def test_an_agent_cancels_through_the_audited_action(
    agent: tuple[User, Client], alice: Customer
) -> None:
    make_order("40000", alice)
    user, client = agent
    response = client.post(
        reverse("admin:orders_order_changelist"),
        {"action": "cancel_selected", "_selected_action": ["40000"]},
        follow=True,
    )

    assert "Cancelled 1 order(s): 40000." in response.content.decode()
    assert Order.objects.get(pk="40000").status == OrderStatus.CANCELLED
    event = OrderEvent.objects.get(order_id="40000")
    assert (event.actor_kind, event.actor_user) == ("staff", user)


def test_staff_without_the_cancel_permission_do_not_get_the_action(
    alice: Customer,
) -> None:
    make_order("40000", alice)
    viewer = User.objects.create_user(username="viewer", is_staff=True)
    viewer.user_permissions.add(
        *Group.objects.get(name="Support agent").permissions.exclude(codename="cancel_order")
    )
    client = Client()
    client.force_login(viewer)

    client.post(
        reverse("admin:orders_order_changelist"),
        {"action": "cancel_selected", "_selected_action": ["40000"]},
    )

    assert Order.objects.get(pk="40000").status == OrderStatus.PROCESSING


def test_an_orders_page_shows_who_cancelled_it_and_through_which_conversation(
    agent: tuple[User, Client], data: DataSet
) -> None:
    _, client = agent

    by_customer = client.get(reverse("admin:orders_order_change", args=["37129"]))
    by_staff = client.get(reverse("admin:orders_order_change", args=["11111"]))

    page = by_customer.content.decode()
    assert "Customer Alice Liddell" in page
    link = reverse("admin:chat_conversation_change", args=[data.a.pk])
    assert f'<a href="{link}">Conversation {data.a.pk}</a>' in page
    staff_page = by_staff.content.decode()
    assert "Staff lead-for-data" in staff_page
    assert "Staff action in the admin" in staff_page


def test_an_order_event_outlives_its_purged_conversation(
    agent: tuple[User, Client], data: DataSet
) -> None:
    _, client = agent
    conversation_id = data.a.pk
    Conversation.objects.filter(pk=conversation_id).delete()

    response = client.get(reverse("admin:orders_order_change", args=["37129"]))

    assert response.status_code == 200
    assert OrderEvent.objects.get(order_id="37129").conversation_id == conversation_id


def test_a_lead_exports_and_an_agent_cannot(
    agent: tuple[User, Client], lead: tuple[User, Client], data: DataSet
) -> None:
    selection = {"action": "export_csv", "_selected_action": [str(data.a.pk)]}
    changelist = reverse("admin:chat_conversation_changelist")

    by_lead = lead[1].post(changelist, selection)
    by_agent = agent[1].post(changelist, selection)

    assert by_lead.status_code == 200
    assert by_lead["Content-Type"].startswith("text/csv")
    assert b"".join(by_lead.streaming_content).startswith(b"conversation_id,seq")  # type: ignore[attr-defined]
    # The action is not offered to an agent: the admin answers with the list, not a file.
    assert not by_agent.has_header("Content-Disposition")
    assert "export_csv" not in agent[1].get(changelist).content.decode()
