"""The conversation audit in the admin: the list, its filters and search, the transcript page."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import NoReverseMatch, reverse

from chat.models import Conversation, Message, ModelCall, PendingAction, Turn
from orders.models import Customer
from tests.chat.backoffice_data import Builder, DataSet, build, reply
from tests.chat.factories import make_conversation

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:chat_conversation_changelist")


@pytest.fixture
def superuser_client(support: User) -> Client:
    support.is_superuser = True
    support.save()
    client = Client()
    client.force_login(support)
    return client


@pytest.fixture
def data(alice: Customer, bob: Customer) -> DataSet:
    return build(alice, bob)


def listed(client: Client, **params: str) -> set[Conversation]:
    response = client.get(CHANGELIST, params)
    assert response.status_code == 200
    return set(response.context["cl"].result_list)


def row_of(client: Client, conversation: Conversation) -> Conversation:
    response = client.get(CHANGELIST)
    return next(c for c in response.context["cl"].result_list if c.pk == conversation.pk)


def test_the_list_shows_each_conversations_numbers(superuser_client: Client, data: DataSet) -> None:
    response = superuser_client.get(CHANGELIST)
    page = response.content.decode()
    b = row_of(superuser_client, data.b)

    assert b.last_seq == 4
    assert (b.n_tool_calls, b.n_model_calls, b.n_errors) == (2, 3, 1)  # type: ignore[attr-defined]
    assert "1,100 / 50 / 3,000" in page  # b's tokens: in / out / cached (2000 read + 1000 write)
    # (1100 * 3 + 50 * 15 + 2000 * 0.30 + 1000 * 3.75) / 1e6 = $0.0084
    assert "$0.0084" in page
    assert "👍 0 · 👎 1" in page
    assert "👍 1 · 👎 0" in page


def test_the_list_costs_the_same_queries_for_two_or_twelve_conversations(
    superuser_client: Client, alice: Customer, django_assert_max_num_queries: object
) -> None:
    def fill(count: int) -> None:
        for _ in range(count):
            built = Builder(make_conversation(alice))
            built.customer("Hi")
            built.call("end_turn", (10, 5), latency_ms=100)
            built.assistant(reply("Hello"))

    fill(2)
    with django_assert_max_num_queries(8):  # type: ignore[operator]
        assert superuser_client.get(CHANGELIST).status_code == 200
    fill(10)
    with django_assert_max_num_queries(8):  # type: ignore[operator]
        assert superuser_client.get(CHANGELIST).status_code == 200


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "waiting_for_agent"}, {"b"}),
        ({"escalated": "yes"}, {"b", "d"}),
        ({"escalated": "no"}, {"a", "c"}),
        ({"cancellation": "yes"}, {"a"}),
        ({"model_error": "yes"}, {"b"}),
        ({"model_error": "no"}, {"a", "c", "d"}),
        ({"feedback": "up"}, {"a", "c"}),
        ({"feedback": "down"}, {"b"}),
        ({"feedback": "none"}, {"d"}),
        ({"q": "Bob Builder"}, {"b", "d"}),
        ({"q": "alice_liddell@example.com"}, {"a", "c"}),
        # Order ids used in tool calls: 99999 only in b's lookup, 37129 in a's cancel (and its
        # audit trail), 11111 in c's lookup and a staff cancel outside any conversation.
        ({"q": "99999"}, {"b"}),
        ({"q": "37129"}, {"a"}),
        ({"q": "11111"}, {"c"}),
    ],
)
def test_filters_and_search(
    superuser_client: Client, data: DataSet, params: dict[str, str], expected: set[str]
) -> None:
    by_name = {"a": data.a, "b": data.b, "c": data.c, "d": data.d}

    assert listed(superuser_client, **params) == {by_name[name] for name in expected}


def test_an_order_id_typed_by_the_customer_is_not_a_tool_call_match(
    superuser_client: Client, alice: Customer
) -> None:
    built = Builder(make_conversation(alice))
    built.customer("Is order 55555 on its way?")

    assert listed(superuser_client, q="55555") == set()


def test_the_transcript_shows_what_the_customer_saw_and_what_the_model_did(
    superuser_client: Client, data: DataSet
) -> None:
    response = superuser_client.get(reverse("admin:chat_conversation_change", args=[data.b.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "What about my orders?" in page  # the customer's message
    assert "Sorry, I could not find order 99999." in page  # the reply as shown
    assert "Tool call <code>get_order_by_id</code> → error" in page
    assert "No order 99999 was found on this customer&#x27;s account." in page
    assert "Tool call <code>get_customer_orders</code> → success" in page
    assert "Model call · tool_use · 500 in / 20 out · 400 ms" in page
    assert "error: ModelBusy" in page
    assert "👎 not helpful — “Wrong order”" in page
    assert "<details" in page
    assert 'name="title"' not in page
    assert "Save" not in page


def test_the_transcript_shows_the_cancellation_with_a_link_to_the_order(
    superuser_client: Client, data: DataSet
) -> None:
    response = superuser_client.get(reverse("admin:chat_conversation_change", args=[data.a.pk]))

    page = response.content.decode()
    assert reverse("admin:orders_order_change", args=["37129"]) in page
    assert "37129</a> cancelled by the customer" in " ".join(page.split())
    assert "Tool call <code>cancel_order</code> → success" in page


@pytest.mark.parametrize("messages", [5, 50])
def test_the_transcript_page_costs_the_same_queries_whatever_its_length(
    superuser_client: Client,
    alice: Customer,
    messages: int,
    django_assert_max_num_queries: object,
) -> None:
    built = Builder(make_conversation(alice))
    for number in range(messages):
        if number % 2 == 0:
            built.customer(f"Question {number}")
        else:
            built.call("end_turn", (10, 5), latency_ms=100)
            built.assistant(reply(f"Answer {number}"))
    url = reverse("admin:chat_conversation_change", args=[built.conversation.pk])

    with django_assert_max_num_queries(10):  # type: ignore[operator]
        response = superuser_client.get(url)

    assert response.status_code == 200
    assert response.content.decode().count('class="tx-msg') == messages


def test_nobody_can_add_change_or_delete_a_transcript(
    superuser_client: Client, data: DataSet
) -> None:
    conversation = data.a
    change = superuser_client.post(
        reverse("admin:chat_conversation_change", args=[conversation.pk]), {"title": "edited"}
    )
    delete = superuser_client.post(
        reverse("admin:chat_conversation_delete", args=[conversation.pk]), {"post": "yes"}
    )
    add = superuser_client.get(reverse("admin:chat_conversation_add"))
    bulk_delete = superuser_client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [str(conversation.pk)]}
    )

    assert (change.status_code, delete.status_code, add.status_code) == (403, 403, 403)
    assert Conversation.objects.filter(pk=conversation.pk, title="").exists()
    assert bulk_delete.status_code in (200, 302)
    assert Conversation.objects.count() == 4
    # The other conversation rows have no admin pages at all.
    for model in (Message, Turn, PendingAction):
        name = model._meta.model_name
        with pytest.raises(NoReverseMatch):
            reverse(f"admin:chat_{name}_changelist")
    assert ModelCall.objects.filter(conversation=conversation).count() == 2
