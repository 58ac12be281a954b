"""Handing a conversation from the assistant to a person and back.

The states of a conversation (``Conversation.status``)::

    with_bot ──request──> waiting_for_agent ──claim──> with_agent ──resolve──> resolved
        ^                        │  │                     │                     │
        └───────release──────────┘  └──resolve──> …       └──release──> with_bot │
    resolved ──request──> waiting_for_agent; a resolved conversation is answered by the assistant.

While a person holds the conversation (waiting or with an agent), the customer's messages are
stored and shown to the agent, and the assistant stays silent (``chat.services.turn_submit``).
An agent's messages are stored as user-role notes ("[Support agent Sam]: …", see
``chat.services.staff_note``): ``chat.history.repair`` merges them into the customer's turn, so the
history the model gets after a hand back still alternates, and the model knows what a person said.

Every change is one conditional update under the conversation's row lock, recorded as a
``HandoffEvent`` (who, from, to, when) together with a notice the customer sees. Staff act only
with the ``chat.reply_conversation`` permission, checked against the database on every call.

Each function takes an ``emit`` callable like ``chat.services``; after the change is committed it
gets the "message" events of the stored messages and a ``{"type": "handoff", "conversation",
"status", "agent_id", "agent_name"}`` event (``chat.realtime`` also tells the staff inbox).
"""

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from chat.models import (
    Conversation,
    ConversationStatus,
    HandoffEvent,
    Message,
    MessageKind,
    MessageRole,
    PendingAction,
    PendingActionState,
)
from chat.services import (
    HELD_STATUSES,
    ConversationNotFound,
    Emit,
    User,
    _append,
    _emit_messages,
    _NewMessage,
    _safe_emit,
    conversation_key,
    staff_note,
)

REPLY_PERMISSION = "chat.reply_conversation"
REASON_MAX_CHARS = 200

REQUESTED_NOTICE = (
    "We've asked a member of our support team to join. They'll reply here; "
    "you can keep writing in the meantime."
)
RELEASED_NOTICE = "You're chatting with the assistant again."
RESOLVED_NOTICE = (
    "Our support team marked this conversation as resolved. "
    "If you need anything else, just write here and the assistant will answer."
)


def joined_notice(name: str) -> str:
    who = name or "A member of our support team"
    return f"{who} from our support team has joined the conversation."


class HandoffRefused(Exception):
    """The conversation is not in a state that allows this step; ``str()`` says why."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


# --- Who may act ---------------------------------------------------------------------------------


def may_reply(user: User | None) -> bool:
    """Whether ``user`` may join and answer conversations: active staff with the permission."""
    if user is None or not user.is_authenticated:
        return False
    fresh = get_user_model().objects.filter(pk=user.pk, is_active=True, is_staff=True).first()
    # Loaded again: a socket keeps its user object (and cached permissions) for hours.
    return fresh is not None and fresh.has_perm(REPLY_PERMISSION)


def _agent_checked(agent: User) -> None:
    if not may_reply(agent):
        raise PermissionDenied("Only support agents can answer customers.")


def agent_name(user: Any) -> str:
    """What the customer sees of an agent: their first name only."""
    return str(getattr(user, "first_name", "") or "").strip()


def staff_conversation_get(*, agent: User, conversation_id: uuid.UUID | str) -> Conversation:
    """Any customer's conversation, for a support agent.

    Raises: ``PermissionDenied`` unless ``may_reply(agent)``; ``ConversationNotFound`` when it is
    missing or the id is malformed.
    """
    _agent_checked(agent)
    key = conversation_key(conversation_id)
    found = Conversation.objects.select_related("customer", "agent").filter(pk=key).first()
    if found is None:
        raise ConversationNotFound
    return found


def conversation_held(*, conversation_id: uuid.UUID) -> bool:
    """Whether a person holds the conversation (the assistant is silent)."""
    return Conversation.objects.filter(pk=conversation_id, status__in=HELD_STATUSES).exists()


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


# --- Transitions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Change:
    conversation: Conversation
    messages: list[Message]


def _locked(conversation_id: uuid.UUID | str) -> Conversation:
    found = (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("agent")
        .filter(pk=conversation_id)
        .first()
    )
    if found is None:
        raise ConversationNotFound
    return found


def _move(
    conversation: Conversation,
    *,
    to: str,
    actor: User | None,
    agent_id: int | None,
    note: str,
    notice: str,
) -> _Change:
    """Changes the state of a conversation the caller has locked, with its event and notice."""
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
    stored = _append(
        conversation.pk,
        None,
        [_NewMessage(MessageRole.ASSISTANT, MessageKind.NOTICE, [{"text": notice}])],
    )
    conversation.refresh_from_db()
    return _Change(conversation=conversation, messages=stored)


def _announce(change: _Change, emit: Emit | None) -> None:
    if emit is not None:
        _emit_messages(emit, change.messages)
        _safe_emit(emit, handoff_state(change.conversation))


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
    would otherwise be left without its result).
    """
    if user is not None and (not user.is_authenticated or conversation.owner_id != user.pk):
        raise ConversationNotFound
    reason = " ".join(reason.split())[:REASON_MAX_CHARS]
    with transaction.atomic():
        locked = _locked(conversation.pk)
        if locked.status in HELD_STATUSES:
            return False
        if PendingAction.objects.filter(
            conversation_id=locked.pk, state=PendingActionState.PENDING
        ).exists():
            raise HandoffRefused(
                "confirmation_pending",
                "Please answer the question about cancelling your order first.",
            )
        via = "Asked in the chat" if user is not None else "Asked through the assistant"
        change = _move(
            locked,
            to=ConversationStatus.WAITING_FOR_AGENT,
            actor=user,
            agent_id=None,
            note=f"{via}: {reason}" if reason else via,
            notice=REQUESTED_NOTICE,
        )
    _announce(change, emit)
    return True


