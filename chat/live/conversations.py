"""Conversations: finding them, and what the customer sees of their messages (the model's view is
``chat.live.model_history``).

Authorization: a conversation belongs to the user who started it and is bound to that user's
customer; every function that takes the acting user treats someone else's conversation exactly
like a missing one (``ConversationNotFound``).

What the customer sees is derived from the stored Converse content on display: assistant
messages show only their ``<reply>`` text, tool results show nothing. A "message" event is
``{"type": "message", "seq", "id", "role": "customer"|"assistant"|"staff"|"notice", "text",
"created_at"}`` (staff messages add the agent's first name as "name"; an assistant message that
also calls a tool adds ``"preamble": true``).
"""

import re
import uuid
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from chat.engine.replies import visible_text
from chat.live.engine_config import stale_after
from chat.models import (
    Conversation,
    Message,
    MessageKind,
    PendingAction,
    PendingActionState,
    Turn,
    TurnState,
)
from orders.models import Customer
from orders.selectors import customer_of_user

User = AbstractBaseUser | AnonymousUser


class ConversationNotFound(Exception):
    """The conversation does not exist or is not the user's: indistinguishable on purpose."""


def conversation_list(*, user: User) -> list[Conversation]:
    """The user's conversations, most recently active first."""
    if not user.is_authenticated:
        return []
    return list(Conversation.objects.filter(owner_id=user.pk).order_by("-updated_at"))


def conversation_start(*, user: User) -> Conversation:
    """Starts a conversation bound to the user's customer.

    Raises: ``PermissionDenied`` when the user is not signed in as a customer (staff accounts
    without a customer have no orders to talk about).
    """
    customer = customer_of_user(user_id=user.pk) if user.is_authenticated else None
    if customer is None or customer.user_id is None:
        raise PermissionDenied("Only customers can start a conversation.")
    return Conversation.objects.create(owner_id=customer.user_id, customer=customer)


def conversation_key(conversation_id: uuid.UUID | str) -> uuid.UUID:
    """The conversation id as a UUID; a malformed one is as missing as an unknown one.

    Raises: ``ConversationNotFound``.
    """
    if isinstance(conversation_id, uuid.UUID):
        return conversation_id
    try:
        return uuid.UUID(str(conversation_id))
    except ValueError:
        raise ConversationNotFound from None


def conversation_get(*, user: User, conversation_id: uuid.UUID | str) -> Conversation:
    """One of the user's conversations.

    Raises: ``ConversationNotFound`` when it is missing, not the user's, or the id is malformed.
    """
    if not user.is_authenticated:
        raise ConversationNotFound
    try:
        return Conversation.objects.select_related("customer").get(
            pk=conversation_key(conversation_id), owner_id=user.pk
        )
    except Conversation.DoesNotExist:
        raise ConversationNotFound from None


def acting_customer(conversation: Conversation, user: User) -> Customer:
    """The conversation's customer, if ``user`` may still act for it.

    Raises: ``ConversationNotFound`` when the conversation is not the user's, or the sign-in
    account was unlinked from the customer since the conversation started.
    """
    if not user.is_authenticated or conversation.owner_id != user.pk:
        raise ConversationNotFound
    customer = customer_of_user(user_id=user.pk, customer_id=conversation.customer_id)
    if customer is None:
        raise ConversationNotFound
    return customer


# --- Staff notes ----------------------------------------------------------------------------------

# A support agent's message as the model reads it: a user-role note naming the agent, so the
# assistant knows what a person told the customer when it takes over again.
STAFF_NOTE = re.compile(r"^\[Support agent(?: (?P<name>[^\]\n]{1,150}))?\]: ")


def staff_note(name: str, text: str) -> str:
    """The stored text of a support agent's message to the customer."""
    name = " ".join(name.replace("]", " ").split())
    return f"[Support agent {name}]: {text}" if name else f"[Support agent]: {text}"


def staff_note_parts(text: str) -> tuple[str, str]:
    """The agent's name and the message of a stored ``staff_note``."""
    match = STAFF_NOTE.match(text)
    if match is None:
        return "", text
    return match.group("name") or "", text[match.end() :]


# --- What the customer sees -----------------------------------------------------------------------

_DISPLAY_ROLES = {
    MessageKind.CUSTOMER: "customer",
    MessageKind.ASSISTANT: "assistant",
    MessageKind.STAFF: "staff",
    MessageKind.NOTICE: "notice",
}


