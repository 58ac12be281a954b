"""Limits on how much one customer can ask of the model.

The rate limit counts in Django's cache (Redis in production, so every process shares one
count); the daily budget sums the tokens the model reported for the customer's calls today.

While the cache is unavailable the rate limit fails open: messages are not counted, and a
warning is logged. Locking every customer out of the chat for a Redis outage would be worse than
a few extra messages, and the daily token budget (PostgreSQL) and the per-process turn pool still
cap what one customer can spend.
"""

import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.db.models import F, Sum
from django.utils import timezone
from redis.exceptions import RedisError

from chat.models import ModelCall

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


def rate_limit_hit(*, user_id: int, now: float | None = None) -> None:
    """Counts one message of ``user_id`` in the current minute (a fixed window).

    Raises: ``RateLimited`` once the count is over ``CHAT_RATE_LIMIT_PER_MINUTE``.
    """
    window = int((time.time() if now is None else now) // WINDOW_SECONDS)
    key = f"chat:rate:{user_id}:{window}"
    try:
        # add() is a no-op when the key exists, so concurrent first messages share one counter.
        cache.add(key, 0, timeout=WINDOW_SECONDS * 2)
        try:
            count = cache.incr(key)
        except ValueError:
            # The key expired between add() and incr().
            cache.set(key, 1, timeout=WINDOW_SECONDS * 2)
            count = 1
    except RedisError:
        logger.warning("Rate limit not counted: the cache is unavailable (failing open)")
        return
    if count > settings.CHAT_RATE_LIMIT_PER_MINUTE:
        raise RateLimited


def tokens_used_today(*, customer_id: str) -> int:
    start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    total = ModelCall.objects.filter(
        conversation__customer_id=customer_id, created_at__gte=start
    ).aggregate(total=Sum(F("input_tokens") + F("output_tokens")))["total"]
    return int(total or 0)


def daily_budget_check(*, customer_id: str) -> None:
    """Refuses a new turn once the customer's model tokens today reach the daily budget.

    ``CHAT_DAILY_TOKEN_BUDGET = 0`` means unlimited. The check runs before a turn starts, so
    the turn that crosses the budget still finishes.

    Raises: ``BudgetExhausted``.
    """
    budget = settings.CHAT_DAILY_TOKEN_BUDGET
    if budget and tokens_used_today(customer_id=customer_id) >= budget:
        raise BudgetExhausted


def turn_allowed(*, user_id: int, customer_id: str) -> None:
    """Both checks, rate first so refused attempts still count against the rate.

    Raises: ``RateLimited``, ``BudgetExhausted``.
    """
    rate_limit_hit(user_id=user_id)
    daily_budget_check(customer_id=customer_id)
