"""Retention: old conversations go with everything stored about them; orders stay."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from chat.models import (
    Conversation,
    DailyUsage,
    Feedback,
    Message,
    ModelCall,
    PendingAction,
    Turn,
)
from orders.models import Customer, Order, OrderEvent
from tests.chat.backoffice_data import DataSet, build, move_back

pytestmark = pytest.mark.django_db


@pytest.fixture
def data(alice: Customer, bob: Customer) -> DataSet:
    built = build(alice, bob)
    # a (with its cancellation) goes quiet 400 days ago; c 40 days ago; b two days ago.
    move_back(built.a, timedelta(days=400))
    PendingAction.objects.create(
        conversation=built.a,
        turn=Turn.objects.filter(conversation=built.a).get(),
        tool_use_id="a1",
        tool_name="cancel_order",
        tool_input={"order_id": "37129"},
        summary="Cancel order 37129 (2 × Sunglasses)?",
        state="approved",
    )
    today = timezone.localdate()
    for days_ago in (400, 40, 0):
        DailyUsage.objects.create(customer=alice, day=today - timedelta(days=days_ago), tokens=9)
    return built


def purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_conversations", *args, stdout=out)
    return out.getvalue()


def counts() -> tuple[int, ...]:
    return tuple(
        model.objects.count()
        for model in (Conversation, Message, Turn, ModelCall, PendingAction, Feedback, DailyUsage)
    )


def test_a_dry_run_counts_and_deletes_nothing(data: DataSet) -> None:
    before = counts()

    output = purge("--dry-run")

    assert output == (
        "Would delete (last activity over 365 days ago): 1 conversations, 4 messages, 1 turns, "
        "2 model calls, 1 pending actions, 1 feedback, 1 daily usage counts.\n"
    )
    assert counts() == before


def test_it_deletes_what_is_older_than_the_retention_setting(
    data: DataSet, settings: object
) -> None:
    settings.CONVERSATION_RETENTION_DAYS = 30  # type: ignore[attr-defined]
    orders_before = list(Order.objects.values_list("id", "status").order_by("id"))
    events_before = list(OrderEvent.objects.values_list("pk", "conversation_id").order_by("pk"))

    output = purge()

    assert output.startswith("Deleted (last activity over 30 days ago): 2 conversations,")
    assert set(Conversation.objects.all()) == {data.b, data.d}
    assert not Message.objects.filter(conversation_id__in=[data.a.pk, data.c.pk]).exists()
    assert not ModelCall.objects.filter(conversation_id__in=[data.a.pk, data.c.pk]).exists()
    assert (PendingAction.objects.count(), Feedback.objects.count()) == (0, 1)
    assert Turn.objects.count() == 1  # b's
    # Token counts of days past the retention go; today's, which the budget reads, stays.
    assert list(DailyUsage.objects.values_list("day", flat=True)) == [timezone.localdate()]
    # Orders and their audit trail are untouched; a's cancellation still names its conversation.
    assert list(Order.objects.values_list("id", "status").order_by("id")) == orders_before
    assert list(OrderEvent.objects.values_list("pk", "conversation_id").order_by("pk")) == (
        events_before
    )
    assert OrderEvent.objects.filter(conversation_id=data.a.pk).exists()


def test_days_on_the_command_line_win(data: DataSet) -> None:
    purge("--days", "1")

    assert set(Conversation.objects.all()) == {data.d}


def test_zero_keeps_everything(data: DataSet, settings: object) -> None:
    settings.CONVERSATION_RETENTION_DAYS = 0  # type: ignore[attr-defined]
    before = counts()

    output = purge()

    assert output == "Retention is off (0 days): nothing deleted.\n"
    assert counts() == before
