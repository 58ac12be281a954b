"""One step of a turn written in one statement: messages with their next seqs, the turn, usage.

A turn's steps (the customer's message, each exchange with the model, the end) each change a
few rows: the conversation's ``last_seq``, new messages, the turn's state and heartbeat, the
model calls' usage. Written as separate ORM calls they cost a round trip each plus
BEGIN/COMMIT/SAVEPOINT, and the turn worker holds the GIL through every one. On PostgreSQL a
step is one data-modifying CTE: the conversation row is updated (and so locked) first, the
messages take the seqs it returns, and everything commits together or not at all, in
autocommit without BEGIN/COMMIT. Nothing written is read back: the caller already has it.

Every row is inserted from the rows the statement updated: a message or model call for a missing
conversation or turn inserts nothing and raises (``ConversationUnavailable``,
``TurnNotRunning``). That is why messages and model calls need no database foreign keys
(``chat.models``), whose deferred checks would cost a statement per row at COMMIT.

Other databases (SQLite for local development and the eval sandbox) get the same rows through
the ORM in one transaction.
"""

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from chat.engine.types import ModelCallRecord
from chat.models import Conversation, DailyUsage, Message, ModelCall, Turn, TurnState

_ENDED = (TurnState.COMPLETED, TurnState.FAILED, TurnState.INTERRUPTED)


@dataclass(frozen=True)
class NewMessage:
    role: str
    kind: str
    content: list[dict[str, Any]]
    client_message_id: str = ""
    author_id: int | None = None


@dataclass
class Step:
    """What one step writes. Every part is optional except the conversation."""

    conversation_id: uuid.UUID
    messages: list[NewMessage] = field(default_factory=list)
    turn_id: uuid.UUID | None = None
    # Creates the turn ``turn_id`` (running) for this client message id.
    new_turn_client_id: str | None = None
    # Sets the turn's state, outcome and error_kind (and ended_at when it is over).
    turn_end: tuple[str, str, str] | None = None
    # Each with the trace id it was made in.
    model_calls: list[tuple[ModelCallRecord, str]] = field(default_factory=list)
    # Sets the conversation's title if it has none yet.
    title: str | None = None
    # The turn's owner and lease (``chat.live.leases.lease_now``), renewed with each write.
    lease: tuple[str, datetime] | None = None
    # Whether the turn must still be running (a step of the turn's own, not a decision that
    # resumes it): if recovery closed it meanwhile, nothing is written (``TurnClosed``).
    while_running: bool = True
    # Conversation statuses in which nothing is written (``ConversationUnavailable``): a new
    # turn checked without a lock that a person took the conversation meanwhile.
    refuse_statuses: tuple[str, ...] = ()


class TurnNotRunning(Exception):
    """The step's turn is no longer running: nothing of the step was written."""


class ConversationUnavailable(Conversation.DoesNotExist):
    """The conversation is gone, or in one of the step's ``refuse_statuses``: nothing of the
    step was written."""


def step_write(step: Step) -> list[Message]:
    """Writes ``step`` atomically and returns the stored messages (with ids and seqs).

    Raises: ``ValueError`` for model calls without a turn; ``IntegrityError`` when the new
    turn's client message id was already used, or another turn of the conversation is running;
    ``TurnNotRunning`` when the step updates a turn that must be running and is not;
    ``ConversationUnavailable`` when the conversation is gone or in a refused status. Nothing is
    written then.
    """
    if step.model_calls and step.turn_id is None:
        # The turn's update is what proves the conversation exists (no database key does).
        raise ValueError("Model calls are stored with the turn that made them.")
    now = timezone.now()
    if connection.vendor == "postgresql":
        rows = _write_postgresql(step, now)
    else:
        rows = _write_orm(step, now)
    return [
        Message(
            id=pk,
            conversation_id=step.conversation_id,
            turn_id=step.turn_id,
            seq=seq,
            role=item.role,
            kind=item.kind,
            content=item.content,
            client_message_id=item.client_message_id,
            author_id=item.author_id,
            created_at=now,
        )
        for (pk, seq), item in zip(rows, step.messages, strict=True)
    ]


