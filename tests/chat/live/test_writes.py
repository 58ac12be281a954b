"""A turn's writes keep the data whole without database foreign keys on turns, messages and
model calls, and a message checked without a lock still starts at most one turn."""

import uuid
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from chat.engine.types import ModelCallRecord
from chat.live.intake import (
    BUSY_TEXT,
    Admission,
    Started,
    _admission_row_orm,
    _admission_row_sql,
    admission_read,
    turn_start,
)
from chat.live.limits import tokens_used_today
from chat.live.storage import NewMessage
from chat.live.turns import tools_for, turn_submit
from chat.live.writes import ConversationUnavailable, Step, TurnNotRunning, step_write
from chat.models import (
    Conversation,
    ConversationStatus,
    DailyUsage,
    Message,
    MessageKind,
    MessageRole,
    ModelCall,
    Turn,
    TurnState,
)
from orders.models import Customer
from tests.chat.factories import Recorder, make_conversation, spend_tokens, submit, user_of
from tests.chat.scripted import ScriptedModel, response, text_response, tool_call
from tests.conftest import make_order

pytestmark = pytest.mark.django_db

HELLO = NewMessage(MessageRole.USER, MessageKind.CUSTOMER, [{"text": "Hello"}])
CALL = ModelCallRecord("demo", "end_turn", 10, 5, 0, 0, 3, "")
LOOKUP = tool_call("t-1", "get_order_by_id", {"order_id": "40001"})


def hello_step(conversation_id: uuid.UUID, turn_id: uuid.UUID | None) -> Step:
    return Step(
        conversation_id=conversation_id,
        messages=[HELLO],
        turn_id=turn_id,
        model_calls=[(CALL, "")],
    )


def test_a_step_for_a_missing_conversation_stores_nothing() -> None:
    with pytest.raises(ConversationUnavailable):
        step_write(Step(conversation_id=uuid.uuid4(), messages=[HELLO]))
    with pytest.raises(ConversationUnavailable):
        step_write(
            Step(
                conversation_id=uuid.uuid4(),
                messages=[HELLO],
                turn_id=uuid.uuid4(),
                new_turn_client_id="m1",
            )
        )

    assert not Message.objects.exists()
    assert not Turn.objects.exists()


def test_a_step_of_a_missing_turn_stores_nothing(alice: Customer) -> None:
    conversation = make_conversation(alice)

    with pytest.raises(TurnNotRunning):
        step_write(hello_step(conversation.pk, uuid.uuid4()))

    assert not Message.objects.exists()
    assert not ModelCall.objects.exists()
    conversation.refresh_from_db()
    assert conversation.last_seq == 0


def test_a_step_stores_its_messages_and_model_calls_as_given(alice: Customer) -> None:
    conversation = make_conversation(alice)
    turn = Turn.objects.create(conversation=conversation, client_message_id="m1")
    calls = [
        (ModelCallRecord("model-a", "tool_use", 1200, 30, 1000, 7, 41, ""), "trace-a"),
        (ModelCallRecord("model-b", None, 0, 0, 0, 0, 9, "busy"), "trace-b"),
    ]
    content: list[dict[str, Any]] = [
        {"text": "Ünïcode \"quoted\" 'text'"},
        {"toolUse": {"toolUseId": "t", "input": {}}},
    ]
    note = NewMessage(
        MessageRole.USER, MessageKind.STAFF, [{"text": "A note"}], "c-1", user_of(alice).pk
    )

    stored = step_write(
        Step(
            conversation_id=conversation.pk,
            messages=[NewMessage(MessageRole.ASSISTANT, MessageKind.ASSISTANT, content), note],
            turn_id=turn.pk,
            model_calls=calls,
        )
    )

    fields = ("seq", "role", "kind", "content", "client_message_id", "author_id", "turn_id")
    rows = list(Message.objects.order_by("seq").values_list(*fields))
    assert rows == [
        (1, "assistant", "assistant", content, "", None, turn.pk),
        (2, "user", "staff", [{"text": "A note"}], "c-1", user_of(alice).pk, turn.pk),
    ]
    assert [(m.pk, m.seq) for m in stored] == list(Message.objects.values_list("pk", "seq"))
    usage = ModelCall.objects.order_by("latency_ms").values_list(
        "model_id",
        "stop_reason",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "latency_ms",
        "error",
        "trace_id",
        "turn_id",
    )
    assert list(usage) == [
        ("model-b", "", 0, 0, 0, 0, 9, "busy", "trace-b", turn.pk),
        ("model-a", "tool_use", 1200, 30, 1000, 7, 41, "", "trace-a", turn.pk),
    ]


