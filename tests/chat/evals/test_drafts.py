"""A support lead turns a real conversation into a draft case that holds nothing personal."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat.models import Conversation
from chat.staff.eval_drafts import conversation_draft
from orders.models import Order, OrderStatus
from tests.chat.evals.helpers import evaluate, play

CHANGELIST = "admin:chat_conversation_changelist"
MARY = {"id": "901235", "name": "Mary Major", "email": "mary_major@example.com"}


@pytest.fixture
def demo_data(settings: Any) -> None:
    settings.CHAT_MODEL = "demo"
    call_command("loaddata", "customers", "orders", verbosity=0)


def staff_in(group: str, username: str) -> Client:
    user = User.objects.create_user(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


def draft_by_admin(client: Client, conversation: Conversation) -> Any:
    return client.post(
        reverse(CHANGELIST),
        {"action": "draft_eval_case", "_selected_action": [str(conversation.pk)]},
    )


def assert_nothing_personal(draft: str) -> None:
    text = draft.casefold()
    for detail in ("mary", "major", "mary_major", "901235", "37129"):
        assert detail not in text, detail
    digits = re.sub(r"\D", "", draft)
    assert "7155552608" not in digits


def lead_by_permission() -> Client:
    # Transactional tests empty the database, roles included: give the lead role's
    # permissions that matter here directly.
    user = User.objects.create_user(username="lena", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_conversation", "export_conversations"])
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_the_support_lead_role_is_offered_the_draft_action(demo_data: None) -> None:
    play("901235", "My order is 37129")  # the admin offers actions only with rows to act on

    page = staff_in("Support lead", "lena").get(reverse(CHANGELIST))

    assert "draft_eval_case" in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_leads_draft_replays_the_conversation_as_it_went(demo_data: None, tmp_path: Path) -> None:
    conversation = play(
        "901235",
        "I need help with an order",
        "My order is 37129",
        "Please cancel my order",
        "[approve]",
    )

    response = draft_by_admin(lead_by_permission(), conversation)

    assert response.status_code == 200
    assert re.fullmatch(
        r'attachment; filename="draft-\d{8}-\d{6}\.yaml"', response["Content-Disposition"]
    )
    draft = response.content.decode()
    assert_nothing_personal(draft)
    case = yaml.safe_load(draft)
    assert case["customer"] == "890123"  # Jane Doe, a demo customer
    assert [turn["expect"]["confirmation"] for turn in case["turns"]] == [False, False, True]
    assert case["turns"][2]["answer"] == "approve"
    (new_id,) = case["final"]["orders"]
    assert case["final"]["orders"] == {new_id: "Cancelled"}
    assert case["orders"][0]["status"] == "Processing"
    assert {"name": "cancel_order", "input": {"order_id": new_id}} in case["turns"][2]["expect"][
        "tools"
    ]

    path = tmp_path / "drafted.yaml"
    path.write_text(draft, encoding="utf-8")
    output, failed = evaluate(path, "--model", "recorded")

    assert failed is None, output
    assert "drafted  PASS" in output
    # The real order stays as the real conversation left it; the replay cancelled a copy.
    assert Order.objects.get(pk="37129").status == OrderStatus.CANCELLED


@pytest.mark.django_db
def test_an_agent_is_not_offered_the_draft_action(demo_data: None) -> None:
    conversation = play("901235", "My order is 37129")
    agent = staff_in("Support agent", "arun")

    response = draft_by_admin(agent, conversation)

    assert not response.has_header("Content-Disposition")
    assert "draft_eval_case" not in agent.get(reverse(CHANGELIST)).content.decode()


@pytest.mark.django_db
def test_details_typed_in_other_forms_are_replaced_too(demo_data: None) -> None:
    conversation = play(
        "901235",
        "I want to cancel an order but I forgot the number",
        "My phone is (715) 555 2608 and my email is MARY_MAJOR@EXAMPLE.COM, cc friend@corp.example",
        "yes",
    )

    draft = conversation_draft(conversation, now=timezone.now())

    assert_nothing_personal(draft)
    assert "friend@corp.example" not in draft
    assert "someone-1@example.com" in draft
    assert "jane_doe@example.com" in draft


@pytest.mark.django_db
def test_several_conversations_download_as_a_zip(demo_data: None) -> None:
    first = play("901235", "My order is 37129")
    second = play("012347", "My order is 32057")

    response = staff_in("Support lead", "lena").post(
        reverse(CHANGELIST),
        {"action": "draft_eval_case", "_selected_action": [str(first.pk), str(second.pk)]},
    )

    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].endswith('.zip"')
