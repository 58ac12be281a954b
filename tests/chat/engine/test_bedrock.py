"""The Bedrock client, its configuration and how its failures reach the tool loop.

Bedrock itself is faked only at the boundary: botocore's Stubber on the real client, or the real
client talking HTTP to a local stand-in (``bedrock_standin``).
"""

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from botocore.stub import Stubber
from django.core.exceptions import ImproperlyConfigured
from pytest_django import Settings

from chat.engine.bedrock import BedrockModel
from chat.engine.client import ModelBusy, ModelError, ModelRequestRejected, ModelUnavailable
from chat.engine.demo.model import DemoModel
from chat.live.engine_config import bedrock_client, bedrock_client_reset, model_client
from tests.chat.bedrock_standin import (
    BedrockStandIn,
    error_reply,
    event_frame,
    exception_frame,
    offline_aws,
    stall_reply,
    stream_reply,
    text_stream_frames,
)

MODEL_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
PROFILE_ARN = (
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
)

TOOLS: list[dict[str, Any]] = [
    {
        "toolSpec": {
            "name": "get_user",
            "description": "Looks up a user by email, phone, or username.",
            "inputSchema": {
                "json": {
                    "type": "object",
                    "properties": {
                        "key": {
                            "type": "string",
                            "enum": ["email", "phone", "username"],
                            "description": (
                                "The attribute to search for a user by (email, phone, or username)."
                            ),
                        },
                        "value": {
                            "type": "string",
                            "description": "The value to match for the specified attribute.",
                        },
                    },
                    "required": ["key", "value"],
                }
            },
        }
    },
    {
        "toolSpec": {
            "name": "get_order_by_id",
            "description": (
                "Retrieves the details of a specific order based on the order ID. Returns the "
                "order ID, product name, quantity, price, and order status."
            ),
            "inputSchema": {
                "json": {
                    "type": "object",
                    "properties": {
                        "order_id": {
                            "type": "string",
                            "description": "The unique identifier for the order.",
                        }
                    },
                    "required": ["order_id"],
                }
            },
        }
    },
    {
        "toolSpec": {
            "name": "get_customer_orders",
            "description": (
                "Retrieves the list of orders belonging to a user based on a user's customer id."
            ),
            "inputSchema": {
                "json": {
                    "type": "object",
                    "properties": {
                        "customer_id": {
                            "type": "string",
                            "description": "The customer_id belonging to the user",
                        }
                    },
                    "required": ["customer_id"],
                }
            },
        }
    },
    {
        "toolSpec": {
            "name": "cancel_order",
            "description": (
                "Cancels an order based on a provided order_id.  Only orders that are "
                "'processing' can be cancelled"
            ),
            "inputSchema": {
                "json": {
                    "type": "object",
                    "properties": {
                        "order_id": {
                            "type": "string",
                            "description": "The order_id pertaining to a particular order",
                        }
                    },
                    "required": ["order_id"],
                }
            },
        }
    },
]

HELLO = [{"role": "user", "content": [{"text": "Where is my order 32057?"}]}]


def full_request(model_id: str = MODEL_ID) -> dict[str, Any]:
    """A request using every Converse feature the chat relies on."""
    return {
        "modelId": model_id,
        "system": [
            {"text": "You are a customer support assistant for AnyCompany."},
            {"cachePoint": {"type": "default"}},
        ],
        "messages": [
            {"role": "user", "content": [{"text": "Where is my order 32057?"}]},
            {
                "role": "assistant",
                "content": [
                    {"text": "<thinking>Look it up.</thinking>"},
                    {
                        "toolUse": {
                            "toolUseId": "tooluse_1",
                            "name": "get_order_by_id",
                            "input": {"order_id": "32057"},
                        }
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "toolResult": {
                            "toolUseId": "tooluse_1",
                            "content": [{"json": {"order_id": "32057", "status": "Shipped"}}],
                            "status": "success",
                        }
                    },
                    {"cachePoint": {"type": "default"}},
                ],
            },
        ],
        "toolConfig": {
            "tools": [*TOOLS, {"cachePoint": {"type": "default"}}],
            "toolChoice": {"auto": {}},
        },
        "inferenceConfig": {"temperature": 0.0, "maxTokens": 4096},
        "additionalModelRequestFields": {"top_k": 10},
        "guardrailConfig": {"guardrailIdentifier": "gr-abc123", "guardrailVersion": "1"},
    }


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Dummy credentials, no metadata probing, nothing from this machine's AWS config."""
    offline_aws(
        monkeypatch,
        tmp_path,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        "AWS_MAX_ATTEMPTS",
        "AWS_RETRY_MODE",
        "AWS_DEFAULTS_MODE",
    )
    bedrock_client_reset()
    yield
    bedrock_client_reset()