def _turn_end_fields(step: Step, now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {"active_at": now}
    if step.turn_end is not None:
        state, outcome, error_kind = step.turn_end
        values.update(state=state, outcome=outcome, error_kind=error_kind[:32])
        if state in _ENDED:
            values["ended_at"] = now
    return values


def _usage_row(step: Step, call: tuple[ModelCallRecord, str], now: datetime) -> list[Any]:
    record, trace_id = call
    return [
        step.conversation_id,
        step.turn_id,
        record.model_id[:200],
        (record.stop_reason or "")[:64],
        max(0, record.input_tokens),
        max(0, record.output_tokens),
        max(0, record.cache_read_tokens),
        max(0, record.cache_write_tokens),
        max(0, record.latency_ms),
        record.error[:200],
        trace_id[:32],
        now,
    ]


def _tokens(step: Step) -> int:
    return sum(max(0, r.input_tokens) + max(0, r.output_tokens) for r, _ in step.model_calls)


_USAGE_COLUMNS = (
    "conversation_id, turn_id, model_id, stop_reason, input_tokens, output_tokens, "
    "cache_read_tokens, cache_write_tokens, latency_ms, error, trace_id, created_at"
)
# The columns that differ per call (the middle of ``_usage_row``), with their SQL types.
_USAGE_ITEM = list(
    zip(
        _USAGE_COLUMNS.split(", ")[2:11],
        ("text", "text", "int", "int", "int", "int", "int", "text", "text"),
        strict=True,
    )
)

# The statement's parts; which ones a step uses depends on what it writes. Only these constant
# fragments are ever joined into SQL, every value is a parameter.
_TURN_SQL = (
    "turn AS (UPDATE chat_turn SET active_at = %s, state = coalesce(%s, state), "
    "outcome = coalesce(%s, outcome), error_kind = coalesce(%s, error_kind), "
    "ended_at = coalesce(%s, ended_at), owner = coalesce(%s, owner), "
    "lease_expires_at = coalesce(%s, lease_expires_at) "
    "WHERE id = %s AND conversation_id = %s AND (state = 'running' OR NOT %s) RETURNING id)"
)
_NO_TURN_SQL = "turn AS (SELECT 1 AS id)"
# Inserted only if the conversation's update went through.
_NEW_TURN_SQL = (
    "new_turn AS (INSERT INTO chat_turn (id, conversation_id, state, started_at, active_at, "
    "outcome, error_kind, client_message_id, owner, lease_expires_at) "
    "SELECT %s, %s, 'running', %s, %s, '', '', %s, %s, %s FROM conv)"
)
# The conversation is updated (so locked) only if the turn's update went through, and its
# status is not refused (checked on the row as it is once locked).
_CONVERSATION_SQL = (
    "conv AS (UPDATE chat_conversation SET last_seq = last_seq + %s, updated_at = %s, "
    "title = CASE WHEN title = '' THEN coalesce(%s, '') ELSE title END "
    "WHERE id = %s AND NOT (status = ANY(%s)) AND EXISTS (SELECT 1 FROM turn) "
    "RETURNING last_seq - %s AS base)"
)
# The same columns as the ORM path's, in the order of ``_usage_row``. The calls (like the
# messages below) arrive as one JSON parameter: as arrays, one per column, turning them into SQL
# literals cost more CPU than the rest of the step.
_USAGE_SQL = (
    "usage AS (INSERT INTO chat_modelcall ("  # noqa: S608 - constant fragments only
    + _USAGE_COLUMNS
    + ") SELECT %s, %s, item.*, %s::timestamptz FROM jsonb_to_recordset(%s::jsonb) AS item("
    + ", ".join(f"{column} {kind}" for column, kind in _USAGE_ITEM)
    + ") WHERE EXISTS (SELECT 1 FROM turn))"
)
# The customer's tokens today (``chat.models.DailyUsage``), with the calls that used them.
_DAILY_SQL = (
    "daily AS (INSERT INTO chat_dailyusage (customer_id, day, tokens) "
    "SELECT customer_id, %s, %s FROM chat_conversation "
    "WHERE id = %s AND EXISTS (SELECT 1 FROM turn) "
    "ON CONFLICT (customer_id, day) "
    "DO UPDATE SET tokens = chat_dailyusage.tokens + EXCLUDED.tokens)"
)
_MESSAGES_SQL = (
    "stored AS (INSERT INTO chat_message (conversation_id, turn_id, seq, role, kind, content, "
    "client_message_id, author_id, created_at) "
    "SELECT %s, %s, conv.base + item.ord, item.value->>'role', item.value->>'kind', "
    "item.value->'content', item.value->>'client_message_id', "
    "(item.value->>'author_id')::bigint, %s FROM conv, "
    "jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS item(value, ord) "
    "RETURNING id, seq)"
)
# One row saying whether the turn's and the conversation's updates went through, then the
# stored messages' ids and seqs.
_RESULT_SQL = (
    " SELECT 0, (SELECT count(*) FROM turn), (SELECT count(*) FROM conv) UNION ALL "
    "SELECT 1, id, seq FROM stored ORDER BY 1, 3"
)
_RESULT_NO_MESSAGES_SQL = " SELECT 0, (SELECT count(*) FROM turn), (SELECT count(*) FROM conv)"
_RESULT_NO_CONVERSATION_SQL = " SELECT 0, (SELECT count(*) FROM turn), 1"


def _write_postgresql(step: Step, now: datetime) -> list[tuple[int, int]]:
    count = len(step.messages)
    owner, lease_expires_at = step.lease if step.lease is not None else (None, None)
    ctes: list[str] = []
    params: list[Any] = []
    if step.new_turn_client_id is not None or step.turn_id is None:
        ctes.append(_NO_TURN_SQL)
    else:
        values = _turn_end_fields(step, now)
        ctes.append(_TURN_SQL)
        params += [now, values.get("state"), values.get("outcome"), values.get("error_kind")]
        params += [values.get("ended_at"), owner, lease_expires_at]
        params += [step.turn_id, step.conversation_id, step.while_running]
    # A new turn (even a resend's, with no message) is written only through the conversation.
    updates_conversation = bool(count) or step.title is not None or step.new_turn_client_id
    if updates_conversation:
        ctes.append(_CONVERSATION_SQL)
        params += [count, now, step.title, step.conversation_id, list(step.refuse_statuses)]
        params.append(count)
    if step.new_turn_client_id is not None:
        ctes.append(_NEW_TURN_SQL)
        params += [step.turn_id, step.conversation_id, now, now, step.new_turn_client_id]
        params += [owner or "", lease_expires_at]
    if step.model_calls:
        ctes.append(_USAGE_SQL)
        rows = [_usage_row(step, call, now)[2:11] for call in step.model_calls]
        params += [step.conversation_id, step.turn_id, now]
        names = [column for column, _ in _USAGE_ITEM]
        params.append(json.dumps([dict(zip(names, row, strict=True)) for row in rows]))
        ctes.append(_DAILY_SQL)
        params += [timezone.localdate(now), _tokens(step), step.conversation_id]
    if count:
        ctes.append(_MESSAGES_SQL)
        params += [step.conversation_id, step.turn_id, now]
        params.append(
            json.dumps(
                [
                    {
                        "role": m.role,
                        "kind": m.kind,
                        "content": m.content,
                        "client_message_id": m.client_message_id,
                        "author_id": m.author_id,
                    }
                    for m in step.messages
                ]
            )
        )
        result = _RESULT_SQL
    else:
        result = _RESULT_NO_MESSAGES_SQL if updates_conversation else _RESULT_NO_CONVERSATION_SQL
    with connection.cursor() as cursor:
        cursor.execute("WITH " + ", ".join(ctes) + result, params)
        rows_written = cursor.fetchall()
    _, turn_updated, conversation_updated = rows_written[0]
    if not turn_updated:
        raise TurnNotRunning(str(step.turn_id))
    if not conversation_updated:
        raise ConversationUnavailable(f"Conversation {step.conversation_id} is not writable.")
    return [(int(pk), int(seq)) for _, pk, seq in rows_written[1:]]


def _write_orm(step: Step, now: datetime) -> list[tuple[int, int]]:
    owner, lease_expires_at = step.lease if step.lease is not None else ("", None)
    with transaction.atomic():
        if step.new_turn_client_id is None and step.turn_id is not None:
            turns = Turn.objects.filter(pk=step.turn_id, conversation_id=step.conversation_id)
            if step.while_running:
                turns = turns.filter(state=TurnState.RUNNING)
            lease = {"owner": owner, "lease_expires_at": lease_expires_at} if step.lease else {}
            if not turns.update(**_turn_end_fields(step, now), **lease):
                raise TurnNotRunning(str(step.turn_id))
        conversation = (
            Conversation.objects.select_for_update()
            .only("pk", "last_seq", "title", "status", "customer_id")
            .filter(pk=step.conversation_id)
            .first()
        )
        if conversation is None or conversation.status in step.refuse_statuses:
            raise ConversationUnavailable(f"Conversation {step.conversation_id} is not writable.")
        changes: dict[str, Any] = {"last_seq": F("last_seq") + len(step.messages)}
        if step.title is not None and not conversation.title:
            changes["title"] = step.title
        Conversation.objects.filter(pk=step.conversation_id).update(updated_at=now, **changes)
        if step.new_turn_client_id is not None:
            Turn.objects.create(
                id=step.turn_id,
                conversation_id=step.conversation_id,
                client_message_id=step.new_turn_client_id,
                active_at=now,
                owner=owner,
                lease_expires_at=lease_expires_at,
            )
        if step.model_calls:
            usage, _ = DailyUsage.objects.get_or_create(
                customer_id=conversation.customer_id, day=timezone.localdate(now)
            )
            DailyUsage.objects.filter(pk=usage.pk).update(tokens=F("tokens") + _tokens(step))
        ModelCall.objects.bulk_create(
            ModelCall(
                **dict(zip(_USAGE_COLUMNS.split(", "), _usage_row(step, call, now), strict=True))
            )
            for call in step.model_calls
        )
        rows = []
        for offset, item in enumerate(step.messages, start=1):
            message = Message.objects.create(
                conversation_id=step.conversation_id,
                turn_id=step.turn_id,
                seq=conversation.last_seq + offset,
                role=item.role,
                kind=item.kind,
                content=item.content,
                client_message_id=item.client_message_id,
                author_id=item.author_id,
            )
            rows.append((message.pk, message.seq))
    return rows
