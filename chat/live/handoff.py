"""The customer's side of a human handoff, and the state changes both sides share.

The states of a conversation (``Conversation.status``)::

    with_bot ──request──> waiting_for_agent ──claim──> with_agent ──resolve──> resolved
        ^                        │  │                     │                     │
        └───────release──────────┘  └──resolve──> …       └──release──> with_bot │
    resolved ──request──> waiting_for_agent; a resolved conversation is answered by the assistant.

The customer (or the assistant, through the ``request_human_agent`` tool) asks for a person here;
the staff side (``chat.staff.handoff``) claims, replies, hands back and resolves. While a person
holds the conversation (``HELD_STATUSES``) the customer's messages are stored and shown to the
agent, and the assistant stays silent (``chat.live.turns.turn_submit``).

Every change is one conditional update under the conversation's row lock (``status_move``),
recorded as a ``HandoffEvent`` (who, from, to, when) together with a notice the customer sees.
After the change is committed, ``change_announce`` gives the ``emit`` callable the "message"
events of the stored messages and a ``{"type": "handoff", "conversation", "status", "agent_id",
"agent_name"}`` event (``chat.live.emitter`` also tells the staff inbox).
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from chat.engine.registry import ToolRefused
from chat.live.conversations import ConversationNotFound, User
from chat.live.engine_config import stale_after
from chat.live.storage import Emit, messages_append, messages_emit, notice, safe_emit
from chat.models import (
    Conversation,
    ConversationStatus,
    HandoffEvent,
    Message,
    PendingAction,
    PendingActionState,
    Turn,
    TurnState,
)

# While a person holds the conversation, customer messages are stored for them and no turn runs.
HELD_STATUSES = (ConversationStatus.WAITING_FOR_AGENT, ConversationStatus.WITH_AGENT)
REASON_MAX_CHARS = 200

REQUESTED_NOTICE = (
    "We've asked a member of our support team to join. They'll reply here; "
    "you can keep writing in the meantime."
)
NOT_HANDED_OVER_TEXT = "This conversation cannot be handed to a person."
HELD_ERROR = {
    "type": "error",
    "code": "held",
    "text": (
        "A member of our support team has this conversation now, so the assistant can't do "
        "this. Please tell them here what you would like."
    ),
    "retryable": False,
}
TURN_RUNNING_TEXT = "The assistant is still replying. Please ask for a person again in a moment."


class HandoffRefused(Exception):
    """The conversation is not in a state that allows this step; ``str()`` says why."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def agent_name(user: Any) -> str:
    """What the customer sees of an agent: their first name only."""
    return str(getattr(user, "first_name", "") or "").strip()


def conversation_held(*, conversation_id: uuid.UUID) -> bool:
    """Whether a person holds the conversation (the assistant is silent)."""
    return Conversation.objects.filter(pk=conversation_id, status__in=HELD_STATUSES).exists()


def turn_running(*, conversation_id: uuid.UUID) -> bool:
    """Whether a turn of the conversation is still making progress (see
    ``chat.live.conversations.running_turn_event``)."""
    return (
        Turn.objects.filter(conversation_id=conversation_id, state=TurnState.RUNNING)
        .exclude(active_at__lte=timezone.now() - stale_after())
        .exists()
    )


def handoff_state(conversation: Conversation) -> dict[str, Any]:
    """The "handoff" event describing where ``conversation`` stands now."""
    agent = conversation.agent if conversation.agent_id else None
    return {
        "type": "handoff",
        "conversation": str(conversation.pk),
        "status": conversation.status,
        "agent_id": conversation.agent_id,
        "agent_name": agent_name(agent) if agent is not None else "",
    }


# --- State changes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusChange:
    conversation: Conversation
    messages: list[Message]


def conversation_lock(conversation_id: uuid.UUID | str) -> Conversation:
    """The conversation, locked for the rest of the caller's transaction.

    Raises: ``ConversationNotFound``.
    """
    found = (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("agent")
        .filter(pk=conversation_id)
        .first()
    )
    if found is None:
        raise ConversationNotFound
    return found