@pytest.fixture
def bedrock_settings(settings: Settings) -> Settings:
    settings.CHAT_MODEL = "bedrock"
    settings.BEDROCK_MAX_ATTEMPTS = 3
    settings.BEDROCK_CONNECT_TIMEOUT = 1.0
    settings.BEDROCK_READ_TIMEOUT = 5.0
    settings.CHAT_MAX_CONCURRENT_TURNS = 32
    return settings


@pytest.fixture
def stubber(bedrock_settings: Settings) -> Iterator[Stubber]:
    with Stubber(bedrock_client()) as stub:
        yield stub


@pytest.fixture
def standin(bedrock_settings: Settings, bedrock_standin: BedrockStandIn) -> BedrockStandIn:
    """The shared stand-in (``tests/chat/conftest.py``), with this module's settings."""
    return bedrock_standin


def drain(stream: Any) -> tuple[list[dict[str, Any]], ModelError | None]:
    """Every event a stream delivers, and the model error that ended it (if any)."""
    events: list[dict[str, Any]] = []
    try:
        for event in stream:
            events.append(event)
    except ModelError as exc:
        return events, exc
    return events, None


def text_deltas(events: list[dict[str, Any]]) -> list[str]:
    return [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e]


# --- Client configuration -----------------------------------------------------------------------


def test_the_client_uses_standard_retries_the_timeouts_and_a_pool_for_every_turn(
    bedrock_settings: Settings,
) -> None:
    bedrock_settings.BEDROCK_MAX_ATTEMPTS = 4
    bedrock_settings.BEDROCK_CONNECT_TIMEOUT = 2.5
    bedrock_settings.BEDROCK_READ_TIMEOUT = 45.0
    bedrock_settings.CHAT_MAX_CONCURRENT_TURNS = 50

    # botocore-stubs leave Config's attributes undeclared.
    config: Any = bedrock_client().meta.config

    assert config.retries == {"mode": "standard", "total_max_attempts": 4}
    assert config.connect_timeout == 2.5
    assert config.read_timeout == 45.0
    assert config.max_pool_connections is not None
    assert 50 <= config.max_pool_connections <= 60


def test_the_client_is_created_once_and_shared_between_threads(
    bedrock_settings: Settings,
) -> None:
    barrier = threading.Barrier(8)
    seen: list[object] = []

    def fetch() -> None:
        barrier.wait()
        seen.append(bedrock_client())

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(seen) == 8
    assert all(client is seen[0] for client in seen)
    assert bedrock_client() is seen[0]


def test_reset_client_builds_a_new_client_from_current_settings(
    bedrock_settings: Settings,
) -> None:
    first = bedrock_client()
    bedrock_settings.BEDROCK_READ_TIMEOUT = 12.0

    bedrock_client_reset()

    assert bedrock_client() is not first
    config: Any = bedrock_client().meta.config
    assert config.read_timeout == 12.0


def test_aws_default_region_is_honoured(
    monkeypatch: pytest.MonkeyPatch, bedrock_settings: Settings
) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")

    assert bedrock_client().meta.region_name == "eu-central-1"


def test_aws_region_is_used_when_botocore_finds_no_region(bedrock_settings: Settings) -> None:
    # The fixture sets only AWS_REGION, which botocore on its own ignores.
    assert bedrock_client().meta.region_name == "us-east-1"


