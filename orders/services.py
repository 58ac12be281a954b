"""Every write to customers and orders, with its rules, lives here (reads: ``orders.selectors``).

Callers (chat tools, admin actions, views) pass the customer they act for; every query is
scoped by that customer, so another customer's order is indistinguishable from a missing one.
"""

import uuid
from dataclasses import dataclass
from typing import Literal

from django.contrib.auth import password_validation
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
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


class CustomerLoginRefused(ValidationError):
    """The sign-in would take over an account it must not: staff, or one with its own password."""


PasswordChange = Literal["set", "replaced", "removed", "unchanged"]


@dataclass(frozen=True)
class CustomerLogin:
    """What ``customer_login_provision`` did, for the operator."""

    user: User
    created: bool
    linked: bool
    password_change: PasswordChange


def _refuse_staff(user: User, customer: Customer) -> None:
    if user.is_staff or user.is_superuser:
        raise CustomerLoginRefused(
            f"{user.get_username()!r} is a staff account; a customer never signs in with one. "
            + (
                "Clear the customer's User field in admin, then run this again to give them "
                "a sign-in of their own."
                if customer.user_id == user.pk
                else "Rename that staff user in admin, or change the customer's username, and "
                "run this again."
            )
        )


def customer_login_provision(
    *, customer: Customer, password: str | None = None, reset_password: bool = False
) -> CustomerLogin:
    """Gives ``customer`` a sign-in user, or checks the one it has; says what it did.

    For operators (the management command, the demo sign-in). Without a linked user, one named
    like the customer is created (with ``password``, or an unusable one) or an existing one of
    that name is linked. A staff or superuser account is never linked or given a password. An
    account that already has a usable password is linked, or its password set, only with
    ``reset_password``, and then the old password always stops working (replaced by
    ``password``, or removed without one): otherwise whoever knew it would sign in as the
    customer.

    Raises: ``CustomerLoginRefused`` (a ``ValidationError``) in the cases above or when the
    username belongs to another customer's login; ``ValidationError`` for a password the
    validators reject. Nothing is changed when it raises.
    """
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        linking = customer.user_id is None
        user = (
            User.objects.select_for_update().filter(username=customer.username).first()
            if linking
            else User.objects.select_for_update().get(customer=customer)
        )
        created = user is None
        if user is None:
            user = User(username=customer.username)
            user.set_unusable_password()
        else:
            _refuse_staff(user, customer)
            if linking and Customer.objects.filter(user=user).exists():
                raise CustomerLoginRefused(
                    f"The username {customer.username!r} belongs to another customer's login."
                )
        had_password = not created and user.has_usable_password()
        if had_password and (linking or password is not None) and not reset_password:
            raise CustomerLoginRefused(
                f"The user {user.get_username()!r} already has a password. Pass "
                "--reset-password to replace it (the old one stops working)."
            )
        change: PasswordChange = "unchanged"
        if password is not None:
            password_validation.validate_password(password, user)
            user.set_password(password)
            change = "replaced" if had_password else "set"
        elif had_password and reset_password:
            user.set_unusable_password()
            change = "removed"
        if linking:
            first, _, last = customer.name.partition(" ")
            user.first_name, user.last_name, user.email = first, last, customer.email
        user.save()
        if linking:
            customer.user = user
            customer.save(update_fields=["user"])
    return CustomerLogin(
        user=user, created=created, linked=linking and not created, password_change=change
    )


def customer_login_ensure(*, customer: Customer, password: str | None = None) -> User:
    """``customer_login_provision`` for callers that only need the user (demo sign-in).

    Raises: as ``customer_login_provision``.
    """
    return customer_login_provision(customer=customer, password=password).user


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
