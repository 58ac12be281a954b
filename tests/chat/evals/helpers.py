"""Running ``manage.py evaluate`` in tests, and playing conversations to draft cases from."""

import io
import uuid
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.core.management.base import CommandError

from chat.live.conversations import conversation_start
from chat.live.turns import action_decide, turn_submit
from chat.models import Conversation, PendingAction
from orders.models import Customer
from orders.services import customer_login_ensure
from tests.chat.factories import Recorder

ROOT = Path(__file__).resolve().parents[3]
SHIPPED_SUITE = ROOT / "evals"


def evaluate(*args: Any) -> tuple[str, str | None]:
    """Runs the command; returns its output and the CommandError's text (None when it passed)."""
    out = io.StringIO()
    try:
        call_command("evaluate", *map(str, args), stdout=out)
    except CommandError as error:
        return out.getvalue(), str(error)
    return out.getvalue(), None


def write_case(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def play(customer_id: str, *steps: str) -> Conversation:
    """A conversation of ``customer_id`` with the demo model, through the chat service.

    Each step is what the customer types, or "[approve]" / "[decline]" to click the button
    of the confirmation the last turn asked.
    """
    customer = Customer.objects.get(pk=customer_id)
    user = customer_login_ensure(customer=customer)
    conversation = conversation_start(user=user)
    for step in steps:
        events = Recorder()
        if step in ("[approve]", "[decline]"):
            action = PendingAction.objects.get(conversation=conversation, state="pending")
            assert action_decide(
                conversation=conversation,
                user=user,
                action_id=action.pk,
                approve=step == "[approve]",
                emit=events,
            )
        else:
            assert turn_submit(
                conversation=conversation,
                user=user,
                text=step,
                client_message_id=uuid.uuid4().hex,
                emit=events,
            )
    return conversation