def handoff_claim(
    *, conversation_id: uuid.UUID | str, agent: User, emit: Emit | None = None
) -> Conversation:
    """An agent takes a waiting conversation: waiting_for_agent → with_agent.

    Of agents claiming at once, exactly one wins; the others get ``HandoffRefused``.

    Raises: ``PermissionDenied`` unless ``may_reply(agent)``; ``ConversationNotFound``;
    ``HandoffRefused`` when the conversation is not waiting (already taken, or with the bot).
    """
    _agent_checked(agent)
    with transaction.atomic():
        locked = _locked(conversation_id)
        if locked.status != ConversationStatus.WAITING_FOR_AGENT:
            if locked.status == ConversationStatus.WITH_AGENT:
                holder = agent_name(locked.agent) or "another agent"
                raise HandoffRefused("already_claimed", f"{holder} has already joined.")
            raise HandoffRefused("not_waiting", "This customer is not waiting for a person.")
        change = _move(
            locked,
            to=ConversationStatus.WITH_AGENT,
            actor=agent,
            agent_id=agent.pk,
            note="",
            notice=joined_notice(agent_name(agent)),
        )
    _announce(change, emit)
    return change.conversation


def _held_by(locked: Conversation, agent: User) -> None:
    if locked.status == ConversationStatus.WITH_AGENT and locked.agent_id != agent.pk:
        holder = agent_name(locked.agent) or "another agent"
        raise HandoffRefused("not_yours", f"{holder} is answering this customer.")


def handoff_reply(
    *,
    conversation_id: uuid.UUID | str,
    agent: User,
    text: str,
    client_message_id: str,
    emit: Emit | None = None,
) -> bool:
    """The agent holding the conversation writes to the customer.

    Stored as a user-role note naming the agent (the model reads it after a hand back) and shown
    to the customer with the agent's first name. Idempotent on ``client_message_id``: a resend
    returns False and stores nothing.

    Raises: ``PermissionDenied`` unless ``may_reply(agent)``; ``ConversationNotFound``;
    ``HandoffRefused`` unless the conversation is with this agent; ``ValueError`` for a blank or
    too long text, or no ``client_message_id``.
    """
    _agent_checked(agent)
    if not client_message_id:
        raise ValueError("A client_message_id is required: it makes resending safe.")
    if not text.strip():
        raise ValueError("Please type a message before sending.")
    if len(text) > settings.CHAT_MESSAGE_MAX_CHARS:
        raise ValueError(
            f"Please keep your message under {settings.CHAT_MESSAGE_MAX_CHARS} characters."
        )
    duplicate = Q(conversation_id=conversation_id, client_message_id=client_message_id)
    try:
        with transaction.atomic():
            locked = _locked(conversation_id)
            if Message.objects.filter(duplicate).exists():
                return False
            if locked.status != ConversationStatus.WITH_AGENT:
                raise HandoffRefused("not_joined", "Join the conversation before replying.")
            _held_by(locked, agent)
            stored = _append(
                locked.pk,
                None,
                [
                    _NewMessage(
                        MessageRole.USER,
                        MessageKind.STAFF,
                        [{"text": staff_note(agent_name(agent), text)}],
                        client_message_id,
                        author_id=agent.pk,
                    )
                ],
            )
    except IntegrityError:
        if Message.objects.filter(duplicate).exists():
            return False
        raise
    if emit is not None:
        _emit_messages(emit, stored)
    return True


