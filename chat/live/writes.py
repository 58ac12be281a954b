"""One step of a turn written in one statement: messages with their next seqs, the turn, usage.

A turn's steps (the customer's message, each exchange with the model, the end) each change a
few rows: the conversation's ``last_seq``, new messages, the turn's state and heartbeat, the
model calls' usage. Written as separate ORM calls they cost a round trip each plus
BEGIN/COMMIT/SAVEPOINT, and the turn worker holds the GIL through every one. On PostgreSQL a
step is one data-modifying CTE: the conversation row is updated (and so locked) first, the
messages take the seqs it returns, and everything commits together or not at all, in
autocommit without BEGIN/COMMIT. Nothing written is read back: the caller already has it.

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
from chat.models import Conversation, Message, ModelCall, Turn, TurnState

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
    # Records progress on the turn (its heartbeat).
    touch_turn: bool = False
    # Sets the turn's state, outcome and error_kind (and ended_at when it is over).
    turn_end: tuple[str, str, str] | None = None
    model_calls: list[ModelCallRecord] = field(default_factory=list)
    # Sets the conversation's title if it has none yet.
    title: str | None = None


def step_write(step: Step) -> list[Message]:
    """Writes ``step`` atomically and returns the stored messages (with ids and seqs).

    Raises: ``IntegrityError`` when the new turn's client message id was already used (nothing
    is written then); ``Conversation.DoesNotExist`` when the conversation is gone.
    """
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


def _usage_row(step: Step, record: ModelCallRecord, now: datetime) -> list[Any]:
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
        now,
    ]


_USAGE_COLUMNS = (
    "conversation_id, turn_id, model_id, stop_reason, input_tokens, output_tokens, "
    "cache_read_tokens, cache_write_tokens, latency_ms, error, created_at"
)

# The statement's parts; which ones a step uses depends on what it writes. Only these constant
# fragments are ever joined into SQL, every value is a parameter.
_CONVERSATION_SQL = (
    "conv AS (UPDATE chat_conversation SET last_seq = last_seq + %s, updated_at = %s, "
    "title = CASE WHEN title = '' THEN coalesce(%s, '') ELSE title END "
    "WHERE id = %s RETURNING last_seq - %s AS base)"
)
_NEW_TURN_SQL = (
    "new_turn AS (INSERT INTO chat_turn (id, conversation_id, state, started_at, active_at, "
    "outcome, error_kind, client_message_id) VALUES (%s, %s, %s, %s, %s, '', '', %s))"
)
_TURN_SQL = (
    "turn_update AS (UPDATE chat_turn SET active_at = %s, state = coalesce(%s, state), "
    "outcome = coalesce(%s, outcome), error_kind = coalesce(%s, error_kind), "
    "ended_at = coalesce(%s, ended_at) WHERE id = %s)"
)
_USAGE_SQL = (
    "usage AS (INSERT INTO chat_modelcall (conversation_id, turn_id, model_id, stop_reason, "
    "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, latency_ms, error, "
    "created_at) "
    "SELECT %s, %s, * FROM unnest(%s::text[], %s::text[], %s::int[], %s::int[], %s::int[], "
    "%s::int[], %s::int[], %s::text[]) AS item, (SELECT %s::timestamptz) AS at)"
)
_MESSAGES_SQL = (
    "stored AS (INSERT INTO chat_message (conversation_id, turn_id, seq, role, kind, content, "
    "client_message_id, author_id, created_at) "
    "SELECT %s, %s, conv.base + item.ord, item.role, item.kind, item.content::jsonb, "
    "item.client_message_id, item.author_id, %s FROM conv, "
    "unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[]) "
    "WITH ORDINALITY AS item(role, kind, content, client_message_id, author_id, ord) "
    "RETURNING id, seq)"
)
_STORED_SQL = " SELECT id, seq FROM stored ORDER BY seq"
_NOTHING_STORED_SQL = " SELECT NULL, NULL WHERE false"


def _write_postgresql(step: Step, now: datetime) -> list[tuple[int, int]]:
    count = len(step.messages)
    ctes: list[str] = []
    params: list[Any] = []
    if count or step.title is not None:
        ctes.append(_CONVERSATION_SQL)
        params += [count, now, step.title, step.conversation_id, count]
    if step.new_turn_client_id is not None:
        ctes.append(_NEW_TURN_SQL)
        params += [step.turn_id, step.conversation_id, TurnState.RUNNING, now, now]
        params.append(step.new_turn_client_id)
    elif step.turn_id is not None and (step.touch_turn or step.turn_end is not None):
        values = _turn_end_fields(step, now)
        ctes.append(_TURN_SQL)
        params += [now, values.get("state"), values.get("outcome"), values.get("error_kind")]
        params += [values.get("ended_at"), step.turn_id]
    if step.model_calls:
        ctes.append(_USAGE_SQL)
        rows = [_usage_row(step, record, now) for record in step.model_calls]
        params += [step.conversation_id, step.turn_id]
        params += [[row[column] for row in rows] for column in range(2, 10)]
        params.append(now)
    if count:
        ctes.append(_MESSAGES_SQL)
        params += [step.conversation_id, step.turn_id, now]
        params += [
            [m.role for m in step.messages],
            [m.kind for m in step.messages],
            [json.dumps(m.content) for m in step.messages],
            [m.client_message_id for m in step.messages],
            [m.author_id for m in step.messages],
        ]
    if not ctes:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH " + ", ".join(ctes) + (_STORED_SQL if count else _NOTHING_STORED_SQL), params
        )
        rows_written = cursor.fetchall()
    if count and not rows_written:
        raise Conversation.DoesNotExist(f"No conversation {step.conversation_id}.")
    return [(int(pk), int(seq)) for pk, seq in rows_written]


def _write_orm(step: Step, now: datetime) -> list[tuple[int, int]]:
    with transaction.atomic():
        conversation = (
            Conversation.objects.select_for_update()
            .only("pk", "last_seq", "title")
            .get(pk=step.conversation_id)
        )
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
            )
        elif step.turn_id is not None and (step.touch_turn or step.turn_end is not None):
            Turn.objects.filter(pk=step.turn_id).update(**_turn_end_fields(step, now))
        ModelCall.objects.bulk_create(
            ModelCall(
                **dict(zip(_USAGE_COLUMNS.split(", "), _usage_row(step, record, now), strict=True))
            )
            for record in step.model_calls
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