def test_without_any_region_it_asks_for_aws_region(
    monkeypatch: pytest.MonkeyPatch, bedrock_settings: Settings
) -> None:
    monkeypatch.delenv("AWS_REGION")

    with pytest.raises(ImproperlyConfigured, match="AWS_REGION"):
        model_client()


def test_the_endpoint_comes_from_the_standard_aws_variable(standin: BedrockStandIn) -> None:
    assert bedrock_client().meta.endpoint_url == standin.url


def test_the_factory_returns_the_bedrock_model_when_configured(
    bedrock_settings: Settings,
) -> None:
    model = model_client()

    assert isinstance(model, BedrockModel)
    assert model.client is bedrock_client()


def test_the_factory_returns_the_demo_model_when_configured(settings: Settings) -> None:
    settings.CHAT_MODEL = "demo"
    settings.CHAT_DEMO_DELAY_SECONDS = 0.25

    model = model_client()

    assert isinstance(model, DemoModel)
    assert model.delay_seconds == 0.25


def test_the_factory_refuses_an_unknown_model(settings: Settings) -> None:
    settings.CHAT_MODEL = "gpt"

    with pytest.raises(ImproperlyConfigured, match="CHAT_MODEL"):
        model_client()


# --- ConverseStream errors through botocore's Stubber --------------------------------------------


def test_throttling_is_busy_and_the_service_text_stays_in_the_log(
    stubber: Stubber, caplog: pytest.LogCaptureFixture
) -> None:
    stubber.add_client_error(
        "converse_stream", "ThrottlingException", "Too many tokens, slow down", 429
    )

    with (
        caplog.at_level(logging.WARNING, logger="chat.engine.bedrock"),
        pytest.raises(ModelBusy) as excinfo,
    ):
        model_client().converse_stream(modelId=MODEL_ID, messages=HELLO)

    assert excinfo.value.retryable
    assert excinfo.value.customer_message == ModelBusy.customer_message
    assert "Too many tokens" not in excinfo.value.customer_message
    assert any("Too many tokens" in record.getMessage() for record in caplog.records)


def test_a_validation_exception_is_rejected_and_not_retryable(stubber: Stubber) -> None:
    stubber.add_client_error(
        "converse_stream", "ValidationException", "messages.1: toolResult without toolUse", 400
    )

    with pytest.raises(ModelRequestRejected) as excinfo:
        model_client().converse_stream(modelId=MODEL_ID, messages=HELLO)

    assert not excinfo.value.retryable
    assert "toolResult" not in excinfo.value.customer_message


def test_a_model_error_twice_is_unavailable(stubber: Stubber) -> None:
    stubber.add_client_error("converse_stream", "ModelErrorException", "The model failed", 424)
    stubber.add_client_error(
        "converse_stream", "ModelErrorException", "The model failed again", 424
    )

    # A third call would find no stubbed response and fail the test with a stub error.
    with pytest.raises(ModelUnavailable):
        model_client().converse_stream(modelId=MODEL_ID, messages=HELLO)

    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ThrottlingException", 429, ModelBusy),
        ("ServiceUnavailableException", 503, ModelBusy),
        ("ServiceQuotaExceededException", 400, ModelBusy),
        ("ModelNotReadyException", 429, ModelBusy),
        ("TooManyRequestsException", 429, ModelBusy),
        ("SomethingNewAndThrottly", 429, ModelBusy),
        ("InternalServerException", 500, ModelUnavailable),
        ("SomethingNewAndBroken", 502, ModelUnavailable),
        ("ValidationException", 400, ModelRequestRejected),
        ("AccessDeniedException", 403, ModelRequestRejected),
        ("ResourceNotFoundException", 404, ModelRequestRejected),
        ("UnrecognizedClientException", 403, ModelRequestRejected),
        ("SomethingNewAndRefused", 409, ModelRequestRejected),
    ],
)
def test_service_errors_become_model_errors(
    stubber: Stubber, code: str, status: int, expected: type[ModelError]
) -> None:
    stubber.add_client_error("converse_stream", code, "details for the log only", status)

    with pytest.raises(ModelError) as excinfo:
        model_client().converse_stream(modelId=MODEL_ID, messages=HELLO)

    assert type(excinfo.value) is expected
    assert "details for the log only" not in excinfo.value.customer_message


