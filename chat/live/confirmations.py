"""Deciding a pending action: the customer's click, or a typed yes or no.

A tool call that needs the customer's confirmation (a cancellation) waits as a
``PendingAction``. Deciding it records who decided and when, runs the call only on a yes, and
builds the user message with every result of the paused assistant message
(``chat.engine.toolcalls.complete_pending``), so the turn can go on.
"""

import re
from typing import Any

from django.utils import timezone

from anycompany import logcontext
from chat.engine.registry import BoundTools
from chat.engine.toolcalls import complete_pending
from chat.engine.types import PendingConfirmation, ToolOutcome
from chat.live.conversations import User
from chat.live.storage import StoringSink
from chat.models import PendingAction, PendingActionState

KEPT_TEXT = "The customer chose to keep the order."
NOT_CONFIRMED_TEXT = "The customer did not confirm the cancellation."

_WORDS = re.compile(r"[^\w\s']+")
YES_ANSWERS = frozenset(
    {
        "yes", "y", "yes please", "yep", "yeah", "sure", "ok", "okay", "confirm", "confirmed",
        "yes confirm", "please do", "go ahead", "do it", "cancel it", "yes cancel it",
        "yes please cancel it", "please cancel it", "yes cancel",
    }
)  # fmt: skip
NO_ANSWERS = frozenset(
    {
        "no", "n", "nope", "no thanks", "no thank you", "keep it", "no keep it", "don't", "dont",
        "do not", "don't cancel", "dont cancel", "do not cancel", "don't cancel it",
        "dont cancel it", "do not cancel it", "no don't", "no dont", "no don't cancel it",
        "no dont cancel it", "never mind", "nevermind",
    }
)  # fmt: skip


def typed_decision(text: str) -> bool | None:
    """A typed answer to a pending confirmation: True for yes, False for no, None otherwise.

    Deliberately simple: only short, unambiguous answers count; anything else is a new message
    and the pending cancellation is not carried out.
    """
    normalized = " ".join(_WORDS.sub(" ", text.casefold().replace("’", "'")).split())
    if normalized in YES_ANSWERS:
        return True
    if normalized in NO_ANSWERS:
        return False
    return None


def pending_confirmation(action: PendingAction) -> PendingConfirmation:
    """The loop's view of a stored pending action."""
    return PendingConfirmation(
        tool_use_id=action.tool_use_id,
        name=action.tool_name,
        tool_input=dict(action.tool_input),
        results=list(action.results),
        tool_uses=list(action.tool_uses),
    )


def pending_action_decide(
    action: PendingAction,
    *,
    decision: bool | None,
    user: User,
    tools: BoundTools,
    sink: StoringSink,
) -> dict[str, Any]:
    """Records the decision, runs an approved call, and returns the user message with all results.

    ``decision`` None means the customer wrote about something else: the action expires and the
    model hears ``NOT_CONFIRMED_TEXT``. The caller holds the transaction and the action's row
    lock, so the call runs at most once.
    """
    if decision is True:
        # The call belongs to the turn that asked for it, whichever turn runs it.
        with logcontext.bind(turn_id=action.turn_id):
            outcome = tools.run_confirmed(action.tool_name, action.tool_input)
        action.state = PendingActionState.APPROVED
    elif decision is False:
        outcome = ToolOutcome("error", KEPT_TEXT)
        action.state = PendingActionState.DECLINED
    else:
        outcome = ToolOutcome("error", NOT_CONFIRMED_TEXT)
        action.state = PendingActionState.EXPIRED
    action.decided_at = timezone.now()
    action.decided_by_id = user.pk
    action.save(update_fields=["state", "decided_at", "decided_by"])
    return complete_pending(pending_confirmation(action), outcome, tools, sink=sink)
