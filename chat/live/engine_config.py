"""The model engine configured from Django settings: the turn's settings and the model client.

The engine reads no settings itself; this is the one place that hands them over. The Bedrock
client is created once per process on first use (under a lock: creating one is slow and not
thread-safe, using one is) and shared by every turn.
"""

import threading
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from chat.engine.client import ModelClient
from chat.engine.prompt import customer_facts, instructions
from chat.engine.registry import ToolRegistry
from chat.engine.types import TurnConfig
from orders.models import Customer

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

_client: "BedrockRuntimeClient | None" = None
_client_lock = threading.Lock()


def turn_config(*, customer: Customer, tools: ToolRegistry) -> TurnConfig:
    """The loop's settings for a conversation with ``customer`` offering ``tools``."""
    bedrock = settings.CHAT_MODEL == "bedrock"
    guardrail = None
    if settings.BEDROCK_GUARDRAIL_ID:
        guardrail = (settings.BEDROCK_GUARDRAIL_ID, settings.BEDROCK_GUARDRAIL_VERSION)
    return TurnConfig(
        model_id=settings.BEDROCK_MODEL_ID if bedrock else "demo",
        system_prompt=instructions(tools=tools),
        customer_context=customer_facts(customer_name=customer.name, customer_id=customer.id),
        inference_config={
            "temperature": settings.BEDROCK_TEMPERATURE,
            "maxTokens": settings.BEDROCK_MAX_TOKENS,
        },
        additional_model_request_fields={"top_k": settings.BEDROCK_TOP_K}
        if settings.BEDROCK_TOP_K
        else {},
        max_model_calls=settings.CHAT_MAX_MODEL_CALLS_PER_TURN,
        deadline_seconds=settings.CHAT_TURN_DEADLINE_SECONDS,
        prompt_caching=bedrock and prompt_caching(settings.BEDROCK_MODEL_ID),
        guardrail=guardrail if bedrock else None,
        context_budget_tokens=settings.CHAT_CONTEXT_BUDGET_TOKENS,
    )


def prompt_caching(model_id: str) -> bool:
    """Whether model calls carry cache points: ``BEDROCK_PROMPT_CACHING``, or with "auto"
    whether ``model_id`` names a model that takes them."""
    if settings.BEDROCK_PROMPT_CACHING is not None:
        return settings.BEDROCK_PROMPT_CACHING
    from chat.engine.bedrock import caches_prompts

    return caches_prompts(model_id)


def stale_after() -> timedelta:
    """How long a running turn can go without progress before it is certainly dead.

    A live turn stores a step at least every model call, and one call cannot outlast the turn
    deadline plus every attempt's read timeout.
    """
    seconds = (
        settings.CHAT_TURN_DEADLINE_SECONDS
        + settings.BEDROCK_READ_TIMEOUT * settings.BEDROCK_MAX_ATTEMPTS
    )
    return timedelta(seconds=seconds)


def bedrock_client() -> "BedrockRuntimeClient":
    """The process-wide Bedrock runtime client, created on first use from the settings.

    Raises: ``ImproperlyConfigured`` when no AWS region is configured.
    """
    # Imported here: boto3 is slow to import and a demo deployment never needs it.
    from chat.engine.bedrock import BedrockNotConfigured, client_config, create_client

    global _client
    client = _client
    if client is None:
        with _client_lock:
            if _client is None:
                config = client_config(
                    max_attempts=settings.BEDROCK_MAX_ATTEMPTS,
                    connect_timeout=settings.BEDROCK_CONNECT_TIMEOUT,
                    read_timeout=settings.BEDROCK_READ_TIMEOUT,
                    max_concurrent_turns=settings.CHAT_MAX_CONCURRENT_TURNS,
                    validate_requests=settings.BEDROCK_VALIDATE_REQUESTS,
                )
                try:
                    _client = create_client(config)
                except BedrockNotConfigured as missing:
                    raise ImproperlyConfigured(str(missing)) from None
            client = _client
    return client


def bedrock_client_reset() -> None:
    """Forget the shared client so the next call builds one from current settings/environment.

    For tests and for code that changes the Bedrock settings at run time; calls in flight on
    the old client may fail, as its connection pool is closed.
    """
    global _client
    with _client_lock:
        old, _client = _client, None
    if old is not None:
        old.close()


def model_client() -> ModelClient:
    """The model the chat uses, chosen by ``settings.CHAT_MODEL`` ("bedrock" or "demo").

    Raises: ``ImproperlyConfigured`` for an unknown value or (bedrock) a missing AWS region.
    """
    if settings.CHAT_MODEL == "bedrock":
        from chat.engine.bedrock import BedrockModel

        return BedrockModel(bedrock_client())
    if settings.CHAT_MODEL == "demo":
        # Imported here so a Bedrock deployment never loads the demo script.
        from chat.engine.demo.model import DemoModel

        return DemoModel(delay_seconds=settings.CHAT_DEMO_DELAY_SECONDS)
    raise ImproperlyConfigured(
        f"CHAT_MODEL must be 'demo' or 'bedrock' (got {settings.CHAT_MODEL!r})."
    )
