"""Closing dead turns: their process died, or lost the database, while they ran.

A turn is dead once its lease lapsed or its owner is a process of this host that is gone
(``chat.live.leases``); turns from before leases count as dead after ``stale_after()`` without
progress. Every server process closes them by itself (``chat.live.sweep``), and a new message or
socket of the conversation does so at once: open tool calls get error results, so the history
stays valid, the turn becomes "interrupted", and the customer is asked to send the message
again. That message, resent with the same client id, is answered (``unanswered_turn``).
"""

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from chat.live.conversations import message_event
from chat.live.engine_config import stale_after
from chat.live.leases import held_ids, local_owners, owner_gone
from chat.live.storage import Emit, NewMessage, messages_append, notice, safe_emit
from chat.models import (
    MODEL_KINDS,
    Conversation,
    Message,
    MessageKind,
    MessageRole,
    Turn,
    TurnState,
)

logger = logging.getLogger(__name__)

INTERRUPTED_RESULT_TEXT = "The reply was interrupted before this tool finished."
INTERRUPTED_NOTICE = "This reply did not finish. Please send your message again."
INTERRUPTED = "interrupted"


@dataclass
class Recovered:
    """A turn closed by recovery, and what the conversation's open tabs should hear of it."""

    conversation_id: uuid.UUID
    turn_id: uuid.UUID
    events: list[dict[str, Any]] = field(default_factory=list)


def stale_turns(
    *, conversation_id: uuid.UUID | None = None, older_than: timedelta | None = None
) -> list[Turn]:
    """Running turns that are dead: lease lapsed, owner gone, or (turns without a lease) no
    progress for ``older_than`` (default ``stale_after()``). Turns this process runs are never
    dead. ``older_than=timedelta(0)`` counts every running turn of other processes."""
    now = timezone.now()
    cutoff = now - (stale_after() if older_than is None else older_than)
    running = Turn.objects.filter(state=TurnState.RUNNING)
    if conversation_id is not None:
        running = running.filter(conversation_id=conversation_id)
    if older_than == timedelta(0):
        candidates = list(
            running.only("pk", "owner", "conversation_id", "lease_expires_at", "active_at")
        )
    else:
        candidates = list(
            running.filter(
                Q(lease_expires_at__lte=now)
                | Q(lease_expires_at__isnull=True, active_at__lte=cutoff)
                | local_owners()
            ).only("pk", "owner", "conversation_id", "lease_expires_at", "active_at")
        )
    mine = held_ids()
    return [
        turn
        for turn in candidates
        if turn.pk not in mine
        and (older_than == timedelta(0) or _expired(turn, now=now, cutoff=cutoff))
    ]


def turn_dead(turn: Turn) -> bool:
    """Whether a running turn (its owner, lease and ``active_at`` loaded) is dead, as
    ``stale_turns`` judges it."""
    now = timezone.now()
    return turn.pk not in held_ids() and _expired(turn, now=now, cutoff=now - stale_after())


def _expired(turn: Turn, *, now: datetime, cutoff: datetime) -> bool:
    return (
        (turn.lease_expires_at is not None and turn.lease_expires_at <= now)
        or (
            turn.lease_expires_at is None
            and turn.active_at is not None
            and turn.active_at <= cutoff
        )
        or (bool(turn.owner) and owner_gone(turn.owner))
    )


