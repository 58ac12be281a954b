"""Limits on how much one customer can ask of the model.

The rate limit counts in Django's cache (Redis in production, so every process shares one
count); the daily budget counts the tokens the model reported for the customer's calls today
(``chat.models.DailyUsage``, added to as each call is stored).

While the cache is unavailable the rate limit fails open: messages are not counted, and a
warning is logged. Locking every customer out of the chat for a Redis outage would be worse than
a few extra messages, and the daily token budget (PostgreSQL) and the per-process turn pool still
cap what one customer can spend.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone
from redis.exceptions import RedisError

from anycompany.counters import counted
from chat.models import DailyUsage

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60


class LimitExceeded(Exception):
    code = "limit_exceeded"
    message = "You've reached a limit. Please try again later."
    retryable = True


class RateLimited(LimitExceeded):
    code = "rate_limited"
    message = "You're sending messages too quickly. Please wait a moment."


class BudgetExhausted(LimitExceeded):
    code = "daily_budget_exhausted"
    message = (
        "You've reached today's limit for the assistant. Please come back tomorrow, "
        "or contact our support team by email or phone."
    )
    retryable = False


class ResumesLimited(LimitExceeded):
    code = "resumes_limited"
    message = "The conversation is reloading too often. Please wait a moment, then reload the page."


class ConnectsLimited(LimitExceeded):
    code = "connects_limited"
    message = "Too many connections from your account. Please wait a minute, then reload the page."


class ConversationsLimited(LimitExceeded):
    code = "conversations_limited"
    message = (
        "You've started many conversations in a short time. Please continue one of them, "
        "or wait a few minutes before starting another."
    )


def _counted(name: str, user_id: object, window_seconds: int, now: float | None) -> int:
    """One more attempt in the current fixed window, counted in the cache (Redis in production,
    so every process shares the count); 0 when the cache is away (the limits fail open)."""
    window = int((time.time() if now is None else now) // window_seconds)
    key = f"chat:{name}:{user_id}:{window}"
    try:
        return counted(key, timeout=window_seconds * 2)
    except RedisError:
        logger.warning("%s limit not counted: the cache is unavailable (failing open)", name)
        return 0


def rate_limit_hit(*, user_id: int, now: float | None = None) -> None:
    """Counts one message of ``user_id`` in the current minute (a fixed window).

    Raises: ``RateLimited`` once the count is over ``CHAT_RATE_LIMIT_PER_MINUTE``.
    """
    if _counted("rate", user_id, WINDOW_SECONDS, now) > settings.CHAT_RATE_LIMIT_PER_MINUTE:
        raise RateLimited


def resume_hit(*, user_id: int, now: float | None = None) -> None:
    """Counts one resume (a reload of the stored messages) of ``user_id`` this minute.

    Raises: ``ResumesLimited`` over ``CHAT_RESUMES_PER_MINUTE``.
    """
    if _counted("resume", user_id, WINDOW_SECONDS, now) > settings.CHAT_RESUMES_PER_MINUTE:
        raise ResumesLimited


def connect_hit(*, user_id: int, now: float | None = None) -> None:
    """Counts one socket connection of ``user_id`` this minute.

    Raises: ``ConnectsLimited`` over ``CHAT_CONNECTS_PER_MINUTE``.
    """
    if _counted("connect", user_id, WINDOW_SECONDS, now) > settings.CHAT_CONNECTS_PER_MINUTE:
        raise ConnectsLimited


def conversation_start_hit(*, user_id: object, now: float | None = None) -> None:
    """Counts one new conversation of ``user_id`` this hour.

    Raises: ``ConversationsLimited`` over ``CHAT_CONVERSATIONS_PER_HOUR``.
    """
    if _counted("new", user_id, 3600, now) > settings.CHAT_CONVERSATIONS_PER_HOUR:
        raise ConversationsLimited


def over_limit(hit: Callable[..., None], **kwargs: Any) -> bool:
    """Counts an attempt with ``hit``; whether it was over the limit."""
    try:
        hit(**kwargs)
    except LimitExceeded:
        return True
    return False


def refusal_event(refused: LimitExceeded) -> dict[str, Any]:
    """The "error" event telling the customer which limit refused them."""
    return {
        "type": "error",
        "code": refused.code,
        "text": refused.message,
        "retryable": refused.retryable,
    }


def _today(customer_id: str | OuterRef) -> QuerySet[DailyUsage]:
    return DailyUsage.objects.filter(customer_id=customer_id, day=timezone.localdate())


def tokens_today(customer_id: OuterRef) -> Subquery:
    """The customer's model tokens today, as a subquery of the caller's one read."""
    return Subquery(_today(customer_id).values("tokens")[:1])


def tokens_used_today(*, customer_id: str) -> int:
    return _today(customer_id).values_list("tokens", flat=True).first() or 0


def budget_spent(tokens_used: int | None) -> bool:
    """Whether ``tokens_used`` today leave nothing of ``CHAT_DAILY_TOKEN_BUDGET`` (0: unlimited)."""
    budget = settings.CHAT_DAILY_TOKEN_BUDGET
    return bool(budget) and (tokens_used or 0) >= budget


def daily_budget_check(*, customer_id: str) -> None:
    """Refuses a new turn once the customer's model tokens today reach the daily budget.

    ``CHAT_DAILY_TOKEN_BUDGET = 0`` means unlimited. The check runs before a turn starts, so
    the turn that crosses the budget still finishes. A new message's check is part of the
    turn's first read (``chat.live.intake``); this one is for decisions on a confirmation.

    Raises: ``BudgetExhausted``.
    """
    if settings.CHAT_DAILY_TOKEN_BUDGET and budget_spent(
        tokens_used_today(customer_id=customer_id)
    ):
        raise BudgetExhausted


def turn_allowed(*, user_id: int, customer_id: str) -> None:
    """Both checks, rate first so refused attempts still count against the rate.

    Raises: ``RateLimited``, ``BudgetExhausted``.
    """
    rate_limit_hit(user_id=user_id)
    daily_budget_check(customer_id=customer_id)
