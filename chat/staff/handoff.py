"""The staff side of a human handoff: who may answer customers, and what they do.

A support agent (active staff with the ``chat.reply_conversation`` permission, checked against
the database on every call) claims a waiting conversation, replies in it, hands it back to the
assistant or resolves it. Each step is a state change of ``chat.live.handoff`` (one conditional
update under the conversation's row lock, a ``HandoffEvent`` and a notice for the customer).

An agent's messages are stored as user-role notes ("[Support agent Sam]: …", see
``chat.live.conversations.staff_note``): ``chat.engine.history.repair`` merges them into the
customer's turn, so the history the model gets after a hand back still alternates, and the model
knows what a person said. Each function takes an ``emit`` callable like the live chat's.
"""

import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse

from chat.live.conversations import ConversationNotFound, User, conversation_key, staff_note
from chat.live.handoff import (
    HELD_STATUSES,
    HandoffRefused,
    agent_name,
    change_announce,
    conversation_lock,
    status_move,
)
from chat.live.storage import Emit, NewMessage, messages_append, messages_emit
from chat.models import (
    Conversation,
    ConversationStatus,
    HandoffEvent,
    Message,
    MessageKind,
    MessageRole,
)

REPLY_PERMISSION = "chat.reply_conversation"
RELEASED_NOTICE = "You're chatting with the assistant again."
RESOLVED_NOTICE = (
    "Our support team marked this conversation as resolved. "
    "If you need anything else, just write here and the assistant will answer."
)


def joined_notice(name: str) -> str:
    who = name or "A member of our support team"
    return f"{who} from our support team has joined the conversation."


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


# --- Steps --------------------------------------------------------------------------------------


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
        locked = conversation_lock(conversation_id)
        if locked.status != ConversationStatus.WAITING_FOR_AGENT:
            if locked.status == ConversationStatus.WITH_AGENT:
                holder = agent_name(locked.agent) or "another agent"
                raise HandoffRefused("already_claimed", f"{holder} has already joined.")
            raise HandoffRefused("not_waiting", "This customer is not waiting for a person.")
        change = status_move(
            locked,
            to=ConversationStatus.WITH_AGENT,
            actor=agent,
            agent_id=agent.pk,
            note="",
            text=joined_notice(agent_name(agent)),
        )
    change_announce(change, emit)
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
            locked = conversation_lock(conversation_id)
            if Message.objects.filter(duplicate).exists():
                return False
            if locked.status != ConversationStatus.WITH_AGENT:
                raise HandoffRefused("not_joined", "Join the conversation before replying.")
            _held_by(locked, agent)
            stored = messages_append(
                locked.pk,
                None,
                [
                    NewMessage(
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
        messages_emit(emit, stored)
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
        locked = conversation_lock(conversation_id)
        if locked.status not in HELD_STATUSES:
            raise HandoffRefused("not_held", "The assistant is already answering this customer.")
        _held_by(locked, agent)
        change = status_move(locked, to=to, actor=agent, agent_id=None, note="", text=notice)
    change_announce(change, emit)
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
