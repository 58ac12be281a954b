"""Prompt caching is on by default for the Claude models that take Converse cache points."""

from typing import Any

import pytest

from chat.engine.bedrock import caches_prompts
from chat.live.engine_config import turn_config
from chat.models import Conversation
from chat.tools import registry
from orders.models import Customer
from tests.chat.bedrock_standin import (
    BedrockStandIn,
    stream_reply,
    text_stream_frames,
    tool_stream_frames,
)
from tests.chat.factories import make_conversation, submit
from tests.conftest import make_order

CACHE_POINT = {"cachePoint": {"type": "default"}}


@pytest.mark.parametrize(
    "model_id",
    [
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "global.anthropic.claude-haiku-4-5-20251001-v1:0",
        "anthropic.claude-opus-4-1-20250805-v1:0",
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
        "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
    ],
)
def test_claude_models_that_take_cache_points_get_them(model_id: str) -> None:
    assert caches_prompts(model_id)


@pytest.mark.parametrize(
    "model_id",
    [
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "anthropic.claude-3-haiku-20240307-v1:0",
        "amazon.nova-pro-v1:0",
        "meta.llama3-70b-instruct-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3",
    ],
)
def test_other_models_do_not(model_id: str) -> None:
    assert not caches_prompts(model_id)


@pytest.mark.parametrize(
    ("chat_model", "setting", "model_id", "expected"),
    [
        ("bedrock", None, "us.anthropic.claude-sonnet-4-5-20250929-v1:0", True),
        ("bedrock", None, "amazon.nova-pro-v1:0", False),
        ("bedrock", False, "us.anthropic.claude-sonnet-4-5-20250929-v1:0", False),
        ("bedrock", True, "arn:aws:bedrock:us-east-1:1:application-inference-profile/x", True),
        ("demo", True, "us.anthropic.claude-sonnet-4-5-20250929-v1:0", False),
    ],
)
def test_the_setting_decides_and_auto_follows_the_model(
    alice: Customer,
    settings: Any,
    chat_model: str,
    setting: bool | None,
    model_id: str,
    expected: bool,
) -> None:
    settings.CHAT_MODEL, settings.BEDROCK_PROMPT_CACHING = chat_model, setting
    settings.BEDROCK_MODEL_ID = model_id

    assert turn_config(customer=alice, tools=registry).prompt_caching is expected


@pytest.fixture
def standin(bedrock_standin: BedrockStandIn, settings: Any) -> BedrockStandIn:
    settings.CHAT_MODEL = "bedrock"
    settings.BEDROCK_PROMPT_CACHING = None  # the default, "auto"
    return bedrock_standin


@pytest.mark.django_db(transaction=True)
def test_a_default_turn_sends_cache_points_that_botocore_accepts(
    alice: Customer, standin: BedrockStandIn
) -> None:
    make_order("40001", alice, product="Moonstone lamp")
    conversation: Conversation = make_conversation(alice)
    standin.script(
        stream_reply(
            tool_stream_frames("Let me look.", "t-1", "get_order_by_id", {"order_id": "40001"})
        ),
        stream_reply(text_stream_frames("<reply>It ships on Monday.</reply>")),
    )

    events = submit(conversation, alice, "Where is order 40001?")

    # botocore validates each request against its service model before sending it.
    assert events.of_type("turn")[-1]["outcome"] == "answered"
    assert len(standin.received) == 2
    for request in (received.json() for received in standin.received):
        # The instructions are cached for every customer; who the customer is comes after.
        assert request["system"][1] == CACHE_POINT
        assert request["system"][2]["text"].startswith("The signed-in customer is")
        assert request["toolConfig"]["tools"][-1] == CACHE_POINT
        assert request["messages"][-1]["content"][-1] == CACHE_POINT
        assert "cachePoint" not in str(request["messages"][:-1])
