"""Migrations keep what an existing database holds.

The chat app is taken back to ``0004_handoff`` (the schema production ran before the app was
split into packages), rows of every kind are written with that schema's models, and migrating
forward to the newest migrations must leave each of them as it was. A later migration that
loses or rewrites data fails here.
"""

import uuid
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from chat.models import (
    Conversation,
    Feedback,
    HandoffEvent,
    Message,
    ModelCall,
    PendingAction,
    Turn,
)
from orders.models import Customer

BEFORE = [("chat", "0004_handoff")]


def migrate(targets: list[tuple[str, str]]) -> Any:
    """Migrates to ``targets``; returns the models of the schema there."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


def newest() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


@pytest.mark.django_db(transaction=True)
def test_rows_written_before_the_newest_migrations_survive_them() -> None:
    old = migrate(BEFORE)
    user = old.get_model("auth", "User").objects.create(username="mary_major")
    agent = old.get_model("auth", "User").objects.create(username="sam", is_staff=True)
    customer = old.get_model("orders", "Customer").objects.create(
        id="901235", name="Mary Major", email="mary@example.com", username="mary", user=user
    )
    conversation = old.get_model("chat", "Conversation").objects.create(
        id=uuid.uuid4(),
        owner=user,
        customer=customer,
        title="Cancel my order",
        status="with_agent",
        agent=agent,
        last_seq=4,
    )
    turn = old.get_model("chat", "Turn").objects.create(
        id=uuid.uuid4(),
        conversation=conversation,
        state="awaiting_confirmation",
        client_message_id="msg-00000001",
    )
    call = {"toolUseId": "t1", "name": "cancel_order", "input": {"order_id": "37129"}}
    contents = [
        ("user", "customer", [{"text": "Please cancel order 37129"}]),
        ("assistant", "assistant", [{"text": "<reply>Sure.</reply>"}, {"toolUse": call}]),
        ("assistant", "notice", [{"text": "Sam from our support team has joined."}]),
        ("user", "staff", [{"text": "[Support agent Sam]: Hello!"}]),
    ]
    message_model = old.get_model("chat", "Message")
    messages = [
        message_model.objects.create(
            conversation=conversation, turn=turn, seq=seq, role=role, kind=kind, content=content
        )
        for seq, (role, kind, content) in enumerate(contents, start=1)
    ]
    old.get_model("chat", "ModelCall").objects.create(
        conversation=conversation,
        turn=turn,
        model_id="demo",
        stop_reason="tool_use",
        input_tokens=120,
        output_tokens=30,
        latency_ms=640,
    )
    action = old.get_model("chat", "PendingAction").objects.create(
        id=uuid.uuid4(),
        conversation=conversation,
        turn=turn,
        tool_use_id="t1",
        tool_name="cancel_order",
        tool_input={"order_id": "37129"},
        results=[None],
        tool_uses=[call],
        summary="Cancel order 37129 (1 × Backpack)?",
    )
    old.get_model("chat", "HandoffEvent").objects.create(
        conversation=conversation,
        from_state="waiting_for_agent",
        to_state="with_agent",
        actor=agent,
        note="",
    )
    old.get_model("chat", "Feedback").objects.create(
        message=messages[1], conversation=conversation, user=user, score=1, comment="Quick!"
    )

    migrate(newest())

    assert Customer.objects.get(pk="901235").user_id == user.pk
    stored = Conversation.objects.get(pk=conversation.pk)
    assert (stored.owner_id, stored.customer_id, stored.status, stored.agent_id) == (
        user.pk,
        "901235",
        "with_agent",
        agent.pk,
    )
    assert (stored.title, stored.last_seq) == ("Cancel my order", 4)
    assert Turn.objects.get(pk=turn.pk).state == "awaiting_confirmation"
    assert [
        (m.seq, m.role, m.kind, m.content, m.turn_id)
        for m in Message.objects.filter(conversation=stored).order_by("seq")
    ] == [
        (seq, role, kind, content, turn.pk)
        for seq, (role, kind, content) in enumerate(contents, start=1)
    ]
    assert ModelCall.objects.get(conversation=stored).input_tokens == 120
    pending = PendingAction.objects.get(pk=action.pk)
    assert (pending.state, pending.tool_uses, pending.results) == ("pending", [call], [None])
    event = HandoffEvent.objects.get(conversation=stored)
    assert (event.from_state, event.to_state, event.actor_id) == (
        "waiting_for_agent",
        "with_agent",
        agent.pk,
    )
    rating = Feedback.objects.get(conversation=stored)
    assert (rating.message_id, rating.score, rating.comment) == (messages[1].pk, 1, "Quick!")
