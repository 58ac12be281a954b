"""A customer's message coming in: whether it starts a turn, decided on one read.

Before a message starts a turn, the conversation must be the user's and still bound to their
customer; a repeat of an accepted message is dropped (a resend of one whose turn died unanswered
is answered); while a person holds the conversation the message is only stored; a spent daily
token budget or a running turn refuses it; a waiting confirmation is decided by it. Everything
those rules look at is one statement (``admission_read``), and the usual message (none of the
above) is then stored with its new turn in one more, without a transaction or a lock
(``chat.live.writes``): the database refuses what changed in between (a second running turn, a
reused client id, a person taking the conversation), and the rarer cases take the conversation's
lock as before (``_start_locked``).
"""

import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from chat.engine.registry import BoundTools
from chat.live.confirmations import pending_action_decide, typed_decision
from chat.live.conversations import ConversationNotFound, User, conversation_locked_state
from chat.live.handoff import HELD_STATUSES
from chat.live.leases import lease_now
from chat.live.limits import tokens_today
from chat.live.recovery import accepted_before, resend_claim
from chat.live.storage import Emit, NewMessage, StoringSink, messages_append, safe_emit
from chat.live.writes import ConversationUnavailable, Step, step_write
from chat.models import (
    Conversation,
    DailyUsage,
    Message,
    MessageKind,
    MessageRole,
    PendingAction,
    PendingActionState,
    Turn,
    TurnState,
)
from orders.models import Customer

BUSY_TEXT = "Please wait until the assistant has finished its reply, then send your message again."
BUSY_ERROR = {"type": "error", "text": BUSY_TEXT, "retryable": True}
TITLE_CHARS = 80

_CUSTOMER_FIELDS = [f.attname for f in Customer._meta.concrete_fields]
_RUNNING_FIELDS = ("id", "owner", "lease_expires_at", "active_at")


@dataclass(frozen=True)
class Admission:
    """What decides whether a message of ``customer`` in the conversation starts a turn."""

    customer: Customer
    status: str
    title: str
    # The conversation's running turn (id, owner, lease, ``active_at``): busy, or dead.
    running: Turn | None
    pending: bool
    # A turn or a message with this client message id exists.
    accepted: bool
    # The customer's model tokens today; None when the budget is off.
    tokens_today: int | None

    @property
    def held(self) -> bool:
        return self.status in HELD_STATUSES


def admission_read(*, conversation: Conversation, user: User, client_message_id: str) -> Admission:
    """Everything ``turn_submit`` decides on, in one statement.

    Raises: ``ConversationNotFound`` when the conversation is gone or the user no longer acts
    for its customer.
    """
    if user.pk is None:
        raise ConversationNotFound
    read = _admission_row_sql if connection.vendor == "postgresql" else _admission_row_orm
    row = read(conversation.pk, conversation.customer_id, user.pk, client_message_id)
    if row is None or row["conversation_status"] is None:
        raise ConversationNotFound
    turn = None
    if row["running_id"] is not None:
        turn = Turn(
            conversation_id=conversation.pk,
            **{name: row[f"running_{name}"] for name in _RUNNING_FIELDS},
        )
    return Admission(
        customer=Customer(**{name: row[name] for name in _CUSTOMER_FIELDS}),
        status=row["conversation_status"],
        title=row["conversation_title"],
        running=turn,
        pending=bool(row["pending"]),
        accepted=bool(row["turn_accepted"] or row["message_accepted"]),
        tokens_today=int(row["tokens_today"] or 0) if settings.CHAT_DAILY_TOKEN_BUDGET else None,
    )


