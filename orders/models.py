from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from orders.validators import validate_international_email


class Customer(models.Model):
    # The original's ids are strings; some start with 0 (012345), so never an integer.
    id = models.CharField(primary_key=True, max_length=32)
    name = models.CharField(max_length=200)
    email = models.CharField(max_length=254, validators=[validate_international_email])
    phone = models.CharField(max_length=32, blank=True)
    username = models.CharField(max_length=150, unique=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="customer",
        help_text="The sign-in account that acts as this customer.",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="customer_email_ci_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class OrderStatus(models.TextChoices):
    PROCESSING = "Processing"
    SHIPPED = "Shipped"
    DELIVERED = "Delivered"
    CANCELLED = "Cancelled"


class Order(models.Model):
    id = models.CharField(primary_key=True, max_length=32)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    product = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)
    status = models.CharField(
        max_length=16, choices=OrderStatus.choices, default=OrderStatus.PROCESSING
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "id"]
        # Staff cancel through the audited service (the admin action), never by editing fields.
        permissions = [("cancel_order", "Can cancel an order through the audited action")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__gt=0), name="order_quantity_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(unit_price__gte=0), name="order_unit_price_non_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=OrderStatus.values), name="order_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Order {self.id} ({self.quantity} × {self.product})"


class ActorKind(models.TextChoices):
    CUSTOMER = "customer"
    STAFF = "staff"
    SYSTEM = "system"


class OrderEventKind(models.TextChoices):
    CANCELLED = "cancelled"
    STATUS_RESET = "status_reset"


class AppendOnlyQuerySet(models.QuerySet["OrderEvent"]):
    def update(self, **kwargs: object) -> int:
        raise TypeError("Order events are an audit trail and cannot be changed.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise TypeError("Order events are an audit trail and cannot be deleted.")


class OrderEvent(models.Model):
    """One thing that happened to an order: who did it, when, and through which conversation."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="events")
    kind = models.CharField(max_length=32, choices=OrderEventKind.choices)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The chat conversation it came through, if any. A plain id, not a foreign key: orders
    # knows nothing of chat (the chat admin links it back).
    conversation_id = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    detail = models.JSONField(default=dict, blank=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} order {self.order_id} by {self.actor_kind}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise TypeError("Order events are an audit trail and cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise TypeError("Order events are an audit trail and cannot be deleted.")