def test_model_calls_without_their_turn_are_refused(alice: Customer) -> None:
    conversation = make_conversation(alice)

    with pytest.raises(ValueError, match="turn"):
        step_write(hello_step(conversation.pk, None))

    assert not ModelCall.objects.exists()


def test_a_step_of_another_conversations_turn_stores_nothing(
    alice: Customer, bob: Customer
) -> None:
    alices, bobs = make_conversation(alice), make_conversation(bob)
    turn = Turn.objects.create(conversation=alices)

    with pytest.raises(TurnNotRunning):
        step_write(hello_step(bobs.pk, turn.pk))

    assert not Message.objects.exists()
    assert not ModelCall.objects.exists()


def test_deleting_a_conversation_deletes_its_messages_and_model_calls(alice: Customer) -> None:
    conversation = make_conversation(alice)
    submit(conversation, alice, "Hello", model=ScriptedModel(text_response("<reply>Hi</reply>")))
    other = make_conversation(alice)
    submit(other, alice, "Hello", model=ScriptedModel(text_response("<reply>Hi</reply>")))

    conversation.delete()

    assert not Turn.objects.filter(conversation_id=conversation.pk).exists()
    assert not Message.objects.filter(conversation_id=conversation.pk).exists()
    assert not ModelCall.objects.filter(conversation_id=conversation.pk).exists()
    assert Message.objects.filter(conversation=other).count() == 2
    assert ModelCall.objects.filter(conversation=other).count() == 1


def test_deleting_a_turn_keeps_its_messages_and_calls_without_it(alice: Customer) -> None:
    conversation = make_conversation(alice)
    submit(conversation, alice, "Hello", model=ScriptedModel(text_response("<reply>Hi</reply>")))

    Turn.objects.all().delete()

    assert list(Message.objects.values_list("turn_id", flat=True)) == [None, None]
    assert list(ModelCall.objects.values_list("turn_id", flat=True)) == [None]


def test_a_conversation_runs_one_turn_at_a_time_whoever_writes_it(alice: Customer) -> None:
    conversation = make_conversation(alice)
    Turn.objects.create(conversation=conversation, client_message_id="c1")

    with pytest.raises(IntegrityError), transaction.atomic():
        Turn.objects.create(conversation=conversation, client_message_id="c2")
    Turn.objects.create(conversation=conversation, state=TurnState.COMPLETED)
    assert Turn.objects.filter(conversation=conversation).count() == 2


def start(
    conversation: Conversation, customer: Customer, events: Recorder, admission: Admission
) -> Started | None:
    """The message "Hello" (client id "m1") taken in on a read made earlier."""
    return turn_start(
        admission=admission,
        conversation_id=conversation.pk,
        user=user_of(customer),
        text="Hello",
        client_message_id="m1",
        tools=tools_for(conversation_id=conversation.pk, customer=customer, emit=events),
        emit=events,
    )


def test_a_turn_started_since_the_read_makes_the_message_wait(alice: Customer) -> None:
    conversation = make_conversation(alice)
    admission = admission_read(
        conversation=conversation, user=user_of(alice), client_message_id="m1"
    )
    Turn.objects.create(conversation=conversation, client_message_id="other")
    events = Recorder()

    assert start(conversation, alice, events, admission) is None

    assert events.of_type("error") == [{"type": "error", "text": BUSY_TEXT, "retryable": True}]
    assert not Message.objects.exists()
    assert Turn.objects.count() == 1


def test_the_same_message_accepted_since_the_read_is_dropped(alice: Customer) -> None:
    conversation = make_conversation(alice)
    admission = admission_read(
        conversation=conversation, user=user_of(alice), client_message_id="m1"
    )
    submit(
        conversation,
        alice,
        "Hello",
        model=ScriptedModel(text_response("<reply>Hi</reply>")),
        client_message_id="m1",
    )
    events = Recorder()

    assert start(conversation, alice, events, admission) is None

    assert events.events == []
    assert Message.objects.filter(kind=MessageKind.CUSTOMER).count() == 1


def test_a_person_taking_the_conversation_since_the_read_gets_the_message_alone(
    alice: Customer,
) -> None:
    conversation = make_conversation(alice)
    admission = admission_read(
        conversation=conversation, user=user_of(alice), client_message_id="m1"
    )
    Conversation.objects.filter(pk=conversation.pk).update(status=ConversationStatus.WITH_AGENT)

    started = start(conversation, alice, Recorder(), admission)

    assert started is not None
    assert started.turn is None
    assert [m.content for m in started.stored] == [[{"text": "Hello"}]]
    assert not Turn.objects.exists()


