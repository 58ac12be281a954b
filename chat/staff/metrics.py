"""The numbers of each conversation, for the admin list and its filters, and what tokens cost.

Counting tool calls and tool results needs the JSON content of messages; that is done in the
database (PostgreSQL's jsonpath, SQLite's json_each) so no page loads transcripts to count.
"""

import re
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import NotSupportedError
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce

from chat.models import (
    Conversation,
    ConversationStatus,
    Feedback,
    FeedbackScore,
    Message,
    MessageRole,
    ModelCall,
    PendingAction,
    PendingActionState,
)
from orders.selectors import order_events_cancelled

ESCALATED_STATUSES = (ConversationStatus.WAITING_FOR_AGENT, ConversationStatus.WITH_AGENT)
_NAME = re.compile(r"[A-Za-z]+")


class ContentBlockCount(Func):
    """How many blocks of a message's Converse content are ``block`` (e.g. ``toolUse``).

    With ``status``, only blocks whose ``status`` member equals it (toolResult errors).
    """

    output_field = IntegerField()
    arity = 1

    def __init__(self, expression: Any, *, block: str, status: str = "") -> None:
        if not _NAME.fullmatch(block) or (status and not _NAME.fullmatch(status)):
            raise ValueError("block and status must be plain names")
        self.block = block
        self.status = status
        super().__init__(expression)

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        path = f"$[*].{self.block}"
        if self.status:
            path += f' ? (@.status == "{self.status}")'
        template = f"jsonb_array_length(jsonb_path_query_array(%(expressions)s, '{path}'))"
        return self.as_sql(compiler, connection, template=template, **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        condition = f"json_type(block.value, '$.{self.block}') IS NOT NULL"
        if self.status:
            condition += (
                f" AND json_extract(block.value, '$.{self.block}.status') = '{self.status}'"
            )
        # block and status are checked plain names (see __init__), never user input.
        template = f"(SELECT COUNT(*) FROM json_each(%(expressions)s) AS block WHERE {condition})"  # noqa: S608
        return self.as_sql(compiler, connection, template=template, **extra)

    def as_sql(
        self,
        compiler: Any,
        connection: Any,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> tuple[str, tuple[Any, ...]]:
        if template is None:
            raise NotSupportedError("Counting content blocks needs PostgreSQL or SQLite.")
        return super().as_sql(compiler, connection, function, template, arg_joiner, **extra_context)


def _per_conversation(rows: QuerySet[Any], aggregate: Any) -> Coalesce:
    subquery = (
        rows.filter(conversation=OuterRef("pk"))
        .order_by()
        .values("conversation")
        .annotate(value=aggregate)
        .values("value")
    )
    return Coalesce(Subquery(subquery, output_field=IntegerField()), 0)


def escalated_q() -> Q:
    return Q(escalated_at__isnull=False) | Q(status__in=ESCALATED_STATUSES)


def cancellation_q() -> Q:
    """Conversations in which an order was cancelled, or the customer approved a cancellation."""
    return Q(Exists(order_events_cancelled().filter(conversation_id=OuterRef("pk")))) | Q(
        Exists(
            PendingAction.objects.filter(
                conversation=OuterRef("pk"), state=PendingActionState.APPROVED
            )
        )
    )


def model_error_q() -> Q:
    return Q(Exists(ModelCall.objects.filter(conversation=OuterRef("pk")).exclude(error="")))


def with_metrics(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Annotates each conversation with its counts and token totals, one subquery each.

    ``last_seq`` is already the number of stored messages (seqs never skip).
    """
    calls = ModelCall.objects.all()
    return conversations.annotate(
        n_tool_calls=_per_conversation(
            Message.objects.filter(role=MessageRole.ASSISTANT),
            Sum(ContentBlockCount("content", block="toolUse")),
        ),
        n_model_calls=_per_conversation(calls, Count("pk")),
        tokens_input=_per_conversation(calls, Sum("input_tokens")),
        tokens_output=_per_conversation(calls, Sum("output_tokens")),
        tokens_cache_read=_per_conversation(calls, Sum("cache_read_tokens")),
        tokens_cache_write=_per_conversation(calls, Sum("cache_write_tokens")),
        n_errors=_per_conversation(calls.exclude(error=""), Count("pk")),
        n_feedback_up=_per_conversation(
            Feedback.objects.filter(score=FeedbackScore.UP), Count("pk")
        ),
        n_feedback_down=_per_conversation(
            Feedback.objects.filter(score=FeedbackScore.DOWN), Count("pk")
        ),
        is_escalated=ExpressionWrapper(escalated_q(), output_field=BooleanField()),
    )


_MILLION = Decimal(1_000_000)


def estimated_cost(
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> Decimal:
    """US dollars at the configured per-million-token prices (Bedrock bills cached tokens apart)."""
    total = (
        input_tokens * settings.BEDROCK_PRICE_INPUT_PER_MTOK
        + output_tokens * settings.BEDROCK_PRICE_OUTPUT_PER_MTOK
        + cache_read_tokens * settings.BEDROCK_PRICE_CACHE_READ_PER_MTOK
        + cache_write_tokens * settings.BEDROCK_PRICE_CACHE_WRITE_PER_MTOK
    )
    return Decimal(total) / _MILLION


def conversation_cost(conversation: Any) -> Decimal:
    """The estimated cost of a conversation annotated by ``with_metrics``."""
    return estimated_cost(
        input_tokens=conversation.tokens_input,
        output_tokens=conversation.tokens_output,
        cache_read_tokens=conversation.tokens_cache_read,
        cache_write_tokens=conversation.tokens_cache_write,
    )
