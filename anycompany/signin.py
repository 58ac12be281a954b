"""Password sign-in for customers and staff: who may, under which name, and how often.

Both sign-in pages (``/accounts/login/`` and ``/admin/login/``) use these forms, so the rules
hold on either:

- a customer may give their email address (any case) instead of their username;
- failed attempts are counted per account (however it was named) and per client address
  (``anycompany.throttle``), and past either limit nothing is checked until the window ends;
- with Cognito configured, staff accounts sign in through Cognito (and its MFA) only, except
  the break-glass accounts named in ``ADMIN_BREAK_GLASS_USERNAMES``, whose every password
  sign-in is logged at WARNING.
"""

import logging
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from anycompany import throttle
from anycompany.cognito import BACKEND_PATH as COGNITO_BACKEND
from orders.models import Customer

logger = logging.getLogger(__name__)


def account_username(name: str) -> str:
    """The username ``name`` signs in as: itself, or that of the customer with this email."""
    if "@" in name and not User.objects.filter(username=name).exists():
        username = (
            Customer.objects.filter(email__iexact=name, user__isnull=False)
            .values_list("user__username", flat=True)
            .first()
        )
        if username is not None:
            return username
    return name


def is_break_glass(user: AbstractBaseUser | AnonymousUser) -> bool:
    return user.is_authenticated and user.get_username() in settings.ADMIN_BREAK_GLASS_USERNAMES


def password_sign_in_allowed(user: AbstractBaseUser) -> bool:
    """Staff sign in through Cognito when it is configured; break-glass accounts excepted."""
    if not settings.COGNITO_ENABLED or is_break_glass(user):
        return True
    return not (getattr(user, "is_staff", False) or getattr(user, "is_superuser", False))


def staff_session_allowed(request: HttpRequest) -> bool:
    """Whether this session may use staff pages: with Cognito configured, only a session that
    signed in through Cognito, or a break-glass account's. This also shuts out password
    sessions from before Cognito was turned on, and customers made staff while signed in."""
    return (
        not settings.COGNITO_ENABLED
        or request.session.get(BACKEND_SESSION_KEY) == COGNITO_BACKEND
        or is_break_glass(request.user)
    )


ACCOUNT_LIMIT_TEXT = (
    "Too many failed sign-in attempts for this account. For its safety, sign-in is paused: "
    "try again in {wait}."
)
ADDRESS_LIMIT_TEXT = (
    "Too many failed sign-in attempts from your network. Please try again in {wait}."
)


COUNTERS_UNAVAILABLE_TEXT = "Sign-in is unavailable for a moment. Please try again in a minute."


class SignInForm(AuthenticationForm):
    """Username or a customer's email, and a password; throttled per account and per address."""

    def __init__(self, request: HttpRequest | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(request, *args, **kwargs)
        username = self.fields["username"]
        username.label = "Username or email"
        # Emails are longer than usernames may be.
        username.widget.attrs.update(maxlength=254, autocomplete="username")

    def clean(self) -> dict[str, Any]:
        name = self.cleaned_data.get("username")
        if not name or not self.cleaned_data.get("password"):
            return super().clean()
        username = account_username(name)
        address = self._client_address()
        try:
            hits = [
                throttle.hit(_account_limit(), username.casefold()),
                throttle.hit(_address_limit(), address),
            ]
        except throttle.CounterUnavailable:
            # Fails closed: without the counts, password guessing would go unthrottled. People
            # already signed in are not affected (sessions live in the database).
            logger.warning("Sign-in refused: the attempt counters (cache) are unavailable")
            raise ValidationError(COUNTERS_UNAVAILABLE_TEXT, code="unavailable") from None
        account_hit, address_hit = hits
        for hit, text in ((account_hit, ACCOUNT_LIMIT_TEXT), (address_hit, ADDRESS_LIMIT_TEXT)):
            if hit.over:
                if hit.first_over:
                    _log_paused(hit, username if hit is account_hit else None, address)
                raise ValidationError(
                    text.format(wait=throttle.minutes(hit.retry_after)), code="throttled"
                )
        self.cleaned_data["username"] = username
        super().clean()
        for hit in hits:
            throttle.refund(hit)
        if self.user_cache is not None and is_break_glass(self.user_cache):
            logger.warning(
                "Break-glass account %r signed in with a password from %s", username, address
            )
        return self.cleaned_data

    def confirm_login_allowed(self, user: User) -> None:
        super().confirm_login_allowed(user)
        if not password_sign_in_allowed(user):
            # The same words as a wrong password: the refusal must not confirm the password.
            raise self.get_invalid_login_error()

    def _client_address(self) -> str:
        meta = self.request.META if self.request is not None else {}
        return throttle.client_address(
            forwarded_for=meta.get("HTTP_X_FORWARDED_FOR"), peer=meta.get("REMOTE_ADDR")
        )


def _log_paused(hit: throttle.Hit, username: str | None, address: str) -> None:
    if username is None:
        subject = f"address {address}"
    else:
        # By id: an unknown name may be someone's email, which stays out of the logs.
        user_id = User.objects.filter(username=username).values_list("pk", flat=True).first()
        subject = f"user {user_id}" if user_id else "an unknown account name"
    logger.warning("Sign-in paused for %s s: too many failures for %s", hit.retry_after, subject)


class AdminSignInForm(SignInForm, AdminAuthenticationForm):
    """The admin's sign-in: staff only; with Cognito configured, break-glass accounts only."""

    def __init__(self, request: HttpRequest | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(request, *args, **kwargs)
        self.fields["username"].label = "Username"
        if settings.COGNITO_ENABLED:
            self.error_messages = {
                **self.error_messages,
                "invalid_login": (
                    "This form is only for the break-glass account. Staff sign in with "
                    "single sign-on (the button above)."
                ),
            }


def _account_limit() -> throttle.Limit:
    return throttle.Limit(
        "signin-account", settings.SIGNIN_FAILURES_PER_ACCOUNT, settings.SIGNIN_THROTTLE_SECONDS
    )


def _address_limit() -> throttle.Limit:
    return throttle.Limit(
        "signin-address", settings.SIGNIN_FAILURES_PER_ADDRESS, settings.SIGNIN_THROTTLE_SECONDS
    )