def spent_today(customer: Customer, settings: Any) -> None:
    settings.CHAT_DAILY_TOKEN_BUDGET = 1000
    spend_tokens(customer.pk, 1000)


def test_a_turn_counts_its_calls_tokens_for_the_customers_day(
    alice: Customer, bob: Customer
) -> None:
    conversation = make_conversation(alice)
    usage = {"inputTokens": 120, "outputTokens": 30, "totalTokens": 150}
    model = ScriptedModel(
        response(
            [tool_call("t-1", "get_order_by_id", {"order_id": "40001"})], "tool_use", usage=usage
        ),
        text_response("<reply>It ships Monday.</reply>", usage=usage),
    )
    make_order("40001", alice)

    submit(conversation, alice, "Where is order 40001?", model=model)
    submit(
        make_conversation(alice),
        alice,
        "Hi",
        model=ScriptedModel(text_response("<reply>Hi</reply>", usage=usage)),
    )
    spend_tokens(bob.pk, 7)

    assert tokens_used_today(customer_id=alice.pk) == 3 * 150
    assert tokens_used_today(customer_id=bob.pk) == 7
    assert DailyUsage.objects.get(customer=alice).day == timezone.localdate()


def test_a_spent_budget_refuses_the_message_before_anything_is_stored(
    alice: Customer, settings: Any
) -> None:
    conversation = make_conversation(alice)
    spent_today(alice, settings)
    events = Recorder()

    accepted = turn_submit(
        conversation=conversation,
        user=user_of(alice),
        text="Hello",
        client_message_id="m1",
        emit=events,
        client=ScriptedModel(),
    )

    assert accepted is False
    [refused] = events.of_type("error")
    assert (refused["code"], refused["retryable"]) == ("daily_budget_exhausted", False)
    assert not Message.objects.exists()
    assert not Turn.objects.filter(conversation=conversation).exists()


def test_a_spent_budget_still_lets_the_customer_write_to_a_person(
    alice: Customer, settings: Any
) -> None:
    conversation = make_conversation(alice)
    spent_today(alice, settings)
    Conversation.objects.filter(pk=conversation.pk).update(status=ConversationStatus.WITH_AGENT)
    events = Recorder()

    accepted = turn_submit(
        conversation=conversation,
        user=user_of(alice),
        text="Are you there?",
        client_message_id="m1",
        emit=events,
        client=ScriptedModel(),
    )

    assert accepted is True
    assert events.texts() == ["Are you there?"]
    assert not Turn.objects.filter(conversation=conversation).exists()


def test_the_written_out_first_read_says_what_the_orm_built_one_says(
    alice: Customer, bob: Customer
) -> None:
    # PostgreSQL runs the written-out read; other databases (SQLite in development) the ORM's.
    if connection.vendor != "postgresql":
        pytest.skip("the written-out read is PostgreSQL's")
    quiet, busy = make_conversation(alice), make_conversation(alice)
    submit(busy, alice, "Hello", model=ScriptedModel(text_response("<reply>Hi</reply>")))
    Turn.objects.create(conversation=busy, client_message_id="running", active_at=timezone.now())
    spend_tokens(alice.pk, 70)
    cases = [
        (quiet, alice, "m1"),  # nothing running, nothing accepted
        (busy, alice, "running"),  # a running turn, and its client id taken
        (busy, alice, "m9"),
        (busy, bob, "m1"),  # not bob's: no row
    ]
    Conversation.objects.filter(pk=quiet.pk).update(title="Where is my lamp?")

    for conversation, customer, client_id in cases:
        args = (conversation.pk, conversation.customer_id, user_of(customer).pk, client_id)
        assert _admission_row_sql(*args) == _admission_row_orm(*args)
    rows = [_admission_row_sql(c.pk, c.customer_id, user_of(u).pk, m) for c, u, m in cases]
    # The cases differ where they should, so equal answers are not equal by accident.
    assert rows[3] is None
    quiet_row, running_row, other_row = rows[0], rows[1], rows[2]
    assert quiet_row is not None
    assert running_row is not None
    assert other_row is not None
    assert (quiet_row["running_id"], quiet_row["turn_accepted"]) == (None, False)
    assert quiet_row["conversation_title"] == "Where is my lamp?"
    assert running_row["running_id"] is not None
    assert running_row["turn_accepted"]
    assert not other_row["turn_accepted"]
    assert quiet_row["tokens_today"] == tokens_used_today(customer_id=alice.pk) >= 70
