"""Every rule about customers and orders lives here.

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

LookupKey = Literal["email", "phone", "username"]
LOOKUP_KEYS: tuple[LookupKey, ...] = ("email", "phone", "username")


class CustomerNotFound(Exception):
    """No customer matches, or the match is not the acting customer."""


class OrderNotFound(Exception):
    """The order does not exist or belongs to someone else."""


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


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def customer_lookup(*, customer: Customer, key: LookupKey, value: str) -> Customer:
    """Confirms that ``value`` is the acting customer's own email, phone or username.

    Only the acting customer can ever be found: a value that belongs to someone else gives the
    same ``CustomerNotFound`` as a value that belongs to nobody, so the lookup cannot be used to
    enumerate customers. Email and username compare case-insensitively; phone compares digits
    only, so ``(312) 555-8204`` matches ``312-555-8204``.

    Raises: ``CustomerNotFound``; ``ValueError`` for an unknown key.
    """
    value = value.strip()
    if key == "email":
        matches = value.casefold() == customer.email.casefold()
    elif key == "username":
        matches = value.casefold() == customer.username.casefold()
    elif key == "phone":
        digits = _digits(value)
        own = _digits(customer.phone)
        # A leading country code 1 (+1 312 555 8204) is the same North American number.
        matches = bool(digits) and (
            digits == own or (len(digits) == 11 and digits[0] == "1" and digits[1:] == own)
        )
    else:
        raise ValueError(f"Unknown lookup key {key!r}; use email, phone or username.")
    if not matches:
        raise CustomerNotFound(f"No customer with that {key}.")
    return customer


def order_get(*, customer: Customer, order_id: str) -> Order:
    """Returns one of the customer's orders.

    Raises: ``OrderNotFound`` when it does not exist or belongs to another customer.
    """
    try:
        return Order.objects.get(pk=order_id.strip(), customer=customer)
    except Order.DoesNotExist:
        raise OrderNotFound(f"No order {order_id.strip()!r} found.") from None


def order_list(*, customer: Customer) -> list[Order]:
    """Returns the customer's own orders, newest first."""
    return list(Order.objects.filter(customer=customer).order_by("-created_at", "id"))


def order_cancel(*, customer: Customer, order_id: str, actor: Actor) -> Order:
    """Cancels one of the customer's orders if it is still ``Processing``.

    The status change is a conditional UPDATE, so of any number of concurrent callers exactly
    one succeeds and exactly one ``OrderEvent`` is written. Staff act on behalf of the order's
    customer (``actor`` says who really did it).

    Raises: ``OrderNotFound`` (missing or not the customer's), ``OrderNotCancellable``.
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
