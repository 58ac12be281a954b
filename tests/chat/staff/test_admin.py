"""Staff read conversations in the admin; nothing there changes them."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chat.models import Conversation, ModelCall
from orders.models import Customer
from tests.chat.factories import make_conversation, submit
from tests.chat.scripted import ScriptedModel, text_response

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(support: User) -> Client:
    support.is_superuser = True
    support.save()
    client = Client()
    client.force_login(support)
    return client


def answered_conversation(alice: Customer) -> Conversation:
    conversation = make_conversation(alice)
    model = ScriptedModel(
        text_response("<thinking>Secret plan.</thinking><reply>Hello Alice!</reply>")
    )
    submit(conversation, alice, "Hello", model=model)
    return conversation


def test_staff_see_the_transcript_and_the_raw_messages(
    staff_client: Client, alice: Customer
) -> None:
    conversation = answered_conversation(alice)

    response = staff_client.get(reverse("admin:chat_conversation_change", args=[conversation.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "Hello Alice!" in page
    # The raw content, thinking included, is there for audit.
    assert "Secret plan." in page
    assert 'name="title"' not in page


def test_conversations_and_model_calls_cannot_be_changed(
    staff_client: Client, alice: Customer
) -> None:
    conversation = answered_conversation(alice)
    call = ModelCall.objects.get()

    listing = staff_client.get(reverse("admin:chat_modelcall_changelist"))
    add = staff_client.get(reverse("admin:chat_conversation_add"))
    delete = staff_client.post(
        reverse("admin:chat_conversation_delete", args=[conversation.pk]), {"post": "yes"}
    )
    change = staff_client.post(
        reverse("admin:chat_modelcall_change", args=[call.pk]), {"error": "edited"}
    )

    assert listing.status_code == 200
    assert (add.status_code, delete.status_code, change.status_code) == (403, 403, 403)
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    call.refresh_from_db()
    assert call.error == ""
