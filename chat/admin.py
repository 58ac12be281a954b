"""Read-only views of conversations for staff: what was said, what the model did, what it cost.

Nothing here changes a conversation; a backoffice that acts on them goes through
``chat.services`` like the customer's own socket does.
"""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from chat.models import Conversation, Message, ModelCall, PendingAction
from chat.services import message_event


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MessageInline(ReadOnlyMixin, admin.TabularInline):
    model = Message
    fields = ("seq", "created_at", "kind", "role", "shown_to_customer", "content")
    readonly_fields = fields
    ordering = ("seq",)
    extra = 0

    @admin.display(description="Shown to the customer")
    def shown_to_customer(self, message: Message) -> str:
        event = message_event(message)
        return event["text"] if event else "—"


class PendingActionInline(ReadOnlyMixin, admin.TabularInline):
    model = PendingAction
    fields = ("created_at", "summary", "state", "decided_at", "decided_by")
    readonly_fields = fields
    extra = 0


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("__str__", "customer", "owner", "status", "last_seq", "updated_at")
    list_filter = ("status",)
    search_fields = ("id", "title", "customer__id", "customer__name", "customer__email")
    list_select_related = ("customer", "owner")
    date_hierarchy = "updated_at"
    fields = ("id", "title", "customer", "owner", "status", "created_at", "updated_at", "last_seq")
    readonly_fields = fields
    inlines = [MessageInline, PendingActionInline]


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
    fields = (
        "conversation",
        "turn",
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
    readonly_fields = fields