def turn_recover(turn_id: uuid.UUID) -> Recovered | None:
    """Closes one running turn as "interrupted"; None when it is no longer running."""
    with transaction.atomic():
        turn = Turn.objects.select_for_update().filter(pk=turn_id, state=TurnState.RUNNING).first()
        if turn is None:
            return None
        Conversation.objects.select_for_update().only("pk").get(pk=turn.conversation_id)
        repairs: list[NewMessage] = []
        last = (
            Message.objects.filter(conversation_id=turn.conversation_id, kind__in=MODEL_KINDS)
            .order_by("-seq")
            .first()
        )
        if last is not None and last.role == MessageRole.ASSISTANT:
            calls = [
                b["toolUse"]["toolUseId"]
                for b in last.content
                if isinstance(b, dict) and "toolUse" in b
            ]
            if calls:
                results = [
                    {
                        "toolResult": {
                            "toolUseId": call,
                            "content": [{"text": INTERRUPTED_RESULT_TEXT}],
                            "status": "error",
                        }
                    }
                    for call in calls
                ]
                repairs.append(NewMessage(MessageRole.USER, MessageKind.TOOL_RESULTS, results))
        repairs.append(notice(INTERRUPTED_NOTICE))
        stored = messages_append(turn.conversation_id, turn, repairs)
        turn.state = TurnState.INTERRUPTED
        turn.outcome = "failed"
        turn.error_kind = INTERRUPTED
        turn.ended_at = timezone.now()
        turn.save(update_fields=["state", "outcome", "error_kind", "ended_at"])
    logger.warning("Closed turn %s: its process stopped (owner %s)", turn_id, turn.owner or "-")
    events = [event for event in map(message_event, stored) if event is not None]
    events.append(
        {
            "type": "turn",
            "turn": str(turn_id),
            "state": "ended",
            "outcome": "failed",
            "error_kind": INTERRUPTED,
            "retryable": True,
            **({"last_seq": stored[-1].seq} if stored else {}),
        }
    )
    return Recovered(conversation_id=turn.conversation_id, turn_id=turn_id, events=events)


def turns_recover(
    *, conversation_id: uuid.UUID | None = None, older_than: timedelta | None = None
) -> list[Recovered]:
    """Closes the dead turns (of one conversation, or all); see ``stale_turns``."""
    closed = (
        turn_recover(turn.pk)
        for turn in stale_turns(conversation_id=conversation_id, older_than=older_than)
    )
    return [recovered for recovered in closed if recovered is not None]


def turns_recover_interrupted(*, older_than: timedelta | None = None) -> int:
    """Closes every dead turn; returns how many (``manage.py recover_turns``)."""
    return len(turns_recover(older_than=older_than))


def unanswered_turn(conversation_id: uuid.UUID, client_message_id: str) -> Turn | None:
    """The turn of a customer message that recovery closed before it was answered, if it is the
    conversation's latest turn: sending that message again (same client id) answers it."""
    latest = (
        Turn.objects.filter(conversation_id=conversation_id)
        .order_by("-started_at")
        .only("pk", "state", "client_message_id")
        .first()
    )
    if (
        latest is None
        or latest.state != TurnState.INTERRUPTED
        or latest.client_message_id != client_message_id
    ):
        return None
    return latest


def conversation_recover(conversation_id: uuid.UUID, emit: Emit) -> None:
    """Closes the conversation's dead turns and tells its tabs (before a new message)."""
    for recovered in turns_recover(conversation_id=conversation_id):
        for event in recovered.events:
            safe_emit(emit, event)


def accepted_before(conversation_id: uuid.UUID, client_message_id: str) -> bool:
    """Whether a message with this client id was accepted: a turn for a message the assistant
    answered, or a message alone while a person held the conversation."""
    return (
        Turn.objects.filter(
            conversation_id=conversation_id, client_message_id=client_message_id
        ).exists()
        or Message.objects.filter(
            conversation_id=conversation_id, client_message_id=client_message_id
        ).exists()
    )


def resend_claim(conversation_id: uuid.UUID, client_message_id: str) -> bool:
    """Under the conversation's lock: lets a resend of an unanswered message start a new turn.

    The dead turn gives up the client id, which the new turn takes; False when another resend
    got in first (the message is no longer unanswered).
    """
    dead = unanswered_turn(conversation_id, client_message_id)
    if dead is None:
        return False
    Turn.objects.filter(pk=dead.pk).update(client_message_id="")
    return True