def handoff_release(
    *, conversation_id: uuid.UUID | str, agent: User, emit: Emit | None = None
) -> Conversation:
    """Hands the conversation back to the assistant: waiting_for_agent or with_agent → with_bot.

    Raises: ``PermissionDenied`` unless ``may_reply(agent)``; ``ConversationNotFound``;
    ``HandoffRefused`` when nobody holds it, or another agent does.
    """
    return _finish(
        conversation_id, agent, to=ConversationStatus.WITH_BOT, notice=RELEASED_NOTICE, emit=emit
    )


def handoff_resolve(
    *, conversation_id: uuid.UUID | str, agent: User, emit: Emit | None = None
) -> Conversation:
    """Closes the customer's request: waiting_for_agent or with_agent → resolved.

    Afterwards the assistant answers again; the customer can ask for a person again.

    Raises: ``PermissionDenied`` unless ``may_reply(agent)``; ``ConversationNotFound``;
    ``HandoffRefused`` when nobody holds it, or another agent does.
    """
    return _finish(
        conversation_id, agent, to=ConversationStatus.RESOLVED, notice=RESOLVED_NOTICE, emit=emit
    )


def _finish(
    conversation_id: uuid.UUID | str, agent: User, *, to: str, notice: str, emit: Emit | None
) -> Conversation:
    _agent_checked(agent)
    with transaction.atomic():
        locked = _locked(conversation_id)
        if locked.status not in HELD_STATUSES:
            raise HandoffRefused("not_held", "The assistant is already answering this customer.")
        _held_by(locked, agent)
        change = _move(locked, to=to, actor=agent, agent_id=None, note="", notice=notice)
    _announce(change, emit)
    return change.conversation


# --- The inbox -----------------------------------------------------------------------------------


def inbox_list(*, agent: User) -> list[dict[str, Any]]:
    """The conversations that need a person: waiting ones (longest wait first), then those with
    an agent. JSON-able, for the page and its socket.

    Raises: ``PermissionDenied`` unless ``may_reply(agent)``.
    """
    _agent_checked(agent)
    conversations = (
        Conversation.objects.filter(status__in=HELD_STATUSES)
        .select_related("customer", "agent")
        .order_by("updated_at")
    )
    requested: dict[uuid.UUID, HandoffEvent] = {}
    for event in HandoffEvent.objects.filter(
        conversation__status__in=HELD_STATUSES, to_state=ConversationStatus.WAITING_FOR_AGENT
    ).order_by("created_at", "id"):
        requested[event.conversation_id] = event  # the latest request wins
    items = []
    for conversation in conversations:
        request = requested.get(conversation.pk)
        since = request.created_at if request is not None else conversation.updated_at
        items.append(
            {
                "id": str(conversation.pk),
                "status": conversation.status,
                "customer": conversation.customer.name,
                "title": conversation.title or "Conversation",
                "note": request.note if request is not None else "",
                "since": since.isoformat(),
                "agent_id": conversation.agent_id,
                "agent_name": agent_name(conversation.agent) if conversation.agent_id else "",
                "url": reverse("chat:staff_conversation", args=[conversation.pk]),
            }
        )
    # Waiting customers first, the longest waiting at the top.
    items.sort(
        key=lambda item: (item["status"] != ConversationStatus.WAITING_FOR_AGENT, item["since"])
    )
    return items
