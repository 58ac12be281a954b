"""Turns stored step by step: idempotent, confirmed before a cancel, recoverable after a crash."""

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.utils import timezone

from chat.engine.client import ModelBusy
from chat.engine.demo.model import DemoModel
from chat.engine.history import violations
from chat.live.confirmations import KEPT_TEXT, NOT_CONFIRMED_TEXT, typed_decision
from chat.live.conversations import (
    ConversationNotFound,
    conversation_get,
    conversation_list,
    conversation_start,
    events_since,
)
from chat.live.intake import BUSY_TEXT
from chat.live.recovery import INTERRUPTED_NOTICE, stale_after, turns_recover_interrupted
from chat.live.turns import action_decide, turn_submit
from chat.models import (
    Conversation,
    Message,
    MessageKind,
    ModelCall,
    PendingAction,
    PendingActionState,
    Turn,
    TurnState,
)
from orders.models import Customer, OrderEvent, OrderStatus
from tests.chat.factories import (
    Recorder,
    make_conversation,
    stored_history,
    submit,
    tool_results,
    user_of,
)
from tests.chat.scripted import ScriptedModel, text_response, tool_call, tool_response
from tests.conftest import make_order

pytestmark = pytest.mark.django_db


def reply(text: str) -> dict[str, Any]:
    return text_response(f"<thinking>Answering.</thinking><reply>{text}</reply>")


def cancel_call(order_id: str = "40001", tool_use_id: str = "t-cancel") -> dict[str, Any]:
    return tool_response(tool_call(tool_use_id, "cancel_order", {"order_id": order_id}))


def paused_on_cancel(alice: Customer) -> tuple[Conversation, PendingAction]:
    """Alice asked to cancel her Processing order 40001; the app waits for her yes."""
    make_order("40001", alice)
    conversation = make_conversation(alice)
    submit(conversation, alice, "Please cancel order 40001", model=ScriptedModel(cancel_call()))
    return conversation, PendingAction.objects.get()


def decide(
    conversation: Conversation, customer: Customer, action: PendingAction, approve: bool, model: Any
) -> tuple[bool, Recorder]:
    events = Recorder()
    done = action_decide(
        conversation=conversation,
        user=user_of(customer),
        action_id=str(action.pk),
        approve=approve,
        emit=events,
        client=model,
    )
    return done, events


def model_history(conversation: Conversation) -> list[dict[str, Any]]:
    return [
        {"role": m["role"], "content": m["content"]}
        for m in stored_history(conversation)
        if m["kind"] != MessageKind.NOTICE
    ]


# --- Conversations ------------------------------------------------------------------------------


def test_it_hides_another_customers_conversation(alice: Customer, bob: Customer) -> None:
    alices = make_conversation(alice)
    make_order("40001", alice)

    with pytest.raises(ConversationNotFound):
        conversation_get(user=user_of(bob), conversation_id=alices.pk)
    with pytest.raises(ConversationNotFound):
        conversation_get(user=user_of(bob), conversation_id="not-a-uuid")
    with pytest.raises(ConversationNotFound):
        turn_submit(
            conversation=alices,
            user=user_of(bob),
            text="hi",
            client_message_id="x1",
            emit=Recorder(),
        )
    with pytest.raises(ConversationNotFound):
        action_decide(
            conversation=alices,
            user=user_of(bob),
            action_id=uuid.uuid4(),
            approve=True,
            emit=Recorder(),
        )
    assert conversation_list(user=user_of(bob)) == []
    assert not Message.objects.exists()


def test_bob_cannot_approve_alices_cancellation(alice: Customer, bob: Customer) -> None:
    conversation, action = paused_on_cancel(alice)

    with pytest.raises(ConversationNotFound):
        decide(conversation, bob, action, True, ScriptedModel())

    action.refresh_from_db()
    assert action.state == PendingActionState.PENDING
    assert not OrderEvent.objects.exists()


def test_only_customers_start_conversations(alice: Customer, support: User) -> None:
    with pytest.raises(PermissionDenied):
        conversation_start(user=support)

    started = conversation_start(user=user_of(alice))

    assert (started.owner, started.customer, started.status) == (alice.user, alice, "with_bot")
    assert conversation_list(user=user_of(alice)) == [started]
    assert conversation_get(user=user_of(alice), conversation_id=str(started.pk)) == started


