import getpass
import os
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from orders.models import Customer
from orders.services import CustomerLogin, customer_login_provision

PASSWORD_ENV = "CUSTOMER_LOGIN_PASSWORD"  # noqa: S105 - the variable name, not a password

_PASSWORD_DONE = {
    "set": "set its password",
    "replaced": "replaced its password (the old one no longer works)",
    "removed": "removed its password (Cognito or demo sign-in only)",
}


def describe(customer: Customer, outcome: CustomerLogin) -> str:
    username = outcome.user.get_username()
    if outcome.created:
        head = f"Created the sign-in {username!r} for {customer.name}"
    elif outcome.linked:
        head = f"Linked the existing user {username!r} to {customer.name}"
    else:
        head = f"{customer.name} already signs in as {username!r}"
    done = _PASSWORD_DONE.get(outcome.password_change)
    if done:
        return f"{head}; {done}."
    if outcome.created:
        return f"{head}, without a password (Cognito or demo sign-in only)."
    return f"{head}; {'password left as it was' if outcome.linked else 'nothing changed'}."


class Command(BaseCommand):
    help = (
        "Create (or link) the sign-in user for an existing customer, found by email. "
        f"The password is prompted for, or read from ${PASSWORD_ENV} for scripts; "
        "--no-password leaves it unusable. Staff accounts are never used, and an account that "
        "already has a password is only touched with --reset-password."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email", help="The customer's email (case-insensitive).")
        parser.add_argument(
            "--no-password",
            action="store_true",
            help="Do not set a password (Cognito or demo sign-in only).",
        )
        parser.add_argument(
            "--reset-password",
            action="store_true",
            help="The account already has a password: replace it (with --no-password, remove "
            "it). Never allowed for staff accounts.",
        )

    def handle(
        self, *args: Any, email: str, no_password: bool, reset_password: bool, **options: Any
    ) -> None:
        try:
            customer = Customer.objects.get(email__iexact=email.strip())
        except Customer.DoesNotExist:
            raise CommandError(
                f"No customer has the email {email!r}. Check `manage.py loaddata customers`."
            ) from None
        password: str | None = None
        if not no_password:
            password = os.environ.get(PASSWORD_ENV)
            if password is None:
                if not options.get("interactive", True) or not os.isatty(0):
                    raise CommandError(
                        f"Set {PASSWORD_ENV} or pass --no-password when not running interactively."
                    )
                password = getpass.getpass(f"Password for {customer.username}: ")
                if password != getpass.getpass("Password (again): "):
                    raise CommandError("The passwords do not match.")
        try:
            outcome = customer_login_provision(
                customer=customer, password=password, reset_password=reset_password
            )
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        self.stdout.write(self.style.SUCCESS(describe(customer, outcome)))
