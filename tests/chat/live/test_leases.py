"""Turns that can't get stuck: leases, owners, recovery by the server itself, and resends."""

import copy
import os
import subprocess
import sys
import threading
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import connection, connections
from django.utils import timezone

from chat.engine.history import violations
from chat.live import leases
from chat.live.recovery import INTERRUPTED_NOTICE, turn_recover, turns_recover
from chat.live.turns import INTERNAL_ERROR_NOTICE, turn_submit
from chat.models import Conversation, Message, MessageKind, Turn, TurnState
from orders.models import Customer
from tests.chat.factories import Recorder, make_conversation, stored_history, submit, user_of
from tests.chat.scripted import ScriptedModel, text_response, tool_call, tool_response
from tests.chat.sockets import (
    conversation_path,
    database_sessions_closed,  # noqa: F401 - a fixture
    signed_in_socket,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def own_channel_layer(settings: Any) -> None:
    # The Redis layer's locks belong to one event loop, and each async test runs on a new one.
    settings.CHANNEL_LAYERS = copy.deepcopy(settings.CHANNEL_LAYERS)


def reply(text: str) -> dict[str, Any]:
    return text_response(f"<thinking>Answering.</thinking><reply>{text}</reply>")


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def running_turn(conversation: Conversation, client_message_id: str, **fields: Any) -> Turn:
    """A turn left "running" with the customer's message stored, as a crash leaves it."""
    turn = Turn.objects.create(
        conversation=conversation, client_message_id=client_message_id, **fields
    )
    Message.objects.create(
        conversation=conversation,
        turn=turn,
        seq=1,
        role="user",
        kind=MessageKind.CUSTOMER,
        content=[{"text": "Where is order 40001?"}],
        client_message_id=client_message_id,
    )
    Conversation.objects.filter(pk=conversation.pk).update(last_seq=1)
    return turn


def test_a_turn_whose_process_is_gone_is_closed_at_once(alice: Customer) -> None:
    conversation = make_conversation(alice)
    host = leases.owner_id().split(":")[0]
    turn = running_turn(
        conversation,
        "c1",
        owner=f"{host}:{dead_pid()}:0123456789ab",
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )

    assert [closed.turn_id for closed in turns_recover()] == [turn.pk]
    turn.refresh_from_db()
    assert (turn.state, turn.error_kind) == (TurnState.INTERRUPTED, "interrupted")


def test_an_earlier_start_of_this_process_id_is_gone_too(alice: Customer) -> None:
    pid, _ = leases.owner_id().rsplit(":", 1)
    assert leases.owner_gone(f"{pid}:0123456789ab")
    assert not leases.owner_gone(leases.owner_id())


def test_a_turn_whose_lease_lapsed_is_closed_and_a_live_one_is_not(
    alice: Customer, bob: Customer
) -> None:
    lapsed = running_turn(
        make_conversation(alice),
        "c1",
        owner="another-host:1:0123456789ab",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    live = Turn.objects.create(
        conversation=make_conversation(bob),
        client_message_id="c2",
        owner="another-host:1:0123456789ab",
        lease_expires_at=timezone.now() + timedelta(seconds=30),
    )

    assert [closed.turn_id for closed in turns_recover()] == [lapsed.pk]
    live.refresh_from_db()
    assert live.state == TurnState.RUNNING


def test_a_turn_this_process_runs_is_never_closed_by_its_own_recovery(alice: Customer) -> None:
    turn = running_turn(
        make_conversation(alice), "c1", lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    with leases.held(turn.pk):
        assert turns_recover() == []
    assert [closed.turn_id for closed in turns_recover()] == [turn.pk]


def test_recovery_tells_the_tabs_the_turn_ended_and_asks_to_send_again(alice: Customer) -> None:
    turn = running_turn(
        make_conversation(alice), "c1", lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    [closed] = turns_recover()

    notice, ended = closed.events
    assert (notice["role"], notice["text"]) == ("notice", INTERRUPTED_NOTICE)
    assert ended == {
        "type": "turn",
        "turn": str(turn.pk),
        "state": "ended",
        "outcome": "failed",
        "error_kind": "interrupted",
        "retryable": True,
        "last_seq": notice["seq"],
    }


def test_a_message_resent_after_its_turn_died_is_answered_not_dropped(alice: Customer) -> None:
    conversation = make_conversation(alice)
    turn = running_turn(conversation, "c1", lease_expires_at=timezone.now() - timedelta(seconds=1))
    Message.objects.create(
        conversation=conversation,
        turn=turn,
        seq=2,
        role="assistant",
        kind=MessageKind.ASSISTANT,
        content=[{"toolUse": {"toolUseId": "t-1", "name": "get_order_by_id", "input": {}}}],
    )
    Conversation.objects.filter(pk=conversation.pk).update(last_seq=2)
    model = ScriptedModel(reply("Order 40001 is on its way."))

    text = "Where is order 40001?"
    events = submit(conversation, alice, text, model=model, client_message_id="c1")

    assert events.events[-1]["outcome"] == "answered"
    assert violations(model.requests[0]["messages"]) == []
    customer_messages = Message.objects.filter(conversation=conversation, kind=MessageKind.CUSTOMER)
    assert customer_messages.count() == 1  # answered as stored, not stored twice
    assert [t.state for t in Turn.objects.filter(conversation=conversation)] == [
        TurnState.INTERRUPTED,
        TurnState.COMPLETED,
    ]
    # Answered now: the same id again is a repeat.
    assert not resend(conversation, alice, text, "c1")


def resend(conversation: Conversation, customer: Customer, text: str, client_id: str) -> bool:
    model = ScriptedModel()
    accepted = turn_submit(
        conversation=conversation,
        user=user_of(customer),
        text=text,
        client_message_id=client_id,
        emit=Recorder(),
        client=model,
    )
    assert accepted or model.requests == []
    return accepted


def test_a_resend_of_a_message_that_was_answered_is_still_a_repeat(alice: Customer) -> None:
    conversation = make_conversation(alice)
    submit(conversation, alice, "Hello", model=ScriptedModel(reply("Hi!")), client_message_id="c1")

    assert not resend(conversation, alice, "Hello", "c1")
    assert Turn.objects.filter(conversation=conversation).count() == 1


def test_a_turn_closed_by_recovery_while_it_ran_stores_nothing_more(alice: Customer) -> None:
    conversation = make_conversation(alice)
    closed_midway: list[bool] = []

    class ClosedWhileCalling(ScriptedModel):
        def converse_stream(self, **kwargs: Any) -> dict[str, Any]:
            # Another process's recovery closes the turn while this one waits on the model.
            turn = Turn.objects.get(conversation=conversation, state=TurnState.RUNNING)
            closed_midway.append(turn_recover(turn.pk) is not None)
            return super().converse_stream(**kwargs)

    model = ClosedWhileCalling(
        tool_response(tool_call("t-1", "get_order_by_id", {"order_id": "40001"}))
    )
    events = submit(conversation, alice, "Where is order 40001?", model=model)

    assert closed_midway == [True]
    assert [m["kind"] for m in stored_history(conversation)] == ["customer", "notice"]
    assert Turn.objects.get().state == TurnState.INTERRUPTED
    assert not [e for e in events.events if e.get("state") == "ended"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("database_sessions_closed")
def test_a_turn_whose_connection_dies_mid_turn_ends_with_a_try_again_notice(
    alice: Customer,
) -> None:
    conversation = make_conversation(alice)

    class ConnectionKilled(ScriptedModel):
        def converse_stream(self, **kwargs: Any) -> dict[str, Any]:
            # The database drops this turn's connection, as a restart does.
            pid = connection.connection.info.backend_pid
            killer = threading.Thread(target=terminate, args=(pid,))
            killer.start()
            killer.join()
            return super().converse_stream(**kwargs)

    events = submit(
        conversation, alice, "Hello", model=ConnectionKilled(reply("Hi!")), client_message_id="c1"
    )

    turn = Turn.objects.get()
    assert (turn.state, turn.error_kind) == (TurnState.FAILED, "internal")
    assert [m["text"] for m in events.of_type("message")][-1] == INTERNAL_ERROR_NOTICE
    assert events.events[-1]["state"] == "ended"
    # The next message works.
    submit(conversation, alice, "Hello again", model=ScriptedModel(reply("Hi!")))
    assert Turn.objects.filter(state=TurnState.COMPLETED).count() == 1


def terminate(pid: int) -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    connections["default"].close()


def test_recover_turns_lists_dead_turns_in_a_dry_run_and_closes_them_otherwise(
    alice: Customer,
) -> None:
    turn = running_turn(
        make_conversation(alice), "c1", lease_expires_at=timezone.now() - timedelta(seconds=5)
    )
    out = StringIO()

    call_command("recover_turns", "--dry-run", stdout=out)
    assert Turn.objects.get().state == TurnState.RUNNING
    call_command("recover_turns", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"{turn.pk} conversation {turn.conversation_id}")
    assert lines[1:] == ["Would recover 1 turn.", "Recovered 1 interrupted turn."]
    assert Turn.objects.get().state == TurnState.INTERRUPTED


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("database_sessions_closed")
async def test_the_servers_sweep_closes_a_dead_turn_and_the_open_socket_hears_it(
    alice: Customer,
) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    await sync_to_async(running_turn)(
        conversation, "c1", lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert alice.user is not None

    socket = await signed_in_socket(alice.user, conversation.pk)
    assert socket.connected, conversation_path(conversation.pk)
    await socket.send({"type": "resume", "after_seq": 0})
    notice = await socket.receive_until(lambda event: event.get("role") == "notice")

    assert notice["text"] == INTERRUPTED_NOTICE
    turn = await Turn.objects.aget(conversation=conversation)
    assert turn.state == TurnState.INTERRUPTED
    await socket.close()


def test_owner_ids_name_this_host_and_process() -> None:
    host, pid, start = leases.owner_id().split(":")
    assert host
    assert (int(pid), len(start)) == (os.getpid(), 12)
