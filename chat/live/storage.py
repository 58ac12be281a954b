"""Storing messages: each with the next seq of its conversation, then told to the open tabs.

The loop's steps reach the database through ``StoringSink`` (one statement per step), so a
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
  "retryable", "last_seq"}``; a failed turn also stores a notice with a customer-safe text.
  ``last_seq`` is the highest seq the turn stored: a socket that has sent less reads the rest
  from the database before relaying the end (``chat.live.relay``);
- ``{"type": "hidden", "seqs"}`` the seqs of stored messages the customer does not see (tool
  calls and results), before the step's "message" events; sockets relay it to nobody;
- ``{"type": "error", "text", "retryable"}`` for a message that was not accepted;
- ``{"type": "handoff", "conversation", "status", "agent_id", "agent_name"}`` when a person is
  asked for, joins or leaves (``chat.live.handoff``).
"""

import logging
import uuid
from collections.abc import Callable
from typing import Any

from anycompany import telemetry
from chat.engine.types import ModelCallRecord
from chat.live.conversations import content_text, message_event
from chat.live.dbcalls import connection_release
from chat.live.leases import TurnClosed, lease_now
from chat.live.writes import NewMessage, Step, TurnNotRunning, step_write
from chat.models import Message, MessageKind, MessageRole, Turn

logger = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]


def notice(text: str) -> NewMessage:
    """A notice from the app: shown to the customer, never sent to the model."""
    return NewMessage(MessageRole.ASSISTANT, MessageKind.NOTICE, [{"text": text}])


def messages_append(
    conversation_id: uuid.UUID, turn: Turn | None, new: list[NewMessage]
) -> list[Message]:
    """Stores messages with the next seqs of the conversation, in one statement.

    The conversation row is updated (so locked) first, so concurrent writers take turns and
    seqs never repeat or skip (``chat.live.writes``).
    """
    return step_write(
        Step(
            conversation_id=conversation_id, messages=new, turn_id=None if turn is None else turn.pk
        )
    )


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
    """The "message" events of stored messages the customer can see, after a "hidden" event
    with the seqs of those they cannot (so a socket relaying them sees no gap in the seqs)."""
    events = [(message.seq, message_event(message)) for message in messages]
    hidden = [seq for seq, event in events if event is None]
    if hidden:
        safe_emit(emit, {"type": "hidden", "seqs": hidden})
    for _, event in events:
        if event is not None:
            safe_emit(emit, event)


class StoringSink:
    """The loop's ``TurnSink``: stores each step in one statement, then tells the tabs.

    A model call's usage is written with the step that follows it (the exchange it produced, or
    the turn's end), so a model call costs no round trip of its own. So is the turn's last
    message: an assistant message that no tool results follow is the last thing the loop
    appends before it returns (its answer, or a call waiting for the customer's yes), so it is
    held until the turn's end is written, in the same statement (``step``).
    """

    def __init__(self, *, conversation_id: uuid.UUID, turn: Turn, emit: Emit) -> None:
        self.conversation_id = conversation_id
        self.turn = turn
        self.emit = emit
        self.calls: list[tuple[ModelCallRecord, str]] = []
        self.held: list[NewMessage] = []
        # The highest seq this turn stored, for its "ended" event (``last_seq``).
        self.last_seq: int | None = None

    def model_called(self, record: ModelCallRecord) -> None:
        self.calls.append((record, telemetry.current_trace_id()))

    def step(self, *, messages: list[NewMessage], **changes: Any) -> list[Message]:
        """Writes the held message, ``messages``, the usage recorded so far and ``changes``
        (``Step`` fields), renewing the turn's lease; returns the stored messages.

        Raises: ``TurnClosed`` when recovery closed the turn meanwhile (nothing is written).
        """
        try:
            stored = step_write(
                Step(
                    conversation_id=self.conversation_id,
                    messages=[*self.held, *messages],
                    turn_id=self.turn.pk,
                    model_calls=self.calls,
                    lease=lease_now(),
                    **changes,
                )
            )
        except TurnNotRunning:
            raise TurnClosed(str(self.turn.pk)) from None
        # Kept until written: a last write retried on a fresh connection still carries them.
        self.calls = []
        self.held = []
        if stored:
            self.last_seq = stored[-1].seq
        connection_release()
        return stored

    def messages_appended(self, messages: list[dict[str, Any]]) -> None:
        new = [
            NewMessage(role=m["role"], kind=message_kind(m), content=m["content"]) for m in messages
        ]
        if messages[-1]["role"] == MessageRole.ASSISTANT:
            # The turn's last message: written with the turn's end (``chat.live.turns``).
            self.held += new
            return
        # An assistant toolUse message and its results are stored together or not at all.
        messages_emit(self.emit, self.step(messages=new))

    def text_delta(self, text: str) -> None:
        safe_emit(self.emit, {"type": "delta", "turn": str(self.turn.pk), "text": text})

    def tool_started(self, name: str, tool_input: dict[str, Any], description: str) -> None:
        safe_emit(self.emit, {"type": "status", "turn": str(self.turn.pk), "text": description})
