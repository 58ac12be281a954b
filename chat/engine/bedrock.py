"""Amazon Bedrock (Converse API) behind the ``chat.engine.client.ModelClient`` protocol.

This is the only module that imports boto3/botocore. Everything else sees Converse-shaped
dicts and the exceptions of ``chat.engine.client``. It reads no settings: the caller passes the
values (``chat.live.engine_config`` passes the ``BEDROCK_*`` settings named below).

Client
    ``create_client`` builds a ``bedrock-runtime`` client; the live chat creates one per process
    and shares it (boto3 clients are thread-safe; creating them is slow and not). Region,
    credentials and endpoint come from the standard AWS SDK configuration and are never passed
    here, so ``AWS_DEFAULT_REGION``, profiles, the container/instance credential chain and
    ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` behave as boto3 documents. botocore itself ignores
    ``AWS_REGION`` (the variable every other AWS SDK and ECS set), so when botocore resolves no
    region at all we fall back to it; with neither, ``BedrockNotConfigured`` names it.

Retries: botocore's ``standard`` mode
    The default ``legacy`` mode retries fewer error kinds and has no retry quota. ``standard``
    retries throttling (``ThrottlingException``, any unmodelled 429), 500/502/503/504,
    ``ModelNotReadyException`` (modelled as retryable) and connection errors, with jittered
    exponential backoff and a client-wide retry quota, so a Bedrock outage does not turn into
    a retry storm. ``BEDROCK_MAX_ATTEMPTS`` counts *total* attempts (like ``AWS_MAX_ATTEMPTS``),
    so it is passed as ``total_max_attempts``: botocore reads ``max_attempts`` in ``Config``
    as the number of retries *after* the first try, which would be off by one.
    ``ModelTimeoutException`` (408) and ``ModelErrorException`` (424) are not retried by
    botocore; they are usually one-off model hiccups, so ``BedrockModel`` retries them once.
    Nothing is retried once a stream has started delivering events: the customer has already
    seen part of the reply.

Timeouts
    ``BEDROCK_CONNECT_TIMEOUT`` bounds the TCP/TLS connect; ``BEDROCK_READ_TIMEOUT`` bounds each
    socket read, i.e. the wait for the first byte of a response and then the gap between
    stream events, not the whole call. A timeout before the response starts is retried like
    any connection error, so one call may wait up to about ``BEDROCK_MAX_ATTEMPTS`` read
    timeouts (plus backoff); keep that under ``CHAT_TURN_DEADLINE_SECONDS``. A stall in the
    middle of a stream is not retried. boto3's 60 s default read timeout is long for a chat.

Request validation: off by default
    botocore checks every request against the API's shapes before sending it; for a turn's
    requests that is a second walk over the whole request besides serialising it, about as
    costly as the serialising itself (~2 ms per call at 140 messages). Bedrock checks the same
    rules and answers a broken request with a ``ValidationException``, which is
    ``ModelRequestRejected`` like botocore's ``ParamValidationError``: only where the refusal
    comes from differs. ``BEDROCK_VALIDATE_REQUESTS=true`` turns botocore's check back on (the
    tests do, so a request the loop builds wrong fails there before any network).

Pool size
    Each concurrent turn holds at most one connection (one model call at a time, a stream
    keeps its connection until consumed or closed), so the pool is sized to
    ``CHAT_MAX_CONCURRENT_TURNS`` plus a little headroom. boto3's default of 10 would make
    turns 11+ queue for a connection.

Prompt caching
    ``caches_prompts`` says which model ids take Converse ``cachePoint`` blocks; with
    ``BEDROCK_PROMPT_CACHING=auto`` (the default) the live chat turns caching on for them
    (``chat.live.engine_config.prompt_caching``), and the tool loop places the points.

Errors, as the tool loop sees them
    Known error codes map through ``chat.engine.client.error_class`` (the one map, shared with
    the loop). Beyond it: any other 429/503 is ``ModelBusy``; an unknown in-stream error, other
    5xx, connect/read timeouts, refused or dropped connections and corrupt event-stream frames
    are ``ModelUnavailable``; other 4xx, invalid parameters and missing credentials are
    ``ModelRequestRejected``. The original error is logged on this module's logger; it never
    reaches a customer message (those are the fixed texts of ``chat.engine.client``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import boto3
import urllib3.exceptions
from botocore.config import Config
from botocore.eventstream import ParserError
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EventStreamError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from chat.engine.client import (
    ModelBusy,
    ModelError,
    ModelRequestRejected,
    ModelUnavailable,
    error_class,
)

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

logger = logging.getLogger(__name__)

# Connections beyond one per concurrent turn, for calls made outside a turn (e.g. a probe).
POOL_HEADROOM = 4

# Worth one more try of our own: botocore does not retry them, and they are usually one-off
# model hiccups.
_RETRY_ONCE_CODES = frozenset({"modeltimeoutexception", "modelerrorexception"})

# Everything the SDK can raise from a call or while reading a stream. Mid-stream socket errors
# surface as urllib3's own exceptions because botocore reads event streams from urllib3
# directly; corrupt frames raise botocore.eventstream.ParserError, which is not a BotoCoreError.
_SDK_ERRORS = (ClientError, BotoCoreError, ParserError, urllib3.exceptions.HTTPError)


# Claude models that take Converse cache points (3.5 Haiku, 3.7 Sonnet, and the Haiku, Sonnet
# and Opus of generation 4 on), as a model id, an inference profile id ("us.", "global.") or
# either's ARN names them. Claude 3.5 Sonnet v2 had caching only as a preview.
_CACHING_MODELS = re.compile(r"anthropic\.claude-(3-5-haiku|3-7-sonnet|(haiku|sonnet|opus)-[4-9])")


def caches_prompts(model_id: str) -> bool:
    """Whether ``model_id`` is a Claude model whose Converse calls take ``cachePoint`` blocks
    (after the system prompt, the tools and the conversation: see ``chat.engine.loop``).

    An application inference profile's ARN does not name its model: set caching explicitly.
    """
    return _CACHING_MODELS.search(model_id) is not None


class BedrockNotConfigured(Exception):
    """No AWS region is configured for the Bedrock client."""


def client_config(
    *,
    max_attempts: int,
    connect_timeout: float,
    read_timeout: float,
    max_concurrent_turns: int,
    validate_requests: bool,
) -> Config:
    """The botocore ``Config`` for the Bedrock client (see the module docstring for each value)."""
    return Config(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_concurrent_turns + POOL_HEADROOM,
        parameter_validation=validate_requests,
    )


def create_client(config: Config) -> BedrockRuntimeClient:
    """A new ``bedrock-runtime`` client from the standard AWS SDK configuration.

    Raises: ``BedrockNotConfigured`` when neither botocore nor ``AWS_REGION`` gives a region.
    """
    session = boto3.session.Session()
    region = None
    if session.region_name is None:
        region = os.environ.get("AWS_REGION") or None
        if region is None:
            raise BedrockNotConfigured(
                "Set AWS_REGION (or AWS_DEFAULT_REGION, or a region in the AWS profile) "
                "to use CHAT_MODEL=bedrock."
            )
    return session.client("bedrock-runtime", region_name=region, config=config)


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _error_class(exc: BaseException) -> type[ModelError]:
    if isinstance(exc, ClientError):
        known = error_class(_error_code(exc))
        if known is not None:
            return known
        # In-stream errors carry no HTTP status of their own; an unknown one is treated as a
        # failure of the model, not of our request.
        if isinstance(exc, EventStreamError):
            return ModelUnavailable
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status in (429, 503):
            return ModelBusy
        if isinstance(status, int) and 400 <= status < 500:
            return ModelRequestRejected
        return ModelUnavailable
    if isinstance(exc, ParamValidationError | NoCredentialsError | PartialCredentialsError):
        return ModelRequestRejected
    return ModelUnavailable


def _translate(exc: BaseException, operation: str) -> ModelError:
    found = _error_class(exc)
    level = logging.ERROR if found is ModelRequestRejected else logging.WARNING
    logger.log(level, "Bedrock %s failed (%s): %s", operation, found.__name__, exc)
    detail = _error_code(exc) or type(exc).__name__
    return found(f"Bedrock {operation} failed: {detail}")


class TranslatedEventStream:
    """Iterates a Converse event stream, turning SDK errors into ``chat.engine.client`` errors.

    Events already received are delivered before the error is raised. The underlying HTTP
    response is closed when iteration ends, fails or is abandoned, returning its connection.
    """

    def __init__(self, events: Iterable[dict[str, Any]], *, close: Callable[[], None]) -> None:
        self._events = events
        self._close = close

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            yield from self._events
        except _SDK_ERRORS as exc:
            raise _translate(exc, "ConverseStream") from exc
        finally:
            self.close()

    def close(self) -> None:
        self._close()

    def __enter__(self) -> TranslatedEventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class BedrockModel:
    """``ModelClient`` over a boto3 ``bedrock-runtime`` client.

    Takes and returns boto3's Converse keyword arguments and response dicts unchanged; raises
    only ``ModelBusy``, ``ModelUnavailable`` and ``ModelRequestRejected``.
    """

    def __init__(self, client: BedrockRuntimeClient) -> None:
        self.client = client

    def converse_stream(self, **kwargs: Any) -> dict[str, Any]:
        response = dict(self._call("ConverseStream", self.client.converse_stream, kwargs))
        stream = response["stream"]
        response["stream"] = TranslatedEventStream(stream, close=stream.close)
        return response

    def _call(self, operation: str, method: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        try:
            return method(**kwargs)
        except _SDK_ERRORS as exc:
            if _error_code(exc).lower() not in _RETRY_ONCE_CODES:
                raise _translate(exc, operation) from exc
            logger.warning("Bedrock %s failed, retrying once: %s", operation, exc)
        try:
            return method(**kwargs)
        except _SDK_ERRORS as exc:
            raise _translate(exc, operation) from exc
