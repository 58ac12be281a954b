"""Read-only views of conversations for staff: what was said, what the model did, what it cost.

Nobody (superusers included) adds, edits or deletes a transcript here: conversations are an
audit record, removed only by the retention command (``purge_conversations``). Acting on a
conversation goes through ``chat.staff.handoff`` (the inbox), never through a form.
"""

import io
import re
import zipfile
from typing import Any

from django.contrib import admin
from django.db.models import Exists, OuterRef, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone

from chat.models import Conversation, Feedback, FeedbackScore, Message, ModelCall
from chat.staff.eval_drafts import conversation_draft
from chat.staff.export import conversations_csv, conversations_json
from chat.staff.metrics import (
    cancellation_q,
    conversation_cost,
    escalated_q,
    model_error_q,
    with_metrics,
)
from chat.staff.transcript import conversation_transcript
from orders.selectors import order_events_naming


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Filters ------------------------------------------------------------------------------------


class YesNoFilter(admin.SimpleListFilter):
    condition: Q

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(self.get_condition())
        if self.value() == "no":
            return queryset.exclude(self.get_condition())
        return queryset

    def get_condition(self) -> Q:
        raise NotImplementedError


class EscalatedFilter(YesNoFilter):
    title = "escalated to a person"
    parameter_name = "escalated"

    def get_condition(self) -> Q:
        return escalated_q()


class CancellationFilter(YesNoFilter):
    title = "contains a cancellation"
    parameter_name = "cancellation"

    def get_condition(self) -> Q:
        return cancellation_q()


class ModelErrorFilter(YesNoFilter):
    title = "had a model error"
    parameter_name = "model_error"

    def get_condition(self) -> Q:
        return model_error_q()


class FeedbackFilter(admin.SimpleListFilter):
    title = "feedback"
    parameter_name = "feedback"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("up", "Thumbs up"), ("down", "Thumbs down"), ("none", "No feedback")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        rated = Feedback.objects.filter(conversation=OuterRef("pk"))
        if self.value() == "up":
            return queryset.filter(Exists(rated.filter(score=FeedbackScore.UP)))
        if self.value() == "down":
            return queryset.filter(Exists(rated.filter(score=FeedbackScore.DOWN)))
        if self.value() == "none":
            return queryset.exclude(Exists(rated))
        return queryset


# --- Conversations ------------------------------------------------------------------------------

