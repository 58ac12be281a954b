"""The one door from the evals into the chat engine.

Everything the evals need from the engine (running a turn the way production does, answering a
confirmation, the model clients, the shipped prompt and tools, cost and pairing helpers) is
reached through here, so a change to where the engine lives is an edit to this module only.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User

from chat import services
from chat.dashboard import estimated_cost, percentile
from chat.modelapi import ModelBusy, ModelClient, ModelError, ModelRequestRejected, ModelUnavailable
from chat.models import Conversation
from chat.prompts import SYSTEM_PROMPT, tool_specs
from chat.replies import visible_text
from chat.transcript import pair_model_calls

__all__ = [
    "SHIPPED_SYSTEM_PROMPT",
    "ModelBusy",
    "ModelClient",
    "ModelError",
    "ModelRequestRejected",
    "ModelUnavailable",
    "action_decide",
    "bedrock_client",
    "conversation_start",
    "cost",
    "demo_client",
    "engine_model",
    "model_error",
    "model_error_kind",
    "pair_model_calls",
    "percentile",
    "reply_text",
    "tool_names",
    "turn_submit",
]

# The part of the system prompt that is the same for every customer; a prompt file under test
# replaces exactly this part (the signed-in customer's line stays the engine's).
SHIPPED_SYSTEM_PROMPT = SYSTEM_PROMPT

Emit = services.Emit


def reply_text(content: Any) -> str:
    """What the customer saw of a stored assistant message's content (the reply, no thinking)."""
    return visible_text(
        {"role": "assistant", "content": content if isinstance(content, list) else []}
    )


def tool_names() -> list[str]:
    """The names of the tools the assistant is offered."""
    return [spec["toolSpec"]["name"] for spec in tool_specs()]


def demo_client() -> ModelClient:
    # Imported here like the engine does: a Bedrock-only deployment never loads the demo script.
    from chat.demo_model import DemoModel

    # No pause between chunks: the pause exists for people watching a reply stream.
    return DemoModel(delay_seconds=0.0)


def bedrock_client() -> ModelClient:
    """The real boto3 Bedrock client, configured like production (region, endpoint, retries).

    Raises ``ImproperlyConfigured`` when no AWS region is configured.
    """
    from chat.bedrock import BedrockModel, get_client

    return BedrockModel(get_client())


@contextmanager
def engine_model(model_id: str | None) -> Iterator[None]:
    """The engine builds its requests for ``model_id`` (a Bedrock id) or the demo model (None).

    The engine reads the model from settings when it builds a turn's request, so the settings
    are switched for the duration and put back afterwards.
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


def conversation_start(*, user: User) -> Conversation:
    return services.conversation_start(user=user)


def turn_submit(
    *,
    conversation: Conversation,
    user: User,
    text: str,
    message_id: str,
    emit: Emit,
    client: ModelClient,
) -> bool:
    """One customer message through the chat service, exactly as the websocket hands it over."""
    return services.turn_submit(
        conversation=conversation,
        user=user,
        text=text,
        client_message_id=message_id,
        emit=emit,
        client=client,
    )


def action_decide(
    *,
    conversation: Conversation,
    user: User,
    action_id: str,
    approve: bool,
    emit: Emit,
    client: ModelClient,
) -> bool:
    """The customer's click on a confirmation button, as the chat page sends it."""
    return services.action_decide(
        conversation=conversation,
        user=user,
        action_id=action_id,
        approve=approve,
        emit=emit,
        client=client,
    )


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


_ERROR_KINDS: dict[str, type[ModelError]] = {
    "busy": ModelBusy,
    "unavailable": ModelUnavailable,
    "rejected": ModelRequestRejected,
}


def model_error_kind(error: ModelError) -> str:
    """The name a failed model call is stored under ("busy", "unavailable", "rejected")."""
    if isinstance(error, ModelBusy):
        return "busy"
    if isinstance(error, ModelRequestRejected):
        return "rejected"
    return "unavailable"


def model_error(kind: str, message: str) -> ModelError:
    """The exception the model boundary raises for a failure of ``kind`` (see above)."""
    return _ERROR_KINDS.get(kind, ModelUnavailable)(message)
