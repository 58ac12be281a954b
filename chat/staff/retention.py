"""Deleting old conversations, as the retention setting says.

A conversation goes with everything stored about it (messages, turns, model calls, pending
actions, feedback). The customers' daily token counts of the same days go too: the budget only
ever reads today's. Orders and their audit trail stay: an ``OrderEvent`` keeps the plain id of
the conversation it came through, which then simply points at nothing.
"""

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from chat.models import (
    Conversation,
    DailyUsage,
    Feedback,
    Message,
    ModelCall,
    PendingAction,
    Turn,
)

BATCH = 200


def _cutoff(older_than_days: int) -> datetime:
    return timezone.now() - timedelta(days=older_than_days)


def conversations_expired(*, older_than_days: int) -> QuerySet[Conversation]:
    """Conversations whose last activity is more than ``older_than_days`` days ago."""
    return Conversation.objects.filter(updated_at__lt=_cutoff(older_than_days))


def usage_expired(*, older_than_days: int) -> QuerySet[DailyUsage]:
    """The daily token counts of days more than ``older_than_days`` days ago."""
    return DailyUsage.objects.filter(day__lt=timezone.localdate(_cutoff(older_than_days)))


def _counts(ids: Any) -> dict[str, int]:
    return {
        "conversations": Conversation.objects.filter(pk__in=ids).count(),
        "messages": Message.objects.filter(conversation_id__in=ids).count(),
        "turns": Turn.objects.filter(conversation_id__in=ids).count(),
        "model calls": ModelCall.objects.filter(conversation_id__in=ids).count(),
        "pending actions": PendingAction.objects.filter(conversation_id__in=ids).count(),
        "feedback": Feedback.objects.filter(conversation_id__in=ids).count(),
    }


def conversations_purge(*, older_than_days: int, dry_run: bool = False) -> dict[str, int]:
    """Deletes expired conversations in small batches; returns how many rows of each kind.

    With ``dry_run`` nothing is deleted and the counts say what would be.

    Raises: ``ValueError`` when ``older_than_days`` is not positive (0 means keep forever and
    must never reach here).
    """
    if older_than_days <= 0:
        raise ValueError("older_than_days must be at least 1.")
    expired = conversations_expired(older_than_days=older_than_days)
    usage = usage_expired(older_than_days=older_than_days)
    if dry_run:
        return _counts(expired.values("pk")) | {"daily usage counts": usage.count()}
    totals = dict.fromkeys(_counts([]), 0)
    while True:
        ids = list(expired.order_by("pk").values_list("pk", flat=True)[:BATCH])
        if not ids:
            deleted, _ = usage.delete()
            return totals | {"daily usage counts": deleted}
        with transaction.atomic():
            for name, count in _counts(ids).items():
                totals[name] += count
            # Children first, in bulk, so the collector does not load every row into memory.
            Feedback.objects.filter(conversation_id__in=ids).delete()
            Message.objects.filter(conversation_id__in=ids).delete()
            ModelCall.objects.filter(conversation_id__in=ids).delete()
            PendingAction.objects.filter(conversation_id__in=ids).delete()
            Turn.objects.filter(conversation_id__in=ids).delete()
            Conversation.objects.filter(pk__in=ids).delete()