# What an order id looks like in a search box: one word, no spaces.
_ORDER_ID = re.compile(r"[\w-]{1,32}")


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "__str__",
        "customer",
        "status",
        "created_at",
        "updated_at",
        "messages",
        "tool_calls",
        "tokens",
        "cost",
        "escalated",
        "feedback",
        "errors",
    )
    list_filter = (
        "status",
        ("created_at", admin.DateFieldListFilter),
        EscalatedFilter,
        CancellationFilter,
        ModelErrorFilter,
        FeedbackFilter,
    )
    search_fields = ("id", "title", "customer__id", "customer__name", "customer__email")
    search_help_text = (
        "Customer name, email or id, conversation title or id, or an order id used in a tool call."
    )
    list_select_related = ("customer",)
    date_hierarchy = "created_at"
    fields = (
        "id",
        "title",
        "customer",
        "owner",
        "status",
        "created_at",
        "updated_at",
        "escalated_at",
    )
    readonly_fields = fields
    change_form_template = "admin/chat/conversation/change_form.html"
    actions = ["export_json", "export_csv", "draft_eval_case"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return with_metrics(super().get_queryset(request).select_related("customer", "owner"))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str
    ) -> tuple[QuerySet[Conversation], bool]:
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if not _ORDER_ID.fullmatch(term):
            return results, may_have_duplicates
        # An order id appears as a JSON string in tool inputs and results ("order_id": "37129"),
        # never quoted like that in what people type.
        in_tool_call = Message.objects.annotate(text=Cast("content", TextField())).filter(
            conversation=OuterRef("pk"), text__icontains=f'"{term}"'
        )
        in_audit_trail = order_events_naming(order_id=term).filter(conversation_id=OuterRef("pk"))
        return (
            queryset.filter(
                Q(pk__in=results.values("pk")) | Q(Exists(in_tool_call)) | Q(Exists(in_audit_trail))
            ),
            may_have_duplicates,
        )

    @admin.display(description="Messages", ordering="last_seq")
    def messages(self, conversation: Conversation) -> int:
        return conversation.last_seq

    @admin.display(description="Tool calls", ordering="n_tool_calls")
    def tool_calls(self, conversation: Any) -> int:
        return int(conversation.n_tool_calls)

    @admin.display(description="Tokens (in / out / cached)")
    def tokens(self, conversation: Any) -> str:
        cached = conversation.tokens_cache_read + conversation.tokens_cache_write
        return f"{conversation.tokens_input:,} / {conversation.tokens_output:,} / {cached:,}"

    @admin.display(description="Est. cost")
    def cost(self, conversation: Any) -> str:
        return f"${conversation_cost(conversation):.4f}"

    @admin.display(description="Escalated", boolean=True, ordering="is_escalated")
    def escalated(self, conversation: Any) -> bool:
        return bool(conversation.is_escalated)

    @admin.display(description="Feedback")
    def feedback(self, conversation: Any) -> str:
        up, down = conversation.n_feedback_up, conversation.n_feedback_down
        if not up and not down:
            return "—"
        return f"👍 {up} · 👎 {down}"

    @admin.display(description="Errors", ordering="n_errors")
    def errors(self, conversation: Any) -> int:
        return int(conversation.n_errors)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if obj is not None:
            context["transcript"] = conversation_transcript(obj)
            context["totals"] = {
                "cost": conversation_cost(obj),
                "cached": obj.tokens_cache_read + obj.tokens_cache_write,
            }
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- Export

    def has_export_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("chat.export_conversations")

    @admin.action(description="Export selected conversations as JSON", permissions=["export"])
    def export_json(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> StreamingHttpResponse:
        return _download(conversations_json(_plain(queryset)), "json", "application/json")

    @admin.action(description="Export selected conversations as CSV", permissions=["export"])
    def export_csv(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> StreamingHttpResponse:
        return _download(conversations_csv(_plain(queryset)), "csv", "text/csv; charset=utf-8")

    # "export": a draft leaves the system like an export does, so it takes the same permission
    # (chat.export_conversations: the Support lead role has it, the Support agent role lacks it).
    @admin.action(
        description="Draft an eval case from the selected conversations", permissions=["export"]
    )
    def draft_eval_case(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> HttpResponse:
        """One YAML draft per conversation (a zip when there are several).

        The file names carry only the time, never the conversation's id or its customer.
        """
        now = timezone.now()
        stamp = now.strftime("%Y%m%d-%H%M%S")
        conversations = _plain(queryset).select_related("customer")
        drafts = [conversation_draft(conversation, now=now) for conversation in conversations]
        if len(drafts) == 1:
            response = HttpResponse(drafts[0], content_type="application/yaml; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="draft-{stamp}.yaml"'
            return response
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for number, draft in enumerate(drafts, start=1):
                archive.writestr(f"draft-{stamp}-{number}.yaml", draft)
        response = HttpResponse(buffer.getvalue(), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="eval-drafts-{stamp}.zip"'
        return response


def _plain(queryset: QuerySet[Conversation]) -> QuerySet[Conversation]:
    # The export reads its own rows; the list's per-row subqueries would only slow it down.
    return Conversation.objects.filter(pk__in=queryset.values("pk"))


def _download(chunks: Any, extension: str, content_type: str) -> StreamingHttpResponse:
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="conversations-{stamp}.{extension}"'
    return response


@admin.register(ModelCall)
class ModelCallAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "model_id",
        "stop_reason",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "latency_ms",
        "error",
    )
    list_filter = ("model_id", "stop_reason", "error")
    list_select_related = ("conversation",)
    date_hierarchy = "created_at"
    fields = ("conversation", "turn", *list_display, "trace_id")
    readonly_fields = fields
    search_fields = ("trace_id",)
