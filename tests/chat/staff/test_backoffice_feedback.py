"""Customers rate the assistant's replies: the service and the endpoint the chat page posts to."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from chat.live.conversations import ConversationNotFound
from chat.models import Feedback, Message, MessageKind, MessageRole
from chat.staff.feedback import feedback_give
from orders.models import Customer
from tests.chat.backoffice_data import Builder, reply, tool_use
from tests.chat.factories import make_conversation, user_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(alice: Customer) -> Builder:
    built = Builder(make_conversation(alice))
    built.customer("Where is order 37129?")  # seq 1
    built.assistant([tool_use("t1", "get_order_by_id", {"order_id": "37129"})])  # 2, tool only
    built.assistant(reply("It has shipped."))  # 3
    built.message(MessageRole.ASSISTANT, MessageKind.NOTICE, [{"text": "Try again."}])  # 4
    return built


def url(chat: Builder, seq: int) -> str:
    return reverse("chat:message_feedback", args=[chat.conversation.pk, seq])


def signed_in(customer: Customer, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user_of(customer))
    return client


def test_a_customer_rates_a_reply_and_can_change_their_mind(alice: Customer, chat: Builder) -> None:
    user = user_of(alice)
    first = feedback_give(
        user=user, conversation_id=chat.conversation.pk, seq=3, score=1, comment=" Great "
    )
    second = feedback_give(
        user=user, conversation_id=str(chat.conversation.pk), seq=3, score=-1, comment=""
    )

    assert first.pk == second.pk
    stored = Feedback.objects.get()
    assert (stored.score, stored.comment, stored.message.seq) == (-1, "", 3)
    assert stored.conversation_id == chat.conversation.pk


@pytest.mark.parametrize(
    ("seq", "score", "comment", "error"),
    [
        (1, 1, "", "Only the assistant's replies can be rated."),  # the customer's own message
        (2, 1, "", "Only the assistant's replies can be rated."),  # a tool call, never shown
        (4, 1, "", "Only the assistant's replies can be rated."),  # a notice
        (99, 1, "", "Only the assistant's replies can be rated."),
        (3, 5, "", "Choose thumbs up or thumbs down."),
        (3, 1, "x" * 1001, "Please keep your comment under 1000 characters."),
    ],
)
def test_it_refuses_what_cannot_be_rated(
    alice: Customer, chat: Builder, seq: int, score: int, comment: str, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        feedback_give(
            user=user_of(alice),
            conversation_id=chat.conversation.pk,
            seq=seq,
            score=score,
            comment=comment,
        )
    assert not Feedback.objects.exists()


def test_it_refuses_another_customers_conversation(bob: Customer, chat: Builder) -> None:
    with pytest.raises(ConversationNotFound):
        feedback_give(user=user_of(bob), conversation_id=chat.conversation.pk, seq=3, score=1)

    response = signed_in(bob).post(url(chat, 3), {"score": "1"})

    assert response.status_code == 404
    assert response.json() == {"error": "No such conversation."}
    assert not Feedback.objects.exists()


def test_the_endpoint_takes_json_and_answers_json(alice: Customer, chat: Builder) -> None:
    response = signed_in(alice).post(
        url(chat, 3),
        json.dumps({"score": -1, "comment": "Too slow"}),
        content_type="application/json",
    )

    assert response.status_code == 200
    assert response.json() == {"seq": 3, "score": -1, "comment": "Too slow"}


def test_the_endpoint_takes_a_form_too(alice: Customer, chat: Builder) -> None:
    response = signed_in(alice).post(url(chat, 3), {"score": "up"})

    assert response.json() == {"seq": 3, "score": 1, "comment": ""}
    assert Feedback.objects.get().score == 1


def test_the_endpoint_explains_a_bad_request(alice: Customer, chat: Builder) -> None:
    client = signed_in(alice)

    bad_score = client.post(url(chat, 3), {"score": "maybe"})
    not_a_reply = client.post(url(chat, 1), {"score": "1"})
    broken = client.post(url(chat, 3), "{not json", content_type="application/json")

    assert (bad_score.status_code, not_a_reply.status_code, broken.status_code) == (400, 400, 400)
    assert bad_score.json()["error"] == "Choose thumbs up or thumbs down."
    assert not_a_reply.json()["error"] == "Only the assistant's replies can be rated."
    assert broken.json()["error"] == "The request body is not valid JSON."


def test_the_endpoint_needs_the_csrf_token_a_sign_in_and_post(
    alice: Customer, chat: Builder
) -> None:
    without_token = signed_in(alice, csrf=True).post(url(chat, 3), {"score": "1"})
    anonymous = Client().post(url(chat, 3), {"score": "1"})
    get = signed_in(alice).get(url(chat, 3))

    assert without_token.status_code == 403
    assert anonymous.status_code == 401
    assert get.status_code == 405
    assert not Feedback.objects.exists()


def test_feedback_goes_with_its_message(alice: Customer, chat: Builder) -> None:
    feedback_give(user=user_of(alice), conversation_id=chat.conversation.pk, seq=3, score=1)

    Message.objects.filter(conversation=chat.conversation, seq=3).delete()

    assert not Feedback.objects.exists()