def test_a_request_the_sdk_refuses_to_send_is_rejected(bedrock_settings: Settings) -> None:
    with pytest.raises(ModelRequestRejected):
        model_client().converse_stream(modelId=MODEL_ID, messages=[{"role": "user"}])


# --- The real client against a local HTTP stand-in -----------------------------------------------


def test_standard_retries_ride_out_throttling(standin: BedrockStandIn) -> None:
    standin.script(
        error_reply(429, "ThrottlingException", "Too many requests"),
        stream_reply(text_stream_frames("<reply>Your order has shipped.</reply>")),
    )

    response = model_client().converse_stream(modelId=PROFILE_ARN, messages=HELLO)
    events, error = drain(response["stream"])

    assert error is None
    assert text_deltas(events) == ["<reply>Your order has shipped.</reply>"]
    assert len(standin.received) == 2
    for request in standin.received:
        assert request.path == f"/model/{quote(PROFILE_ARN, safe='')}/converse-stream"
        assert request.json()["messages"] == HELLO
        assert "modelId" not in request.json()
        assert "Credential=testing/" in request.headers["Authorization"]


def test_throttling_that_outlasts_every_attempt_is_busy(
    standin: BedrockStandIn, bedrock_settings: Settings
) -> None:
    bedrock_settings.BEDROCK_MAX_ATTEMPTS = 2
    standin.script(
        error_reply(429, "ThrottlingException"),
        error_reply(429, "ThrottlingException"),
        stream_reply(text_stream_frames("never reached")),
    )

    with pytest.raises(ModelBusy):
        model_client().converse_stream(modelId=MODEL_ID, messages=HELLO)

    # BEDROCK_MAX_ATTEMPTS counts the first try too.
    assert len(standin.received) == 2


def test_a_validation_exception_from_the_service_is_rejected(standin: BedrockStandIn) -> None:
    standin.script(error_reply(400, "ValidationException", "The model returned a bad request"))

    with pytest.raises(ModelRequestRejected):
        model_client().converse_stream(modelId=MODEL_ID, messages=HELLO)

    assert len(standin.received) == 1


def test_without_request_validation_bedrock_judges_the_request(
    standin: BedrockStandIn, bedrock_settings: Settings
) -> None:
    bedrock_settings.BEDROCK_VALIDATE_REQUESTS = False  # the production default
    standin.script(error_reply(400, "ValidationException", "messages.0.content: required"))

    # botocore would refuse this one itself (no content); now Bedrock does, with the same outcome.
    with pytest.raises(ModelRequestRejected):
        model_client().converse_stream(modelId=MODEL_ID, messages=[{"role": "user"}])

    assert [request.json()["messages"] for request in standin.received] == [[{"role": "user"}]]


def test_a_complete_stream_is_parsed_by_botocore(standin: BedrockStandIn) -> None:
    tool_input = '{"order_id": "32057"}'
    standin.script(
        stream_reply(
            [
                event_frame("messageStart", {"role": "assistant"}),
                event_frame(
                    "contentBlockDelta",
                    {"contentBlockIndex": 0, "delta": {"text": "<reply>Let me "}},
                ),
                event_frame(
                    "contentBlockDelta",
                    {"contentBlockIndex": 0, "delta": {"text": "check.</reply>"}},
                ),
                event_frame("contentBlockStop", {"contentBlockIndex": 0}),
                event_frame(
                    "contentBlockStart",
                    {
                        "contentBlockIndex": 1,
                        "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_order_by_id"}},
                    },
                ),
                event_frame(
                    "contentBlockDelta",
                    {"contentBlockIndex": 1, "delta": {"toolUse": {"input": tool_input}}},
                ),
                event_frame("contentBlockStop", {"contentBlockIndex": 1}),
                event_frame("messageStop", {"stopReason": "tool_use"}),
                event_frame(
                    "metadata",
                    {
                        "usage": {"inputTokens": 900, "outputTokens": 40, "totalTokens": 940},
                        "metrics": {"latencyMs": 640},
                    },
                ),
            ]
        )
    )

    response = model_client().converse_stream(**full_request())
    events, error = drain(response["stream"])

    assert error is None
    assert events == [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "<reply>Let me "}}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "check.</reply>"}}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {
            "contentBlockStart": {
                "contentBlockIndex": 1,
                "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_order_by_id"}},
            }
        },
        {
            "contentBlockDelta": {
                "contentBlockIndex": 1,
                "delta": {"toolUse": {"input": tool_input}},
            }
        },
        {"contentBlockStop": {"contentBlockIndex": 1}},
        {"messageStop": {"stopReason": "tool_use"}},
        {
            "metadata": {
                "usage": {"inputTokens": 900, "outputTokens": 40, "totalTokens": 940},
                "metrics": {"latencyMs": 640},
            }
        },
    ]
    [request] = standin.received
    assert request.path == f"/model/{quote(MODEL_ID, safe='')}/converse-stream"
    # Every Converse feature the chat relies on passed botocore's checks and went out as sent.
    sent = {key: value for key, value in full_request().items() if key != "modelId"}
    assert request.json() == sent