def content_text(content: list[Any]) -> str:
    """All text blocks of stored content, one per line (tool results and calls left out)."""
    return "\n".join(
        block["text"]
        for block in content
        if isinstance(block, dict) and isinstance(block.get("text"), str)
    ).strip()


def message_event(message: Message) -> dict[str, Any] | None:
    """The "message" event for a stored message, or None when the customer sees nothing of it.

    Assistant messages show only their reply text (never thinking or tool calls); tool results
    show nothing. Staff messages carry the agent's first name as "name".

    An assistant message that also calls a tool is a preamble ("Let me look that up."): the
    answer is still to come, so the event says ``"preamble": True`` and the chat page shows it
    as the assistant's status rather than as a reply to rate.
    """
    role = _DISPLAY_ROLES.get(MessageKind(message.kind))
    if role is None:
        return None
    content = message.content if isinstance(message.content, list) else []
    if message.kind == MessageKind.ASSISTANT:
        text = visible_text({"role": "assistant", "content": content})
    else:
        text = content_text(content)
    name = None
    if message.kind == MessageKind.STAFF:
        name, text = staff_note_parts(text)
    if not text:
        return None
    event = {
        "type": "message",
        "seq": message.seq,
        "id": str(message.pk),
        "role": role,
        "text": text,
        "created_at": message.created_at.isoformat(),
    }
    if name is not None:
        event["name"] = name
    if message.kind == MessageKind.ASSISTANT and any(
        isinstance(block, dict) and "toolUse" in block for block in content
    ):
        event["preamble"] = True
    return event


def conversation_messages_for_display(
    *, conversation: Conversation, after_seq: int = 0
) -> list[dict[str, Any]]:
    """The stored messages after ``after_seq`` as the customer saw them, as "message" events."""
    messages = Message.objects.filter(conversation_id=conversation.pk, seq__gt=after_seq).order_by(
        "seq"
    )
    return [event for event in (message_event(m) for m in messages) if event is not None]


def confirm_event(action: PendingAction) -> dict[str, Any]:
    """The "confirm" event: a cancellation waits for the customer's answer."""
    return {"type": "confirm", "action_id": str(action.pk), "text": action.summary}


def resolved_event(action: PendingAction) -> dict[str, Any]:
    """The "action_resolved" event, once the customer (or a typed answer) decided."""
    return {
        "type": "action_resolved",
        "action_id": str(action.pk),
        "approved": action.state == PendingActionState.APPROVED,
    }


def running_turn_event(conversation: Conversation) -> dict[str, Any] | None:
    """The "turn" started event of the conversation's running turn, if one is still making
    progress (a turn a restart left "running" past ``stale_after()`` is not)."""
    turn_id = (
        Turn.objects.filter(conversation_id=conversation.pk, state=TurnState.RUNNING)
        .exclude(active_at__lte=timezone.now() - stale_after())
        .values_list("pk", flat=True)
        .first()
    )
    if turn_id is None:
        return None
    return {"type": "turn", "turn": str(turn_id), "state": "started"}


def events_since(*, conversation: Conversation, after_seq: int) -> list[dict[str, Any]]:
    """The "message" events of the stored messages after ``after_seq``, in seq order.

    While a cancellation waits for the customer, its "confirm" event comes last, so a reloaded
    page shows the question again (clients recognise a repeat by its ``action_id``). While a
    turn runs, its "turn" started event comes last, so a page reloaded mid-reply knows the reply
    is still coming (the turn's "ended" event follows through the live events).
    """
    events = conversation_messages_for_display(conversation=conversation, after_seq=after_seq)
    action = PendingAction.objects.filter(
        conversation_id=conversation.pk, state=PendingActionState.PENDING
    ).first()
    if action is not None:
        events.append(confirm_event(action))
    running = running_turn_event(conversation)
    if running is not None:
        events.append(running)
    return events


def conversation_locked_state(conversation_id: uuid.UUID) -> dict[str, Any]:
    """The conversation's status and title, its running turn and pending action, in one query;
    the conversation row stays locked until the caller's transaction ends."""
    running = Turn.objects.filter(conversation_id=OuterRef("pk"), state=TurnState.RUNNING)
    pending = PendingAction.objects.filter(
        conversation_id=OuterRef("pk"), state=PendingActionState.PENDING
    )
    return dict(
        Conversation.objects.select_for_update()
        .filter(pk=conversation_id)
        .annotate(
            running_id=Subquery(running.values("pk")[:1]),
            pending_id=Subquery(pending.values("pk")[:1]),
        )
        .values("status", "title", "running_id", "pending_id")
        .get()
    )