# --- Submitting -------------------------------------------------------------------------------


def test_a_resent_message_is_accepted_once(alice: Customer) -> None:
    conversation = make_conversation(alice)
    model = ScriptedModel(reply("Hello!"))  # a second model call would fail the test
    submit(conversation, alice, "Hello", model=model, client_message_id="msg-0001")

    again = turn_submit(
        conversation=conversation,
        user=user_of(alice),
        text="Hello",
        client_message_id="msg-0001",
        emit=Recorder(),
        client=model,
    )

    assert again is False
    assert Turn.objects.count() == 1
    assert Message.objects.filter(kind=MessageKind.CUSTOMER).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_resends_start_one_turn(alice: Customer) -> None:
    if connection.vendor != "postgresql":
        # SQLite's in-memory test database (shared cache) fails on table locks instead of waiting.
        pytest.skip("needs PostgreSQL")
    conversation = make_conversation(alice)
    barrier = threading.Barrier(4)
    accepted: list[bool] = []

    def send() -> None:
        try:
            barrier.wait()
            accepted.append(
                turn_submit(
                    conversation=conversation,
                    user=user_of(alice),
                    text="I need help with an order",
                    client_message_id="same-id-01",
                    emit=Recorder(),
                    client=DemoModel(delay_seconds=0),
                )
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(accepted) == [False, False, False, True]
    assert Turn.objects.count() == 1
    assert Message.objects.filter(kind=MessageKind.CUSTOMER).count() == 1


def test_a_message_during_a_running_turn_is_refused_and_can_be_sent_later(alice: Customer) -> None:
    conversation = make_conversation(alice)
    Turn.objects.create(
        conversation=conversation, client_message_id="busy-1", active_at=timezone.now()
    )
    events = Recorder()

    accepted = turn_submit(
        conversation=conversation,
        user=user_of(alice),
        text="Hello?",
        client_message_id="later-1",
        emit=events,
        client=ScriptedModel(),
    )

    assert accepted is False
    assert events.of_type("error") == [{"type": "error", "text": BUSY_TEXT, "retryable": True}]
    assert not Message.objects.exists()
    Turn.objects.filter(client_message_id="busy-1").update(state=TurnState.COMPLETED)
    submit(
        conversation,
        alice,
        "Hello?",
        model=ScriptedModel(reply("Hi!")),
        client_message_id="later-1",
    )
    assert Message.objects.count() == 2


def test_each_step_is_stored_and_announced_as_it_happens(alice: Customer) -> None:
    make_order("40001", alice, status=OrderStatus.SHIPPED)
    conversation = make_conversation(alice)
    model = ScriptedModel(
        tool_response(tool_call("t1", "get_order_by_id", {"order_id": "40001"})),
        reply("Your order 40001 has shipped."),
    )

    events = submit(conversation, alice, "Where is order 40001?", model=model)

    stored = stored_history(conversation)
    assert [(m["seq"], m["role"], m["kind"]) for m in stored] == [
        (1, "user", "customer"),
        (2, "assistant", "assistant"),
        (3, "user", "tool_results"),
        (4, "assistant", "assistant"),
    ]
    assert stored[2]["content"][0]["toolResult"]["content"] == [
        {
            "json": {
                "id": "40001",
                "customer_id": alice.id,
                "product": "Sunglasses",
                "quantity": 2,
                "price": "49.99",
                "status": "Shipped",
            }
        }
    ]
    kinds = [e["type"] for e in events.events]
    assert kinds[:2] == ["message", "turn"]
    assert kinds[-1] == "turn"
    assert events.of_type("status") == [
        {"type": "status", "turn": events.events[1]["turn"], "text": "Looking up order 40001…"}
    ]
    assert "".join(events.texts("delta")) == "Your order 40001 has shipped."
    assert [(e["seq"], e["role"], e["text"]) for e in events.of_type("message")] == [
        (1, "customer", "Where is order 40001?"),
        (4, "assistant", "Your order 40001 has shipped."),
    ]
    assert events.events[-1] == {
        "type": "turn",
        "turn": events.events[1]["turn"],
        "state": "ended",
        "outcome": "answered",
        "last_seq": 4,
    }
    assert ModelCall.objects.count() == 2
    assert Turn.objects.get().state == TurnState.COMPLETED
    conversation.refresh_from_db()
    assert conversation.last_seq == 4
    assert conversation.title == "Where is order 40001?"


def test_seqs_count_up_by_one_across_turns(alice: Customer) -> None:
    conversation = make_conversation(alice)
    model = DemoModel(delay_seconds=0)
    for text in ["Hello", "My order is 99999", "What are my orders?", "zzz"]:
        submit(conversation, alice, text, model=model)
    submit(conversation, alice, "again", model=ScriptedModel(ModelBusy()))

    seqs = list(
        Message.objects.filter(conversation=conversation)
        .order_by("id")
        .values_list("seq", flat=True)
    )
    assert seqs == list(range(1, len(seqs) + 1))
    assert [e["seq"] for e in events_since(conversation=conversation, after_seq=3)] == sorted(
        e["seq"] for e in events_since(conversation=conversation, after_seq=0) if e["seq"] > 3
    )


def test_a_failed_turn_leaves_a_notice_and_the_next_turn_works(alice: Customer) -> None:
    conversation = make_conversation(alice)

    events = submit(conversation, alice, "Hello", model=ScriptedModel(ModelBusy()))

    assert events.of_type("message")[-1]["role"] == "notice"
    assert events.of_type("message")[-1]["text"] == ModelBusy.customer_message
    assert events.events[-1]["outcome"] == "failed"
    assert events.events[-1]["retryable"] is True
    assert Turn.objects.get().state == TurnState.FAILED

    model = ScriptedModel(reply("Hi!"))
    submit(conversation, alice, "Hello again", model=model)

    # The model never sees the notice; the two customer messages reach it as one.
    assert model.requests[0]["messages"] == [
        {"role": "user", "content": [{"text": "Hello"}, {"text": "Hello again"}]}
    ]


# --- The confirmation gate ----------------------------------------------------------------------


def test_a_cancel_call_waits_for_the_customer_and_cancels_nothing(alice: Customer) -> None:
    make_order("40001", alice)
    conversation = make_conversation(alice)

    events = submit(
        conversation, alice, "Please cancel order 40001", model=ScriptedModel(cancel_call())
    )

    action = PendingAction.objects.get()
    assert (action.state, action.tool_name, action.tool_input) == (
        "pending",
        "cancel_order",
        {"order_id": "40001"},
    )
    assert action.summary == "Cancel order 40001 (2 × Sunglasses)?"
    assert events.of_type("confirm") == [
        {"type": "confirm", "action_id": str(action.pk), "text": action.summary}
    ]
    assert events.events[-1]["outcome"] == "awaiting_confirmation"
    assert Turn.objects.get().state == TurnState.AWAITING_CONFIRMATION
    assert alice.orders.get().status == OrderStatus.PROCESSING
    assert not OrderEvent.objects.exists()
    # A reload shows the question again.
    assert events_since(conversation=conversation, after_seq=0)[-1]["type"] == "confirm"


def test_approving_cancels_once_and_the_model_hears_the_result(alice: Customer) -> None:
    conversation, action = paused_on_cancel(alice)
    model = ScriptedModel(reply("Done: order 40001 is cancelled."))

    done, events = decide(conversation, alice, action, True, model)
    again, _ = decide(conversation, alice, action, True, ScriptedModel())

    assert (done, again) == (True, False)
    assert alice.orders.get().status == OrderStatus.CANCELLED
    event = OrderEvent.objects.get()
    assert event.conversation_id == conversation.pk
    result = tool_results(model)[0]
    assert (result["toolUseId"], result["status"]) == ("t-cancel", "success")
    assert result["content"][0]["json"]["result"] == "Cancelled the order"
    assert events.of_type("action_resolved") == [
        {"type": "action_resolved", "action_id": str(action.pk), "approved": True}
    ]
    assert events.texts()[-1] == "Done: order 40001 is cancelled."
    action.refresh_from_db()
    assert (action.state, action.decided_by) == (PendingActionState.APPROVED, alice.user)
    assert Turn.objects.get().state == TurnState.COMPLETED


def test_declining_keeps_the_order_and_tells_the_model(alice: Customer) -> None:
    conversation, action = paused_on_cancel(alice)
    model = ScriptedModel(reply("OK, I kept it."))

    done, _ = decide(conversation, alice, action, False, model)

    assert done
    assert alice.orders.get().status == OrderStatus.PROCESSING
    assert not OrderEvent.objects.exists()
    result = tool_results(model)[0]
    assert result["status"] == "error"
    assert result["content"] == [{"text": KEPT_TEXT}]
    action.refresh_from_db()
    assert action.state == PendingActionState.DECLINED


def test_a_typed_yes_is_bound_to_the_pending_cancellation(alice: Customer) -> None:
    conversation, action = paused_on_cancel(alice)
    model = ScriptedModel(reply("Done."))

    events = submit(conversation, alice, "Yes please!", model=model)

    assert alice.orders.get().status == OrderStatus.CANCELLED
    assert OrderEvent.objects.count() == 1
    last = model.requests[0]["messages"][-1]
    assert last["content"][0]["toolResult"]["status"] == "success"
    assert last["content"][1] == {"text": "Yes please!"}
    action.refresh_from_db()
    assert action.state == PendingActionState.APPROVED
    assert events.of_type("action_resolved")[0]["approved"] is True
    assert events.of_type("message")[0]["text"] == "Yes please!"
    # The click that arrives late changes nothing.
    assert decide(conversation, alice, action, True, ScriptedModel())[0] is False
    assert OrderEvent.objects.count() == 1


@pytest.mark.parametrize("answer", ["no", "Keep it.", "Don't cancel it"])
def test_a_typed_no_declines_the_pending_cancellation(alice: Customer, answer: str) -> None:
    conversation, action = paused_on_cancel(alice)
    model = ScriptedModel(reply("OK."))

    submit(conversation, alice, answer, model=model)

    assert alice.orders.get().status == OrderStatus.PROCESSING
    assert tool_results(model)[0]["content"] == [{"text": KEPT_TEXT}]
    action.refresh_from_db()
    assert action.state == PendingActionState.DECLINED


def test_an_unrelated_message_leaves_the_order_alone_and_roles_still_alternate(
    alice: Customer,
) -> None:
    conversation, action = paused_on_cancel(alice)
    model = ScriptedModel(reply("Here is what I know."))

    submit(conversation, alice, "Actually, what is my order 40001?", model=model)

    assert alice.orders.get().status == OrderStatus.PROCESSING
    messages = model.requests[0]["messages"]
    assert violations(messages) == []
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[-1]["content"][0]["toolResult"]["content"] == [{"text": NOT_CONFIRMED_TEXT}]
    assert messages[-1]["content"][1] == {"text": "Actually, what is my order 40001?"}
    action.refresh_from_db()
    assert action.state == PendingActionState.EXPIRED
    # The stored history stays one Converse accepts once the customer writes again.
    assert (
        violations([*model_history(conversation), {"role": "user", "content": [{"text": "Hi"}]}])
        == []
    )


@pytest.mark.parametrize(
    ("text", "decision"),
    [
        ("yes", True),
        ("Y", True),
        ("Yes, please.", True),
        ("confirm", True),
        ("no", False),
        ("keep it", False),
        ("No thanks", False),
        ("yes but first tell me the price", None),
        ("what?", None),
        ("cancel 32057", None),
    ],
)
def test_typed_decisions_are_simple_and_unambiguous(text: str, decision: bool | None) -> None:
    assert typed_decision(text) is decision


# --- Broken histories and recovery -------------------------------------------------------------


def store(conversation: Conversation, *messages: tuple[str, str, list[dict[str, Any]]]) -> None:
    for seq, (role, kind, content) in enumerate(messages, start=conversation.last_seq + 1):
        Message.objects.create(
            conversation=conversation, seq=seq, role=role, kind=kind, content=content
        )
        conversation.last_seq = seq
    conversation.save()


def test_a_history_broken_by_a_crash_is_repaired_and_the_next_turn_works(alice: Customer) -> None:
    conversation = make_conversation(alice)
    dangling = {
        "toolUse": {
            "toolUseId": "t-lost",
            "name": "get_order_by_id",
            "input": {"order_id": "40001"},
        }
    }
    store(
        conversation,
        ("user", "customer", [{"text": "Where is order 40001?"}]),
        ("assistant", "assistant", [{"text": "<thinking>Looking.</thinking>"}, dangling]),
        ("user", "customer", [{"text": "Hello?"}]),
        ("user", "customer", [{"text": "Anyone there?"}]),
    )
    model = ScriptedModel(reply("Sorry about that. How can I help?"))

    events = submit(conversation, alice, "Please answer", model=model)

    messages = model.requests[0]["messages"]
    assert violations(messages) == []  # ScriptedModel checks this too
    assert messages[-1]["content"][0]["toolResult"]["toolUseId"] == "t-lost"
    assert events.events[-1]["outcome"] == "answered"
    assert events.texts()[-1] == "Sorry about that. How can I help?"


def test_recovery_closes_turns_a_restart_left_running(alice: Customer, bob: Customer) -> None:
    conversation = make_conversation(alice)
    long_ago = timezone.now() - stale_after() - timedelta(seconds=1)
    crashed = Turn.objects.create(
        conversation=conversation, client_message_id="c1", active_at=long_ago
    )
    store(
        conversation,
        ("user", "customer", [{"text": "Where is order 40001?"}]),
        (
            "assistant",
            "assistant",
            [
                {
                    "toolUse": {
                        "toolUseId": "t-lost",
                        "name": "get_order_by_id",
                        "input": {"order_id": "40001"},
                    }
                }
            ],
        ),
    )
    # A turn still making progress in another process is left alone.
    bobs = make_conversation(bob)
    live = Turn.objects.create(conversation=bobs, client_message_id="c2", active_at=timezone.now())

    assert turns_recover_interrupted() == 1
    assert turns_recover_interrupted() == 0

    crashed.refresh_from_db()
    live.refresh_from_db()
    assert (crashed.state, crashed.error_kind) == (TurnState.INTERRUPTED, "interrupted")
    assert live.state == TurnState.RUNNING
    history = model_history(conversation)
    assert history[-1]["content"][0]["toolResult"]["status"] == "error"
    shown = events_since(conversation=conversation, after_seq=0)
    assert shown[-1]["role"] == "notice"
    assert shown[-1]["text"] == INTERRUPTED_NOTICE

    model = ScriptedModel(reply("Let me try again."))
    submit(conversation, alice, "Where is order 40001?", model=model)
    assert violations(model.requests[0]["messages"]) == []


def test_a_stale_running_turn_does_not_block_the_conversation(alice: Customer) -> None:
    conversation = make_conversation(alice)
    long_ago = timezone.now() - stale_after() - timedelta(seconds=1)
    Turn.objects.create(conversation=conversation, client_message_id="c1", active_at=long_ago)

    submit(conversation, alice, "Hello", model=ScriptedModel(reply("Hi!")))

    assert sorted(Turn.objects.values_list("state", flat=True)) == [
        TurnState.COMPLETED,
        TurnState.INTERRUPTED,
    ]


def test_the_recover_turns_command_closes_stale_turns(alice: Customer) -> None:
    from io import StringIO

    from django.core.management import call_command

    conversation = make_conversation(alice)
    Turn.objects.create(conversation=conversation, client_message_id="c1", active_at=timezone.now())
    out = StringIO()

    call_command("recover_turns", stdout=out)
    assert Turn.objects.get().state == TurnState.RUNNING
    call_command("recover_turns", "--all", stdout=out)

    assert Turn.objects.get().state == TurnState.INTERRUPTED
    assert out.getvalue().splitlines() == [
        "Recovered 0 interrupted turns.",
        "Recovered 1 interrupted turn.",
    ]