@pytest.mark.parametrize(
    ("exception_type", "expected"),
    [
        ("modelStreamErrorException", ModelUnavailable),
        ("internalServerException", ModelUnavailable),
        ("throttlingException", ModelBusy),
        ("serviceUnavailableException", ModelBusy),
        ("validationException", ModelRequestRejected),
    ],
)
def test_an_exception_mid_stream_arrives_after_the_earlier_deltas(
    standin: BedrockStandIn, exception_type: str, expected: type[ModelError]
) -> None:
    frames = text_stream_frames("<reply>Your order ", "has ")[:3]
    standin.script(stream_reply([*frames, exception_frame(exception_type, "stream broke")]))

    response = model_client().converse_stream(modelId=MODEL_ID, messages=HELLO)
    events, error = drain(response["stream"])

    assert text_deltas(events) == ["<reply>Your order ", "has "]
    assert type(error) is expected
    assert error is not None
    assert "stream broke" not in error.customer_message


def test_a_model_timeout_before_the_stream_starts_is_retried_once(standin: BedrockStandIn) -> None:
    standin.script(
        error_reply(408, "ModelTimeoutException"),
        stream_reply(text_stream_frames("<reply>Hello!</reply>")),
    )

    response = model_client().converse_stream(modelId=MODEL_ID, messages=HELLO)
    events, error = drain(response["stream"])

    assert error is None
    assert text_deltas(events) == ["<reply>Hello!</reply>"]
    assert len(standin.received) == 2


def test_a_server_that_does_not_answer_in_time_is_unavailable(
    standin: BedrockStandIn, bedrock_settings: Settings
) -> None:
    bedrock_settings.BEDROCK_READ_TIMEOUT = 0.2
    bedrock_settings.BEDROCK_MAX_ATTEMPTS = 1
    standin.script(stall_reply())

    with pytest.raises(ModelUnavailable):
        model_client().converse_stream(modelId=MODEL_ID, messages=HELLO)

    assert len(standin.received) == 1


def test_a_stream_that_stalls_midway_is_unavailable_after_the_earlier_deltas(
    standin: BedrockStandIn, bedrock_settings: Settings
) -> None:
    bedrock_settings.BEDROCK_READ_TIMEOUT = 0.2
    bedrock_settings.BEDROCK_MAX_ATTEMPTS = 1
    standin.script(stream_reply(text_stream_frames("<reply>Let me ", "see")[:3], stall_after=True))

    response = model_client().converse_stream(modelId=MODEL_ID, messages=HELLO)
    events, error = drain(response["stream"])

    assert text_deltas(events) == ["<reply>Let me ", "see"]
    assert isinstance(error, ModelUnavailable)


def test_a_refused_connection_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, bedrock_settings: Settings
) -> None:
    bedrock_settings.BEDROCK_MAX_ATTEMPTS = 1
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", f"http://127.0.0.1:{closed_port}")

    with pytest.raises(ModelUnavailable):
        model_client().converse_stream(modelId=MODEL_ID, messages=HELLO)
