"""Conversations exported for audit or analysis, streamed so a large selection stays small.

JSON: a list of conversations, each with its metadata, its model calls and its messages in
Converse format (``role``, ``content``) plus ``seq``, ``kind`` and ``created_at``.
CSV: one row per message with the text the customer saw and the tokens of the model call that
produced it.
"""

import csv
import io
from collections.abc import Iterator
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet

from chat.live.conversations import message_event
from chat.models import Conversation, Message, ModelCall
from chat.staff.transcript import pair_model_calls

CONVERSATION_CHUNK = 100
MESSAGE_CHUNK = 500

CSV_HEADER = [
    "conversation_id",
    "seq",
    "role",
    "kind",
    "visible_text",
    "created_at",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
]


def _conversations(queryset: QuerySet[Conversation]) -> Iterator[Conversation]:
    return queryset.order_by("created_at", "pk").iterator(chunk_size=CONVERSATION_CHUNK)


def _messages(conversation: Conversation) -> Iterator[Message]:
    return (
        Message.objects.filter(conversation_id=conversation.pk)
        .order_by("seq")
        .iterator(chunk_size=MESSAGE_CHUNK)
    )


def _model_calls(conversation: Conversation) -> list[ModelCall]:
    return list(ModelCall.objects.filter(conversation_id=conversation.pk).order_by("created_at"))


def _call_json(call: ModelCall) -> dict[str, Any]:
    return {
        "created_at": call.created_at,
        "model_id": call.model_id,
        "stop_reason": call.stop_reason,
        "input_tokens": call.input_tokens,
        "output_tokens": call.output_tokens,
        "cache_read_tokens": call.cache_read_tokens,
        "cache_write_tokens": call.cache_write_tokens,
        "latency_ms": call.latency_ms,
        "error": call.error,
    }


def conversations_json(queryset: QuerySet[Conversation]) -> Iterator[str]:
    """The selected conversations as one JSON array, a conversation at a time."""
    encoder = DjangoJSONEncoder(ensure_ascii=False)
    yield "["
    for number, conversation in enumerate(_conversations(queryset)):
        head = {
            "id": conversation.pk,
            "customer_id": conversation.customer_id,
            "status": conversation.status,
            "title": conversation.title,
            "created_at": conversation.created_at,
            "updated_at": conversation.updated_at,
            "escalated_at": conversation.escalated_at,
            "model_calls": [_call_json(call) for call in _model_calls(conversation)],
        }
        # The messages are written one by one into the object's last member.
        opening = encoder.encode(head)[:-1] + ', "messages": ['
        yield ("," if number else "") + "\n" + opening
        for index, message in enumerate(_messages(conversation)):
            item = {
                "seq": message.seq,
                "role": message.role,
                "kind": message.kind,
                "created_at": message.created_at,
                "content": message.content,
            }
            yield ("," if index else "") + encoder.encode(item)
        yield "]}"
    yield "\n]\n"


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` safe to open in a spreadsheet: text that would start a formula gets a leading
    ``'``, which spreadsheets show as text and do not evaluate. Numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def conversations_csv(queryset: QuerySet[Conversation]) -> Iterator[str]:
    """One CSV row per message of the selected conversations; every cell through ``csv_cell``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def row(values: list[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([csv_cell(value) for value in values])
        return buffer.getvalue()

    yield row(CSV_HEADER)
    for conversation in _conversations(queryset):
        for message, call in pair_model_calls(_messages(conversation), _model_calls(conversation)):
            event = message_event(message)
            tokens: list[Any] = (
                [
                    call.input_tokens,
                    call.output_tokens,
                    call.cache_read_tokens,
                    call.cache_write_tokens,
                ]
                if call is not None
                else ["", "", "", ""]
            )
            yield row(
                [
                    conversation.pk,
                    message.seq,
                    message.role,
                    message.kind,
                    event["text"] if event else "",
                    message.created_at.isoformat(),
                    *tokens,
                ]
            )