def status_move(
    conversation: Conversation,
    *,
    to: str,
    actor: User | None,
    agent_id: int | None,
    note: str,
    text: str,
) -> StatusChange:
    """Changes the state of a conversation the caller has locked (``conversation_lock``).

    Records the ``HandoffEvent`` and stores ``text`` as a notice for the customer.

    Raises: ``HandoffRefused`` ("state_changed") if the state moved since it was read.
    """
    from_state = conversation.status
    now = timezone.now()
    fields: dict[str, Any] = {"status": to, "agent_id": agent_id, "updated_at": now}
    if to == ConversationStatus.WAITING_FOR_AGENT and conversation.escalated_at is None:
        fields["escalated_at"] = now
    # Conditional on the state read under the lock: a stale read can never move it twice.
    updated = Conversation.objects.filter(pk=conversation.pk, status=from_state).update(**fields)
    if updated != 1:
        raise HandoffRefused("state_changed", "The conversation changed meanwhile. Please retry.")
    HandoffEvent.objects.create(
        conversation_id=conversation.pk,
        from_state=from_state,
        to_state=to,
        actor_id=actor.pk if actor is not None and actor.is_authenticated else None,
        note=note[:300],
    )
    stored = messages_append(conversation.pk, None, [notice(text)])
    conversation.refresh_from_db()
    return StatusChange(conversation=conversation, messages=stored)


def change_announce(change: StatusChange, emit: Emit | None) -> None:
    """Tells the tabs about a committed change: its notice, then the new "handoff" state."""
    if emit is not None:
        messages_emit(emit, change.messages)
        safe_emit(emit, handoff_state(change.conversation))


def handoff_request(
    *,
    conversation: Conversation,
    user: User | None,
    reason: str = "",
    emit: Emit | None = None,
) -> bool:
    """The customer asks for a person: with_bot or resolved → waiting_for_agent.

    ``user`` is the customer who clicked "Talk to a person", or None when the assistant asked on
    the customer's behalf (the ``request_human_agent`` tool, bound to this conversation). The
    first request sets ``escalated_at``. Returns False when a person already holds it.

    Raises: ``ConversationNotFound`` when ``user`` does not own the conversation;
    ``HandoffRefused`` while a cancellation waits for the customer's answer (the model's call
    would otherwise be left without its result), and, for the customer's own request, while a
    turn is running (a person must not get the conversation while the assistant is still
    acting in it; the customer's socket waits for the turn before asking).
    """
    if user is not None and (not user.is_authenticated or conversation.owner_id != user.pk):
        raise ConversationNotFound
    reason = " ".join(reason.split())[:REASON_MAX_CHARS]
    with transaction.atomic():
        locked = conversation_lock(conversation.pk)
        if locked.status in HELD_STATUSES:
            return False
        # The assistant's own request comes from inside the running turn; it ends the turn.
        if user is not None and turn_running(conversation_id=locked.pk):
            raise HandoffRefused("turn_running", TURN_RUNNING_TEXT)
        if PendingAction.objects.filter(
            conversation_id=locked.pk, state=PendingActionState.PENDING
        ).exists():
            raise HandoffRefused(
                "confirmation_pending",
                "Please answer the question about cancelling your order first.",
            )
        via = "Asked in the chat" if user is not None else "Asked through the assistant"
        change = status_move(
            locked,
            to=ConversationStatus.WAITING_FOR_AGENT,
            actor=user,
            agent_id=None,
            note=f"{via}: {reason}" if reason else via,
            text=REQUESTED_NOTICE,
        )
    change_announce(change, emit)
    return True


def assistant_request_person(
    *, conversation_id: uuid.UUID, customer_id: str, emit: Emit | None
) -> Callable[[str], bool]:
    """The ``request_person`` callable of a turn's ``ToolContext``: the assistant asks for a person
    on the customer's behalf, in this conversation only.

    The callable returns what ``handoff_request`` returns and raises ``ToolRefused`` (with the
    text for the model) when the conversation cannot be handed over now.
    """

    def request_person(reason: str) -> bool:
        conversation = Conversation.objects.filter(
            pk=conversation_id, customer_id=customer_id
        ).first()
        if conversation is None:
            raise ToolRefused(NOT_HANDED_OVER_TEXT)
        try:
            return handoff_request(conversation=conversation, user=None, reason=reason, emit=emit)
        except HandoffRefused as refused:
            raise ToolRefused(refused.text) from None

    return request_person