@cache
def _admission_sql() -> str:
    # Written out because it runs for every message: built by the ORM, compiling its ten
    # subqueries cost more CPU than PostgreSQL spends running the statement.
    customer = Customer._meta
    columns = ", ".join(f'c."{f.column}" AS "{f.attname}"' for f in customer.concrete_fields)
    return f"""
        SELECT {columns},
            conv.status AS conversation_status, conv.title AS conversation_title,
            EXISTS (SELECT 1 FROM {PendingAction._meta.db_table} p
                    WHERE p.conversation_id = conv.id AND p.state = %(pending)s) AS pending,
            EXISTS (SELECT 1 FROM {Turn._meta.db_table} t
                    WHERE t.conversation_id = conv.id AND t.client_message_id = %(client)s)
                AS turn_accepted,
            EXISTS (SELECT 1 FROM {Message._meta.db_table} m
                    WHERE m.conversation_id = conv.id AND m.client_message_id = %(client)s)
                AS message_accepted,
            r.id AS running_id, r.owner AS running_owner,
            r.lease_expires_at AS running_lease_expires_at, r.active_at AS running_active_at,
            (SELECT u.tokens FROM {DailyUsage._meta.db_table} u
             WHERE u.customer_id = c.id AND u.day = %(day)s) AS tokens_today
        FROM {Conversation._meta.db_table} conv
        JOIN {customer.db_table} c ON c.id = conv.customer_id AND c.user_id = %(user)s
        LEFT JOIN LATERAL (
            SELECT id, owner, lease_expires_at, active_at FROM {Turn._meta.db_table}
            WHERE conversation_id = conv.id AND state = %(running)s LIMIT 1
        ) r ON true
        WHERE conv.id = %(conversation)s AND conv.customer_id = %(customer)s
    """  # noqa: S608 - names come from the models' metadata; every value is a parameter


def _admission_row_sql(
    key: uuid.UUID, customer_id: str, user_id: Any, client_message_id: str
) -> dict[str, Any] | None:
    params = {
        "pending": PendingActionState.PENDING,
        "client": client_message_id,
        "day": timezone.localdate(),
        "user": user_id,
        "running": TurnState.RUNNING,
        "conversation": key,
        "customer": customer_id,
    }
    with connection.cursor() as cursor:
        cursor.execute(_admission_sql(), params)
        found = cursor.fetchone()
        if found is None:
            return None
        return dict(zip([column.name for column in cursor.description], found, strict=True))


def _admission_row_orm(
    key: uuid.UUID, customer_id: str, user_id: Any, client_message_id: str
) -> dict[str, Any] | None:
    # The same read for other databases (SQLite in development), built by the ORM.
    running = Turn.objects.filter(conversation_id=key, state=TurnState.RUNNING)
    found = Conversation.objects.filter(pk=key)
    extra: dict[str, Any] = {
        "conversation_status": Subquery(found.values("status")),
        "conversation_title": Subquery(found.values("title")),
        "pending": Exists(
            PendingAction.objects.filter(conversation_id=key, state=PendingActionState.PENDING)
        ),
        "turn_accepted": Exists(
            Turn.objects.filter(conversation_id=key, client_message_id=client_message_id)
        ),
        "message_accepted": Exists(
            Message.objects.filter(conversation_id=key, client_message_id=client_message_id)
        ),
        "tokens_today": tokens_today(OuterRef("pk")),
    }
    extra |= {f"running_{name}": Subquery(running.values(name)[:1]) for name in _RUNNING_FIELDS}
    row: dict[str, Any] | None = (
        Customer.objects.filter(pk=customer_id, user_id=user_id)
        .order_by()
        .values(*_CUSTOMER_FIELDS, **extra)
        .first()
    )
    return row


@dataclass
class Started:
    """A message taken in: the turn it started, or only the stored message (a person holds
    the conversation, ``turn`` is None)."""

    turn: Turn | None
    stored: list[Message] = field(default_factory=list)
    # The confirmation the message decided, if one was waiting.
    resolved: PendingAction | None = None


