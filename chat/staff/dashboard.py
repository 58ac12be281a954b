"""The support leads' dashboard: what happened in a period, as numbers and small charts.

Pure functions over querysets, so each number can be checked against a hand-built data set;
``dashboard_view`` renders them (wrapped by ``admin.site.admin_view`` in the URLconf).
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from chat.models import Conversation, Feedback, FeedbackScore, Message, MessageRole, ModelCall
from chat.staff import charts
from chat.staff.metrics import ContentBlockCount, escalated_q, estimated_cost
from orders.selectors import cancellations_by_customers_count


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
    return cancellations_by_customers_count(since=period.since, until=period.until)


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


# --- The page ----------------------------------------------------------------------------------


def _percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def _dollars(value: float) -> str:
    return f"${value:.4f}"


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """The support leads' dashboard (wrapped by ``admin.site.admin_view`` in the URLconf)."""
    if not request.user.has_perm("chat.view_dashboard"):
        raise PermissionDenied
    form = DateRangeForm(request.GET or None)
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": "Support dashboard",
        "form": form,
    }
    period = None
    if not form.is_bound:
        period = Period.last_days()
        form = DateRangeForm(initial={"start": period.start, "end": period.end})
        context["form"] = form
    elif form.is_valid():
        period = Period(start=form.cleaned_data["start"], end=form.cleaned_data["end"])
    if period is not None:
        data = dashboard(period)
        context["data"] = data
        context["kpis"] = dashboard_figures(data)
        context["charts"] = {
            "per_day": charts.bar_chart(
                chart_id="per-day",
                title="Conversations per day",
                description=(
                    f"{data.conversations} conversations started between {period.start} and "
                    f"{period.end}; the table below lists each day."
                ),
                points=[(day.strftime("%b %d"), n) for day, n in data.per_day],
                label=lambda value: f"{value:.0f}",
            ),
            "cost_per_day": charts.bar_chart(
                chart_id="cost-per-day",
                title="Estimated model cost per day (USD)",
                description=(
                    "Estimated cost of the model calls made each day, "
                    f"{data.usage.cost:.4f} USD in total."
                ),
                points=[(day.strftime("%b %d"), float(cost)) for day, cost in data.cost_per_day],
                label=_dollars,
            ),
            "rates": charts.bar_chart(
                chart_id="rates",
                title="Escalations, tool errors and thumbs up",
                description=(
                    "Share of conversations escalated, of tool results that were errors, "
                    "and of ratings that were thumbs up."
                ),
                points=[
                    ("Escalated", data.escalated_share or 0.0),
                    ("Tool errors", data.tool_error_rate or 0.0),
                    ("Thumbs up", data.thumbs_up_share or 0.0),
                ],
                label=_percent,
                max_value=1.0,
            ),
            "latency": charts.bar_chart(
                chart_id="latency",
                title="Model latency (ms)",
                description="Median and 95th percentile latency of successful model calls.",
                points=[("p50", data.latency_p50 or 0.0), ("p95", data.latency_p95 or 0.0)],
                label=lambda value: f"{value:,.0f} ms",
            ),
        }
    return TemplateResponse(request, "admin/chat/dashboard.html", context)


def _share(value: float | None, part: int, whole: int, noun: str) -> str:
    if value is None:
        return f"no {noun}"
    return f"{_percent(value)} ({part} of {whole})"


def dashboard_figures(data: Dashboard) -> list[tuple[str, str]]:
    """The dashboard's headline numbers as (label, text) pairs."""
    usage = data.usage
    tokens = usage.per_conversation(usage.tokens)
    cost = usage.per_conversation(usage.cost)
    latency = (
        f"{data.latency_p50:,.0f} ms / {data.latency_p95:,.0f} ms ({data.latency_calls} calls)"
        if data.latency_p50 is not None and data.latency_p95 is not None
        else "no model calls"
    )
    return [
        ("Conversations", str(data.conversations)),
        (
            "Escalated to a person",
            _share(data.escalated_share, data.escalated, data.conversations, "conversations"),
        ),
        ("Orders cancelled through the assistant", str(data.cancellations)),
        (
            "Tool error rate",
            _share(data.tool_error_rate, data.tool_errors, data.tool_results, "tool results"),
        ),
        (
            "Tokens per conversation",
            f"{tokens:,.0f} ({usage.tokens:,} in total)" if tokens is not None else "—",
        ),
        (
            "Estimated cost per conversation",
            f"${cost:.4f} (${usage.cost:.4f} in total)" if cost is not None else "—",
        ),
        ("Model latency p50 / p95", latency),
        ("Thumbs up", _share(data.thumbs_up_share, data.thumbs_up, data.ratings, "ratings")),
    ]
