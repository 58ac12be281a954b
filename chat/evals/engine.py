"""The one door from the evals into the chat: the engine, the live chat's turns, staff figures.

Everything the evals need from the rest of ``chat`` (running a turn the way the customer's
socket does, answering a confirmation, the model clients and their errors, the shipped prompt
and tools, cost and percentile helpers) is reached through here, so a change to where those
live is an edit to this module only. The evals sit above the staff side: nothing in
``chat.engine``, ``chat.tools``, ``chat.live`` or ``chat.staff`` imports them.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from django.conf import settings

from chat.engine.client import (
    ModelBusy,
    ModelClient,
    ModelError,
    ModelRequestRejected,
    ModelUnavailable,
)
from chat.engine.prompt import instructions
from chat.live.conversations import User, conversation_start
from chat.live.engine_config import bedrock_client as shared_bedrock_client
from chat.live.turns import action_decide, turn_submit
from chat.staff.dashboard import percentile
from chat.staff.metrics import estimated_cost
from chat.tools import registry

__all__ = [
    "ModelClient",
    "ModelError",
    "ModelRequestRejected",
    "User",
    "action_decide",
    "bedrock_client",
    "conversation_start",
    "cost",
    "demo_client",
    "engine_model",
    "model_error",
    "percentile",
    "shipped_prompt",
    "tool_names",
    "turn_submit",
]

_ERRORS: dict[str, type[ModelError]] = {
    error.kind: error for error in (ModelBusy, ModelUnavailable, ModelRequestRejected)
}


def shipped_prompt() -> str:
    """The part of the system prompt that is the same for every customer.

    A prompt file under test replaces exactly this part; the line naming the signed-in customer
    stays the engine's.
    """
    return instructions(tools=registry)


def tool_names() -> list[str]:
    """The names of the tools the assistant is offered."""
    return registry.names()


def demo_client() -> ModelClient:
    # Imported here like the live chat does: a Bedrock-only deployment never loads the demo.
    from chat.engine.demo.model import DemoModel

    # No pause between chunks: the pause exists for people watching a reply stream.
    return DemoModel(delay_seconds=0.0)


def bedrock_client() -> ModelClient:
    """The real boto3 Bedrock client, the one production shares (region, endpoint, retries).

    Raises ``ImproperlyConfigured`` when no AWS region is configured.
    """
    from chat.engine.bedrock import BedrockModel

    return BedrockModel(shared_bedrock_client())


@contextmanager
def engine_model(model_id: str | None) -> Iterator[None]:
    """The engine builds its requests for ``model_id`` (a Bedrock id) or the demo model (None).

    The live chat reads the model from settings when it builds a turn's request, so the
    settings are switched for the duration and put back afterwards.
    """
    saved = (settings.CHAT_MODEL, settings.BEDROCK_MODEL_ID)
    if model_id is None:
        settings.CHAT_MODEL = "demo"
    else:
        settings.CHAT_MODEL, settings.BEDROCK_MODEL_ID = "bedrock", model_id
    try:
        yield
    finally:
        settings.CHAT_MODEL, settings.BEDROCK_MODEL_ID = saved


def cost(
    *, input_tokens: int, output_tokens: int, cache_read_tokens: int, cache_write_tokens: int
) -> Decimal:
    """US dollars at the configured per-million-token prices, as the dashboard estimates them."""
    return estimated_cost(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
    )


def model_error(kind: str, message: str) -> ModelError:
    """The exception the model boundary raises for a failure of ``kind`` (``ModelError.kind``)."""
    return _ERRORS.get(kind, ModelUnavailable)(message)