def turn_start(
    *,
    admission: Admission,
    conversation_id: uuid.UUID,
    user: User,
    text: str,
    client_message_id: str,
    tools: BoundTools,
    emit: Emit,
) -> Started | None:
    """Stores the customer's message with its new turn (or alone, while a person holds the
    conversation); None when it starts nothing (a repeat, or busy: an "error" event says so).

    The caller has refused what ``admission`` already rules out (a repeat, a spent budget, a
    running turn).
    """
    title = None
    if not admission.title:
        title = " ".join(text.split())
        if len(title) > TITLE_CHARS:
            title = title[: TITLE_CHARS - 1] + "…"
    message = NewMessage(
        MessageRole.USER, MessageKind.CUSTOMER, [{"text": text}], client_message_id
    )
    turn = Turn(conversation_id=conversation_id, client_message_id=client_message_id)
    try:
        if admission.held or admission.pending or admission.accepted:
            return _start_locked(turn, message, title, user=user, tools=tools, emit=emit)
        try:
            # In autocommit (a turn worker) a refused statement changes nothing; inside a
            # caller's transaction it must not abort that transaction.
            guard = transaction.atomic() if connection.in_atomic_block else nullcontext()
            with guard:
                stored = step_write(
                    Step(
                        conversation_id=conversation_id,
                        messages=[message],
                        turn_id=turn.pk,
                        new_turn_client_id=client_message_id,
                        title=title,
                        lease=lease_now(),
                        refuse_statuses=HELD_STATUSES,
                    )
                )
        except ConversationUnavailable:
            # A person took the conversation since the read (or it is gone): decide under its lock.
            return _start_locked(turn, message, title, user=user, tools=tools, emit=emit)
        return Started(turn, stored)
    except IntegrityError:
        # Since the read, the same message got in from another tab, or another turn started.
        if accepted_before(conversation_id, client_message_id):
            return None
        if not Turn.objects.filter(
            conversation_id=conversation_id, state=TurnState.RUNNING
        ).exists():
            raise
        safe_emit(emit, BUSY_ERROR)
        return None


def _start_locked(
    turn: Turn,
    message: NewMessage,
    title: str | None,
    *,
    user: User,
    tools: BoundTools,
    emit: Emit,
) -> Started | None:
    conversation_id = turn.conversation_id
    client_message_id = turn.client_message_id
    with transaction.atomic():
        state = conversation_locked_state(conversation_id)
        if state["status"] in HELD_STATUSES:
            # A person has the conversation: they read the message, the model stays silent.
            return Started(None, messages_append(conversation_id, None, [message]))
        if state["running_id"] is not None:
            safe_emit(emit, BUSY_ERROR)
            return None
        resend = accepted_before(conversation_id, client_message_id)
        if resend and not resend_claim(conversation_id, client_message_id):
            return None  # a repeat, or another tab's resend got in first
        resolved = None
        if state["pending_id"] is not None:
            sink = StoringSink(conversation_id=conversation_id, turn=turn, emit=emit)
            resolved = PendingAction.objects.select_for_update().get(pk=state["pending_id"])
            text = message.content[0]["text"]
            answer = pending_action_decide(
                resolved, decision=typed_decision(text), user=user, tools=tools, sink=sink
            )
            # The decision's tool result and the text go into the same user message, so roles
            # keep alternating.
            message = NewMessage(
                MessageRole.USER,
                MessageKind.CUSTOMER,
                [*answer["content"], {"text": text}],
                client_message_id,
            )
            Turn.objects.filter(pk=resolved.turn_id).update(
                state=TurnState.COMPLETED, ended_at=timezone.now()
            )
        # The turn is written with the message, in one statement. A resent message is stored
        # already: the new turn answers it as it is.
        stored = step_write(
            Step(
                conversation_id=conversation_id,
                messages=[] if resend else [message],
                turn_id=turn.pk,
                new_turn_client_id=client_message_id,
                title=None if state["title"] else title,
                lease=lease_now(),
            )
        )
    return Started(turn, stored, resolved)
