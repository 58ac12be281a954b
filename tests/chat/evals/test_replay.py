"""Recorded runs replay offline, and a changed request stops the replay, naming what changed."""

import json
from pathlib import Path
from typing import Any

import pytest
from pytest_django import Settings

from chat.evals.engine import shipped_prompt
from tests.chat.bedrock_standin import BedrockStandIn, event_frame, stream_reply
from tests.chat.evals.helpers import SHIPPED_SUITE, evaluate, write_case

pytestmark = pytest.mark.django_db(transaction=True)

MODEL_ID = "anthropic.claude-test-v1:0"
LOOKUP_CASE = """\
customer: "901235"
turns:
  - say: What's the status of order 37129?
    expect:
      tools: [{name: get_order_by_id, input: {order_id: "37129"}}]
      reply_contains: [Sunglasses, Processing]
"""


def _turns(report: Path) -> dict[str, Any]:
    """Per case, what the customer saw and what the model did, without timings."""
    cases = json.loads(report.read_text())["variants"][0]["cases"]
    return {
        case["name"]: [
            {key: turn[key] for key in ("tool_calls", "replies", "confirmations", "outcome")}
            for turn in case["runs"][0]["turns"]
        ]
        for case in cases
    }


def changed_prompt(tmp_path: Path) -> Path:
    path = tmp_path / "changed.txt"
    path.write_text(shipped_prompt().replace("friendly and brief", "friendly and thorough"))
    return path


def test_a_recorded_run_of_the_suite_replays_offline_with_the_same_results(
    settings: Settings, tmp_path: Path
) -> None:
    settings.CHAT_MODEL = "demo"
    recording = tmp_path / "demo.json"

    recorded, failed = evaluate("--record", recording, "--json", tmp_path / "recorded.json")
    assert failed is None, recorded
    replayed, failed = evaluate("--replay", recording, "--json", tmp_path / "replayed.json")

    assert failed is None, replayed
    assert _turns(tmp_path / "replayed.json") == _turns(tmp_path / "recorded.json")
    cases = json.loads(recording.read_text())["cases"]
    assert sorted(cases) == sorted(p.stem for p in SHIPPED_SUITE.glob("*.yaml"))


def test_a_changed_system_prompt_stops_the_replay_and_names_it(
    settings: Settings, tmp_path: Path
) -> None:
    settings.CHAT_MODEL = "demo"
    case = SHIPPED_SUITE / "sample-order-lookup.yaml"
    evaluate(case, "--record", tmp_path / "demo.json")

    output, failed = evaluate(
        case, "--replay", tmp_path / "demo.json", "--prompt-file", changed_prompt(tmp_path)
    )

    assert failed == "1 eval case(s) failed: sample-order-lookup"
    assert (
        "- replay: model call 1: the request differs from the recording in the system prompt: "
        "line 2, column 82: recorded …'ers. Be helpful, friendly and brief.', "
        "now …'ers. Be helpful, friendly and thorough.'. Record again (--record) if the change "
        "is meant."
    ) in output
    assert "replay mismatches: 1 (the engine no longer sends the recorded requests" in output


def test_a_copy_of_the_shipped_prompt_replays_as_the_shipped_one(
    settings: Settings, tmp_path: Path
) -> None:
    settings.CHAT_MODEL = "demo"
    case = SHIPPED_SUITE / "sample-order-lookup.yaml"
    evaluate(case, "--record", tmp_path / "demo.json")
    candidate = tmp_path / "candidate.txt"
    candidate.write_text(shipped_prompt() + "\n")  # as the README's shell command writes it

    output, failed = evaluate(case, "--replay", tmp_path / "demo.json", "--prompt-file", candidate)

    assert failed is None, output


# --- Through the real boto3 client -----------------------------------------------------------


@pytest.fixture
def standin(bedrock_standin: BedrockStandIn) -> BedrockStandIn:
    return bedrock_standin


def _usage() -> bytes:
    return event_frame(
        "metadata",
        {
            "usage": {"inputTokens": 1200, "outputTokens": 80, "totalTokens": 1280},
            "metrics": {"latencyMs": 850},
        },
    )


def lookup_then_answer() -> list[Any]:
    """Claude's two streamed responses: look the order up, then answer."""
    look_up = [
        event_frame("messageStart", {"role": "assistant"}),
        event_frame(
            "contentBlockDelta",
            {"contentBlockIndex": 0, "delta": {"text": "<thinking>Look it up.</thinking>"}},
        ),
        event_frame("contentBlockStop", {"contentBlockIndex": 0}),
        event_frame(
            "contentBlockStart",
            {
                "contentBlockIndex": 1,
                "start": {"toolUse": {"toolUseId": "tooluse_a1", "name": "get_order_by_id"}},
            },
        ),
        event_frame(
            "contentBlockDelta",
            {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"order_id": "37129"}'}}},
        ),
        event_frame("contentBlockStop", {"contentBlockIndex": 1}),
        event_frame("messageStop", {"stopReason": "tool_use"}),
        _usage(),
    ]
    answer = [
        event_frame("messageStart", {"role": "assistant"}),
        *(
            event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": part}})
            for part in (
                "<thinking>It is Processing.</thinking><reply>Order 37129 ",
                "(2 × Sunglasses) is Processing.</reply>",
            )
        ),
        event_frame("contentBlockStop", {"contentBlockIndex": 0}),
        event_frame("messageStop", {"stopReason": "end_turn"}),
        _usage(),
    ]
    return [stream_reply(look_up), stream_reply(answer)]


def test_a_run_through_boto3_replays_offline_and_a_prompt_change_is_named(
    standin: BedrockStandIn, tmp_path: Path
) -> None:
    case = write_case(tmp_path, "lookup", LOOKUP_CASE)
    standin.script(*lookup_then_answer())

    output, failed = evaluate(
        case, "--model", f"bedrock:{MODEL_ID}", "--record", tmp_path / "claude.json"
    )

    assert failed is None, output
    assert [r.path for r in standin.received] == [
        "/model/anthropic.claude-test-v1%3A0/converse-stream"
    ] * 2
    assert "tokens in / out / cached: 2,400 / 160 / 0" in output
    assert "model latency p50 / p95: 850 ms / 850 ms" in output
    standin.stop()  # offline from here: a request would now fail to connect

    replayed, failed = evaluate(case, "--replay", tmp_path / "claude.json")

    assert failed is None, replayed
    assert f"Model: replay:{tmp_path / 'claude.json'}" in replayed
    assert "model latency p50 / p95: 850 ms / 850 ms" in replayed

    changed, failed = evaluate(
        case, "--replay", tmp_path / "claude.json", "--prompt-file", changed_prompt(tmp_path)
    )

    assert failed == "1 eval case(s) failed: lookup"
    assert "the request differs from the recording in the system prompt: line 2" in changed
