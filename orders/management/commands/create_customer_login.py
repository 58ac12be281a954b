import getpass
import os
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from orders.models import Customer
from orders.services import customer_login_ensure

PASSWORD_ENV = "CUSTOMER_LOGIN_PASSWORD"  # noqa: S105 - the variable name, not a password


class Command(BaseCommand):
    help = (
        "Create (or link) the sign-in user for an existing customer, found by email. "
        f"The password is prompted for, or read from ${PASSWORD_ENV} for scripts; "
        "--no-password leaves it unusable."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email", help="The customer's email (case-insensitive).")
        parser.add_argument(
            "--no-password",
            action="store_true",
            help="Do not set a password (Cognito or demo sign-in only).",
        )

    def handle(self, *args: Any, email: str, no_password: bool, **options: Any) -> None:
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
            user = customer_login_ensure(customer=customer, password=password)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        self.stdout.write(
            self.style.SUCCESS(f"{customer.name} signs in as {user.get_username()!r}.")
        )
