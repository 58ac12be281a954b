"""The numbers staff look at: per conversation (the admin list) and per period (the dashboard).

Pure functions over querysets, so each number can be checked against a hand-built data set.
Counting tool calls and tool results needs the JSON content of messages; that is done in the
database (PostgreSQL's jsonpath, SQLite's json_each) so no page loads transcripts to count.
"""

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django import forms
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
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

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
from orders.models import ActorKind, OrderEvent, OrderEventKind

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
    return Q(
        Exists(
            OrderEvent.objects.filter(conversation_id=OuterRef("pk"), kind=OrderEventKind.CANCELLED)
        )
    ) | Q(
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


def percentile(values: list[int], fraction: float) -> float | None:
    """Linear interpolation between closest ranks, like PostgreSQL's percentile_cont."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


# --- The period -------------------------------------------------------------------------------

DEFAULT_DAYS = 30
MAX_DAYS = 366


class DateRangeForm(forms.Form):
    start = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        end = cleaned.get("end") or timezone.localdate()
        start = cleaned.get("start") or end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            raise forms.ValidationError("The start date must be on or before the end date.")
        if (end - start).days + 1 > MAX_DAYS:
            raise forms.ValidationError(f"Choose a period of at most {MAX_DAYS} days.")
        cleaned["start"], cleaned["end"] = start, end
        return cleaned


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # inclusive

    @classmethod
    def last_days(cls, days: int = DEFAULT_DAYS) -> "Period":
        end = timezone.localdate()
        return cls(start=end - timedelta(days=days - 1), end=end)

    @property
    def since(self) -> datetime:
        return timezone.make_aware(datetime.combine(self.start, time.min))

    @property
    def until(self) -> datetime:
        return timezone.make_aware(datetime.combine(self.end + timedelta(days=1), time.min))

    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def window(self, field: str) -> Q:
        return Q(**{f"{field}__gte": self.since, f"{field}__lt": self.until})


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def conversations_per_day(period: Period) -> list[tuple[date, int]]:
    """Conversations started on each day of the period (local time), zeros included."""
    counts = dict(
        Conversation.objects.filter(period.window("created_at"))
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("pk"))
        .values_list("day", "n")
    )
    return [(day, counts.get(day, 0)) for day in period.days()]


def escalation(period: Period) -> tuple[int, int]:
    """(escalated, all) among the conversations started in the period."""
    started = Conversation.objects.filter(period.window("created_at"))
    return started.filter(escalated_q()).count(), started.count()


def bot_cancellations(period: Period) -> int:
    """Orders the customers cancelled through a conversation in the period."""
    return OrderEvent.objects.filter(
        period.window("created_at"),
        kind=OrderEventKind.CANCELLED,
        actor_kind=ActorKind.CUSTOMER,
        conversation_id__isnull=False,
    ).count()


def tool_errors(period: Period) -> tuple[int, int]:
    """(error results, all results) of the tool calls answered in the period."""
    totals = Message.objects.filter(period.window("created_at"), role=MessageRole.USER).aggregate(
        errors=Coalesce(Sum(ContentBlockCount("content", block="toolResult", status="error")), 0),
        results=Coalesce(Sum(ContentBlockCount("content", block="toolResult")), 0),
    )
    return int(totals["errors"]), int(totals["results"])


@dataclass(frozen=True)
class Usage:
    conversations: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int

    @property
    def cost(self) -> Decimal:
        return estimated_cost(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
        )

    def per_conversation(self, value: int | Decimal) -> Decimal | None:
        return Decimal(value) / self.conversations if self.conversations else None

    @property
    def tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )


def usage(period: Period) -> Usage:
    """Tokens of every model call of the conversations started in the period."""
    started = Conversation.objects.filter(period.window("created_at"))
    totals = ModelCall.objects.filter(conversation__in=started).aggregate(
        input=Coalesce(Sum("input_tokens"), 0),
        output=Coalesce(Sum("output_tokens"), 0),
        cache_read=Coalesce(Sum("cache_read_tokens"), 0),
        cache_write=Coalesce(Sum("cache_write_tokens"), 0),
    )
    return Usage(
        conversations=started.count(),
        input_tokens=totals["input"],
        output_tokens=totals["output"],
        cache_read_tokens=totals["cache_read"],
        cache_write_tokens=totals["cache_write"],
    )


def cost_per_day(period: Period) -> list[tuple[date, Decimal]]:
    """Estimated cost of the model calls made on each day of the period."""
    rows = (
        ModelCall.objects.filter(period.window("created_at"))
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            i=Sum("input_tokens"),
            o=Sum("output_tokens"),
            r=Sum("cache_read_tokens"),
            w=Sum("cache_write_tokens"),
        )
    )
    costs = {
        row["day"]: estimated_cost(
            input_tokens=row["i"],
            output_tokens=row["o"],
            cache_read_tokens=row["r"],
            cache_write_tokens=row["w"],
        )
        for row in rows
    }
    return [(day, costs.get(day, Decimal(0))) for day in period.days()]


def latency(period: Period) -> tuple[float | None, float | None, int]:
    """(p50, p95, number of calls) of the model calls' latency in ms; failed calls excluded."""
    values = list(
        ModelCall.objects.filter(period.window("created_at"), error="")
        .values_list("latency_ms", flat=True)
        .iterator(chunk_size=2000)
    )
    return percentile(values, 0.5), percentile(values, 0.95), len(values)


def feedback_score(period: Period) -> tuple[int, int]:
    """(thumbs up, all ratings) given in the period."""
    rated = Feedback.objects.filter(period.window("created_at"))
    return rated.filter(score=FeedbackScore.UP).count(), rated.count()


@dataclass(frozen=True)
class Dashboard:
    period: Period
    per_day: list[tuple[date, int]]
    escalated: int
    conversations: int
    cancellations: int
    tool_errors: int
    tool_results: int
    usage: Usage
    cost_per_day: list[tuple[date, Decimal]]
    latency_p50: float | None
    latency_p95: float | None
    latency_calls: int
    thumbs_up: int
    ratings: int

    @property
    def escalated_share(self) -> float | None:
        return share(self.escalated, self.conversations)

    @property
    def tool_error_rate(self) -> float | None:
        return share(self.tool_errors, self.tool_results)

    @property
    def thumbs_up_share(self) -> float | None:
        return share(self.thumbs_up, self.ratings)


def dashboard(period: Period) -> Dashboard:
    escalated, conversations = escalation(period)
    errors, results = tool_errors(period)
    p50, p95, calls = latency(period)
    up, ratings = feedback_score(period)
    return Dashboard(
        period=period,
        per_day=conversations_per_day(period),
        escalated=escalated,
        conversations=conversations,
        cancellations=bot_cancellations(period),
        tool_errors=errors,
        tool_results=results,
        usage=usage(period),
        cost_per_day=cost_per_day(period),
        latency_p50=p50,
        latency_p95=p95,
        latency_calls=calls,
        thumbs_up=up,
        ratings=ratings,
    )
