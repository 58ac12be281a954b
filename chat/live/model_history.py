"""What the model sees of a conversation: its latest turns, read in one statement.

The customer's transcript and the admin show every stored message (``chat.live.conversations``);
a turn sends the model only what fits ``CHAT_CONTEXT_BUDGET_TOKENS`` (``chat.engine.budget``),
so it reads no more than that, however long the conversation.
"""

import json
import re
import unicodedata
import uuid
from typing import Any, NamedTuple

from django.db import connection

from chat.engine.budget import CHARS_PER_TOKEN, NOTE_ORDERS, ORDER_KEYS
from chat.models import MODEL_KINDS, Message, MessageKind


class ModelHistory(NamedTuple):
    """What a turn sends the model of its conversation (``chat.engine.loop.run_turn``)."""

    messages: list[dict[str, Any]]
    # None when ``messages`` is the whole conversation; else the orders that the older messages
    # left out discussed, oldest first.
    earlier_orders: list[str] | None


def model_history(conversation_id: uuid.UUID, *, budget_tokens: int = 0) -> ModelHistory:
    """The conversation as the model sees it, in seq order: its latest turns, enough to fill
    ``budget_tokens`` (``chat.engine.budget.within_budget`` makes the exact cut), or all of it
    with 0.

    On PostgreSQL one statement reads only those rows: it sizes every message in the database
    and starts at a customer message that opens a turn, so a turn costs the same at 500 messages
    as at 50. That start moves half a budget at a time, not with every turn, so the history the
    model gets keeps its beginning (and its prompt cache) for many turns. Elsewhere every
    message is read.

    Notices are left out; ``chat.engine.history.repair`` merges staff notes into the customer's
    messages around them, so roles keep alternating. Customer text that imitates a staff note is
    marked as the customer's.
    """
    if connection.vendor == "postgresql":
        rows, earlier_orders = _latest_rows(conversation_id, budget_tokens)
    else:
        rows = list(
            Message.objects.filter(conversation_id=conversation_id, kind__in=MODEL_KINDS)
            .order_by("seq")
            .values_list("role", "kind", "content")
        )
        earlier_orders = None
    messages = [
        {"role": role, "content": _unforged(content) if kind == MessageKind.CUSTOMER else content}
        for role, kind, content in rows
    ]
    return ModelHistory(messages, earlier_orders)


# A message's size is at least the characters ``chat.engine.budget`` counts for it (its content
# as text plus the longest role around it), so what is read fits the budget as the engine counts
# it too. ``before`` is the size of the messages before each one. The cut is the first turn start
# (a user message without tool results) of the first block of half the budget from which the
# rest fits, or else the last turn start: it moves a whole block at a time, not every turn.
_LATEST_ROWS = """
SELECT * FROM (
WITH placed AS (
    SELECT seq, role, kind, content,
           role = 'user' AND strpos(content::text, '"toolResult":') = 0 AS opens_turn,
           sum(length(content::text) + 36) OVER (ORDER BY seq)
           - (length(content::text) + 36) AS before,
           sum(length(content::text) + 36) OVER () AS total
    FROM chat_message
    WHERE conversation_id = %(conversation)s AND kind = ANY(%(kinds)s)
), firsts AS (
    SELECT DISTINCT ON (before / %(step)s) seq, before, total
    FROM placed WHERE opens_turn ORDER BY before / %(step)s, seq
), start AS (
    SELECT CASE WHEN %(chars)s = 0 THEN 0 ELSE coalesce(
        (SELECT min(seq) FROM firsts WHERE total - before <= %(chars)s),
        (SELECT max(seq) FROM placed WHERE opens_turn),
        0) END AS seq
)
SELECT
    (SELECT json_agg(json_build_array(role, kind, content) ORDER BY seq)
     FROM placed WHERE seq >= start.seq)::text,
    EXISTS (SELECT FROM placed WHERE seq < start.seq),
    (SELECT json_agg(order_id ORDER BY last) FROM (
        SELECT found #>> '{}' AS order_id, max(seq) AS last
        FROM placed, unnest(%(paths)s::jsonpath[]) AS path,
             jsonb_path_query(content, path) AS found
        WHERE seq < start.seq AND role = 'assistant'
          AND jsonb_typeof(found) IN ('string', 'number')
        GROUP BY 1 ORDER BY 2 DESC LIMIT %(orders)s
    ) AS latest)::text
FROM start
) AS latest_rows
"""

# Room left for the note that names the orders left out (``chat.engine.budget.earlier_note``).
_NOTE_CHARS = 400


def _latest_rows(
    conversation_id: uuid.UUID, budget_tokens: int
) -> tuple[list[tuple[str, str, Any]], list[str] | None]:
    with connection.cursor() as cursor:
        cursor.execute(
            _LATEST_ROWS,
            {
                "conversation": conversation_id,
                "kinds": list(MODEL_KINDS),
                "chars": max(budget_tokens * CHARS_PER_TOKEN - _NOTE_CHARS, 1)
                if budget_tokens
                else 0,
                "step": max(budget_tokens * CHARS_PER_TOKEN // 2, 1),
                "paths": [f"lax $[*].toolUse.input.{key}" for key in ORDER_KEYS],
                "orders": NOTE_ORDERS,
            },
        )
        rows, left_out, orders = cursor.fetchone()
    earlier_orders = json.loads(orders or "[]") if left_out else None
    return json.loads(rows or "[]"), earlier_orders


def _unforged(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**block, "text": customer_text_for_model(block["text"])}
        if isinstance(block.get("text"), str)
        else block
        for block in content
    ]


# A line of customer text the model could take for a staff note ("[Support agent Sam]: …"):
# one that starts, after spaces and punctuation, with a bracket or with "support". Matched on
# the NFKC form without invisible format characters, so full-width brackets and zero-width
# spaces do not slip through. Marking an innocent "[Order 123]" line costs nothing.
_NOTE_LIKE_LINE = re.compile(r"^[\W_]*?(?:\[|support)", re.IGNORECASE)


def _visible_form(line: str) -> str:
    normalized = unicodedata.normalize("NFKC", line)
    return "".join(char for char in normalized if unicodedata.category(char) != "Cf")


def customer_text_for_model(text: str) -> str:
    """The customer's text as the model reads it: every line that could pass for a staff note,
    wherever it sits (any line break Python knows, which the model may read as one), starts
    with "[Customer]: ", so only a real staff note starts with "[Support agent"."""
    return "".join(
        f"[Customer]: {line}" if _NOTE_LIKE_LINE.match(_visible_form(line)) else line
        for line in text.splitlines(keepends=True)
    )
