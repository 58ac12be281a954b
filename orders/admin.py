from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from orders.models import ActorKind, Customer, Order, OrderEvent
from orders.selectors import OrderNotFound
from orders.services import Actor, OrderNotCancellable, order_cancel


class OrderInline(admin.TabularInline):
    model = Order
    fields = ("id", "product", "quantity", "unit_price", "status", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "email", "phone", "username", "user")
    search_fields = ("id", "name", "email", "phone", "username")
    raw_id_fields = ("user",)
    inlines = [OrderInline]


class OrderEventInline(admin.TabularInline):
    model = OrderEvent
    verbose_name_plural = "Audit trail"
    fields = ("created_at", "kind", "who", "through", "detail")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[OrderEvent]:
        return super().get_queryset(request).select_related("actor_user", "actor_customer")

    @admin.display(description="Who")
    def who(self, event: OrderEvent) -> str:
        if event.actor_kind == ActorKind.CUSTOMER:
            name = event.actor_customer.name if event.actor_customer else "a deleted customer"
            return f"Customer {name}"
        if event.actor_kind == ActorKind.STAFF:
            user = event.actor_user.get_username() if event.actor_user else "a deleted user"
            return f"Staff {user}"
        return "The system"

    @admin.display(description="Through")
    def through(self, event: OrderEvent) -> str:
        if event.conversation_id is None:
            return "Staff action in the admin" if event.actor_kind == ActorKind.STAFF else "—"
        # A link by URL name only: orders knows nothing of the chat app that may serve it.
        try:
            url = reverse("admin:chat_conversation_change", args=[event.conversation_id])
        except NoReverseMatch:
            return f"Conversation {event.conversation_id}"
        return format_html('<a href="{}">Conversation {}</a>', url, event.conversation_id)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    """Orders for every role, superusers included, are read-only here: staff change an order only
    through the audited actions (``cancel_selected``), which write an ``OrderEvent``."""

    list_display = ("id", "customer", "product", "quantity", "unit_price", "status", "updated_at")
    list_filter = ("status",)
    search_fields = ("id", "customer__id", "customer__name", "customer__email")
    list_select_related = ("customer",)
    actions = ["cancel_selected"]
    inlines = [OrderEventInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("orders.cancel_order")

    @admin.action(
        description="Cancel selected orders (only Processing ones)", permissions=["cancel"]
    )
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        actor = Actor.for_staff(request.user)  # type: ignore[arg-type]
        cancelled, refused = [], []
        for order in queryset.select_related("customer"):
            try:
                order_cancel(customer=order.customer, order_id=order.id, actor=actor)
                cancelled.append(order.id)
            except (OrderNotCancellable, OrderNotFound):
                refused.append(order.id)
        if cancelled:
            self.message_user(
                request,
                f"Cancelled {len(cancelled)} order(s): {', '.join(cancelled)}.",
                messages.SUCCESS,
            )
        if refused:
            self.message_user(
                request,
                f"Not cancelled (no longer Processing): {', '.join(refused)}.",
                messages.WARNING,
            )


@admin.register(OrderEvent)
class OrderEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "order", "kind", "actor_kind", "actor_user", "conversation_id")
    list_filter = ("kind", "actor_kind")
    search_fields = ("order__id", "conversation_id")
    list_select_related = ("order", "actor_user")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
