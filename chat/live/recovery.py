"""Closing turns a restart left "running".

A process that dies mid-turn leaves its turn "running" and, perhaps, an assistant tool call
without its results. ``turns_recover_interrupted`` (run with each deploy's migrations, and for
one conversation before each new message) finds turns without progress for longer than a turn
can take, answers their open tool calls with errors, and tells the customer to send their
message again.
"""

import logging
import uuid
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from chat.live.engine_config import stale_after
from chat.live.storage import NewMessage, messages_append, notice
from chat.models import (
    MODEL_KINDS,
    Conversation,
    Message,
    MessageKind,
    MessageRole,
    Turn,
    TurnState,
)

logger = logging.getLogger(__name__)

INTERRUPTED_RESULT_TEXT = "The reply was interrupted before this tool finished."
INTERRUPTED_NOTICE = "This reply did not finish. Please send your message again."


def stale_turns(
    *, conversation_id: uuid.UUID | None = None, older_than: timedelta | None = None
) -> list[Turn]:
    """Running turns without progress for ``older_than`` (default ``stale_after()``)."""
    cutoff = timezone.now() - (stale_after() if older_than is None else older_than)
    turns = Turn.objects.filter(state=TurnState.RUNNING, active_at__lte=cutoff)
    if conversation_id is not None:
        turns = turns.filter(conversation_id=conversation_id)
    return list(turns.only("pk"))


def turn_recover(turn_id: uuid.UUID) -> bool:
    """Closes one running turn as "interrupted"; False when it is no longer running."""
    with transaction.atomic():
        turn = Turn.objects.select_for_update().filter(pk=turn_id, state=TurnState.RUNNING).first()
        if turn is None:
            return False
        Conversation.objects.select_for_update().only("pk").get(pk=turn.conversation_id)
        repairs: list[NewMessage] = []
        last = (
            Message.objects.filter(conversation_id=turn.conversation_id, kind__in=MODEL_KINDS)
            .order_by("-seq")
            .first()
        )
        if last is not None and last.role == MessageRole.ASSISTANT:
            calls = [
                b["toolUse"]["toolUseId"]
                for b in last.content
                if isinstance(b, dict) and "toolUse" in b
            ]
            if calls:
                results = [
                    {
                        "toolResult": {
                            "toolUseId": call,
                            "content": [{"text": INTERRUPTED_RESULT_TEXT}],
                            "status": "error",
                        }
                    }
                    for call in calls
                ]
                repairs.append(NewMessage(MessageRole.USER, MessageKind.TOOL_RESULTS, results))
        repairs.append(notice(INTERRUPTED_NOTICE))
        messages_append(turn.conversation_id, turn, repairs)
        turn.state = TurnState.INTERRUPTED
        turn.outcome = "failed"
        turn.error_kind = "interrupted"
        turn.ended_at = timezone.now()
        turn.save(update_fields=["state", "outcome", "error_kind", "ended_at"])
    logger.warning("Recovered turn %s left running by a restart", turn_id)
    return True


def turns_recover_interrupted(*, older_than: timedelta | None = None) -> int:
    """Closes turns a restart left "running"; returns how many.

    Only turns without progress for ``older_than`` (default ``stale_after()``) count, so turns
    still running in other processes during a rolling deploy are left alone; pass
    ``timedelta(0)`` when nothing else can be running. Each gets error results for a tool call
    left without them, the state "interrupted", and a notice asking the customer to send their
    message again.
    """
    return sum(turn_recover(turn.pk) for turn in stale_turns(older_than=older_than))
