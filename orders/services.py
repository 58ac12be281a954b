"""Every write to customers and orders, with its rules, lives here (reads: ``orders.selectors``).

Callers (chat tools, admin actions, views) pass the customer they act for; every query is
scoped by that customer, so another customer's order is indistinguishable from a missing one.
"""

import uuid
from dataclasses import dataclass
from typing import Literal

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from orders.models import ActorKind, Customer, Order, OrderEvent, OrderEventKind, OrderStatus
from orders.selectors import order_get


class OrderNotCancellable(Exception):
    """The order exists and is the customer's, but its status no longer allows cancelling."""

    def __init__(self, order: Order) -> None:
        super().__init__(
            f"Order {order.id} is {order.status}; only Processing orders can be cancelled."
        )
        self.order = order


@dataclass(frozen=True)
class Actor:
    """Who performs a write, for the audit trail."""

    kind: ActorKind
    user: User | None = None
    customer: Customer | None = None
    conversation_id: uuid.UUID | None = None

    @classmethod
    def for_customer(
        cls, customer: Customer, *, conversation_id: uuid.UUID | None = None
    ) -> "Actor":
        return cls(
            kind=ActorKind.CUSTOMER,
            customer=customer,
            user=customer.user,
            conversation_id=conversation_id,
        )

    @classmethod
    def for_staff(cls, user: User) -> "Actor":
        return cls(kind=ActorKind.STAFF, user=user)

    @classmethod
    def system(cls) -> "Actor":
        return cls(kind=ActorKind.SYSTEM)


def order_cancel(*, customer: Customer, order_id: str, actor: Actor) -> Order:
    """Cancels one of the customer's orders if it is still ``Processing``.

    The status change is a conditional UPDATE, so of any number of concurrent callers exactly
    one succeeds and exactly one ``OrderEvent`` is written. Staff act on behalf of the order's
    customer (``actor`` says who really did it).

    Raises: ``orders.selectors.OrderNotFound`` (missing or not the customer's),
    ``OrderNotCancellable``.
    """
    order_id = order_id.strip()
    with transaction.atomic():
        updated = Order.objects.filter(
            pk=order_id, customer=customer, status=OrderStatus.PROCESSING
        ).update(status=OrderStatus.CANCELLED, updated_at=timezone.now())
        order = order_get(customer=customer, order_id=order_id)
        if not updated:
            raise OrderNotCancellable(order)
        OrderEvent.objects.create(
            order=order,
            kind=OrderEventKind.CANCELLED,
            actor_kind=actor.kind,
            actor_user=actor.user,
            actor_customer=actor.customer,
            conversation_id=actor.conversation_id,
            detail={"from_status": OrderStatus.PROCESSING, "to_status": OrderStatus.CANCELLED},
        )
    return order


def customer_login_ensure(*, customer: Customer, password: str | None = None) -> User:
    """Returns the sign-in user of ``customer``, creating and linking one if needed.

    The user gets the customer's username, name and email. With ``password`` it is set (and
    validated); without, a new user gets an unusable password (demo sign-in or Cognito only).

    Raises: ``django.core.exceptions.ValidationError`` for a password the validators reject, or
    when the username is taken by a user linked to another customer.
    """
    from django.contrib.auth import get_user_model, password_validation
    from django.core.exceptions import ValidationError

    User = get_user_model()
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        user = customer.user
        if user is None:
            user, created = User.objects.get_or_create(username=customer.username)
            if Customer.objects.filter(user=user).exclude(pk=customer.pk).exists():
                raise ValidationError(
                    f"The username {customer.username!r} belongs to another customer's login."
                )
            first, _, last = customer.name.partition(" ")
            user.first_name, user.last_name, user.email = first, last, customer.email
            # A new user's empty password is "usable" to Django; make it explicitly unusable.
            if password is None and created:
                user.set_unusable_password()
            customer.user = user
            customer.save(update_fields=["user"])
        if password is not None:
            password_validation.validate_password(password, user)
            user.set_password(password)
        user.save()
    return user


def customer_link_login(
    *, user: User, email: str
) -> Literal["linked", "already_linked", "email_taken", "no_customer"]:
    """Links the customer with ``email`` (case-insensitive) to the sign-in ``user``.

    Nothing changes when ``user`` already acts as a customer ("already_linked"), or when that
    customer is linked to another account ("email_taken"; a conditional update, so a link made
    elsewhere meanwhile stays theirs). Callers check that the email is verified first.
    """
    if Customer.objects.filter(user=user).exists():
        return "already_linked"
    if Customer.objects.filter(email__iexact=email, user__isnull=True).update(user=user):
        return "linked"
    if Customer.objects.filter(email__iexact=email).exists():
        return "email_taken"
    return "no_customer"
