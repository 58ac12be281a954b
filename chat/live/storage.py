"""Storing messages: each with the next seq of its conversation, then told to the open tabs.

The loop's steps reach the database through ``StoringSink`` (one transaction per step), so a
reload, another tab or a restarted process always finds a history Converse accepts. Sending live
events is best effort; the stored history is the truth.

Events passed to an ``emit`` callable are plain JSON-able dicts:

- ``{"type": "message", "seq", "id", "role": "customer"|"assistant"|"staff"|"notice", "text",
  "created_at"}`` once a message the customer can see is stored (after its transaction commits);
- ``{"type": "delta", "turn", "text"}`` streaming reply text, ``{"type": "status", "turn",
  "text"}`` tool progress;
- ``{"type": "confirm", "action_id", "text"}`` a cancellation waits for the customer, and
  ``{"type": "action_resolved", "action_id", "approved"}`` once it is decided;
- ``{"type": "turn", "turn", "state": "started"}`` and ``{"type": "turn", "turn",
  "state": "ended", "outcome": "answered"|"awaiting_confirmation"|"failed", "error_kind",
  "retryable"}``; a failed turn also stores a notice with a customer-safe text;
- ``{"type": "error", "text", "retryable"}`` for a message that was not accepted;
- ``{"type": "handoff", "conversation", "status", "agent_id", "agent_name"}`` when a person is
  asked for, joins or leaves (``chat.live.handoff``).
"""

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from anycompany import telemetry
from chat.engine.types import ModelCallRecord
from chat.live.conversations import content_text, message_event
from chat.live.leases import turn_touch
from chat.models import Conversation, Message, MessageKind, MessageRole, ModelCall, Turn

logger = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class NewMessage:
    role: str
    kind: str
    content: list[dict[str, Any]]
    client_message_id: str = ""
    author_id: int | None = None


def notice(text: str) -> NewMessage:
    """A notice from the app: shown to the customer, never sent to the model."""
    return NewMessage(MessageRole.ASSISTANT, MessageKind.NOTICE, [{"text": text}])


def messages_append(
    conversation_id: uuid.UUID, turn: Turn | None, new: list[NewMessage]
) -> list[Message]:
    """Stores messages with the next seqs of the conversation.

    The conversation row is locked for the rest of the caller's transaction, so concurrent
    writers take turns and seqs never repeat or skip (SQLite ignores the lock but serialises
    writers itself).
    """
    with transaction.atomic():
        conversation = (
            Conversation.objects.select_for_update().only("pk", "last_seq").get(pk=conversation_id)
        )
        seq = conversation.last_seq
        stored = []
        for item in new:
            seq += 1
            stored.append(
                Message.objects.create(
                    conversation_id=conversation_id,
                    turn=turn,
                    seq=seq,
                    role=item.role,
                    kind=item.kind,
                    content=item.content,
                    client_message_id=item.client_message_id,
                    author_id=item.author_id,
                )
            )
        Conversation.objects.filter(pk=conversation_id).update(
            last_seq=seq, updated_at=timezone.now()
        )
    return stored


def message_kind(message: dict[str, Any]) -> str:
    """How a Converse message from the loop is stored."""
    if message["role"] == MessageRole.ASSISTANT:
        return MessageKind.ASSISTANT
    if content_text(message.get("content") or []):
        return MessageKind.CUSTOMER
    return MessageKind.TOOL_RESULTS


def safe_emit(emit: Emit, event: dict[str, Any]) -> None:
    """Sends one live event; a failure is logged and never ends the caller's work."""
    # Live events are best effort: the stored history is the truth and a lost event must not
    # end a turn half-stored.
    try:
        emit(event)
    except Exception:
        logger.exception("Could not emit a %s event", event.get("type"))


def messages_emit(emit: Emit, messages: list[Message]) -> None:
    """The "message" events of stored messages the customer can see."""
    for message in messages:
        event = message_event(message)
        if event is not None:
            safe_emit(emit, event)


class StoringSink:
    """The loop's ``TurnSink``: stores each step in its own transaction, then tells the tabs."""

    def __init__(self, *, conversation_id: uuid.UUID, turn: Turn, emit: Emit) -> None:
        self.conversation_id = conversation_id
        self.turn = turn
        self.emit = emit

    def model_called(self, record: ModelCallRecord) -> None:
        ModelCall.objects.create(
            conversation_id=self.conversation_id,
            turn=self.turn,
            model_id=record.model_id[:200],
            stop_reason=(record.stop_reason or "")[:64],
            input_tokens=max(0, record.input_tokens),
            output_tokens=max(0, record.output_tokens),
            cache_read_tokens=max(0, record.cache_read_tokens),
            cache_write_tokens=max(0, record.cache_write_tokens),
            latency_ms=max(0, record.latency_ms),
            error=record.error[:200],
            trace_id=telemetry.current_trace_id(),
        )
        turn_touch(self.turn)

    def messages_appended(self, messages: list[dict[str, Any]]) -> None:
        # An assistant toolUse message and its results are stored together or not at all.
        with transaction.atomic():
            stored = messages_append(
                self.conversation_id,
                self.turn,
                [
                    NewMessage(role=m["role"], kind=message_kind(m), content=m["content"])
                    for m in messages
                ],
            )
            turn_touch(self.turn)
        messages_emit(self.emit, stored)

    def text_delta(self, text: str) -> None:
        safe_emit(self.emit, {"type": "delta", "turn": str(self.turn.pk), "text": text})

    def tool_started(self, name: str, tool_input: dict[str, Any], description: str) -> None:
        safe_emit(self.emit, {"type": "status", "turn": str(self.turn.pk), "text": description})
