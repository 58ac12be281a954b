"""The end-to-end benchmark's instrument, so it cannot rot unnoticed: its Bedrock stand-in speaks
event streams the real boto3 client parses, scripts a one-tool turn, and the floor replays it."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.floor import Call, FloorError, bedrock_client, call, replay
from bench.profiling import summarize
from bench.script import answer_text, not_found_text, question_text, split_text
from bench.standin import Config, StandIn

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
TOKEN = "0123456789abcdef"
ORDER = {
    "id": "24601",
    "customer_id": "123456",
    "product": "Wireless Headphones",
    "quantity": 1,
    "price": "79.99",
    "status": "Shipped",
}


@pytest.fixture
def standin() -> Iterator[StandIn]:
    server = StandIn(Config(chunks=5)).start_in_thread()
    yield server
    server.stop()


def question() -> dict[str, Any]:
    return {"role": "user", "content": [{"text": question_text("24601", TOKEN)}]}


def after_tool(tool_use: dict[str, Any], result: dict[str, Any]) -> list[dict[str, Any]]:
    use = {**tool_use, "input": json.loads(tool_use["input"])}
    return [
        question(),
        {"role": "assistant", "content": [{"toolUse": use}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": use["toolUseId"], **result}}]},
    ]


def test_it_streams_a_tool_call_then_the_answer_built_from_the_tool_result(
    standin: StandIn,
) -> None:
    client = bedrock_client(standin.url)

    first = call(client, Call(MODEL, "converse-stream", {"messages": [question()]}))
    assert first.stop_reason == "tool_use"
    (tool_use,) = first.tool_uses
    assert tool_use["name"] == "get_order_by_id"
    assert json.loads(tool_use["input"]) == {"order_id": "24601"}

    history = after_tool(tool_use, {"content": [{"json": ORDER}], "status": "success"})
    second = call(client, Call(MODEL, "converse-stream", {"messages": history}))
    assert second.stop_reason == "end_turn"
    assert second.text == (
        f"<thinking>I have what I need.</thinking><reply>{answer_text(ORDER, TOKEN)}</reply>"
    )
    # messageStart, five text deltas, contentBlockStop, messageStop, metadata
    assert second.events == 9

    record = standin.turns[TOKEN]
    assert (record.calls, record.tool_ok, record.messages) == (2, True, [1, 3])


def test_a_failed_tool_result_gets_a_not_found_answer_and_is_recorded(standin: StandIn) -> None:
    client = bedrock_client(standin.url)
    (tool_use,) = call(client, Call(MODEL, "converse", {"messages": [question()]})).tool_uses
    tool_use = {**tool_use, "input": json.dumps(tool_use["input"])}
    result = {"content": [{"text": "No order 24601 was found."}], "status": "error"}

    answer = call(client, Call(MODEL, "converse", {"messages": after_tool(tool_use, result)}))

    assert not_found_text("24601", TOKEN) in answer.text
    assert standin.turns[TOKEN].tool_ok is False


def test_the_floor_replays_the_calls_the_stand_in_kept(standin: StandIn) -> None:
    client = bedrock_client(standin.url)
    first = call(client, Call(MODEL, "converse-stream", {"messages": [question()]}))
    history = after_tool(first.tool_uses[0], {"content": [{"json": ORDER}], "status": "success"})
    call(client, Call(MODEL, "converse-stream", {"messages": history}))
    kept = [Call(c["model_id"], c["operation"], c["body"]) for c in standin.bodies[TOKEN]]

    assert [c.model_id for c in kept] == [MODEL, MODEL]
    assert len(replay(client, kept, repeats=3)) == 3
    with pytest.raises(FloorError, match="tool_use"):
        replay(client, kept[:1], repeats=1)


def test_a_request_without_a_marker_is_refused_as_boto3_reports_validation_errors(
    standin: StandIn,
) -> None:
    client = bedrock_client(standin.url)
    unmarked = {"messages": [{"role": "user", "content": [{"text": "Hello"}]}]}

    with pytest.raises(client.exceptions.ValidationException, match="bench:TOKEN"):
        call(client, Call(MODEL, "converse-stream", unmarked))


def test_answers_are_split_into_the_configured_number_of_deltas() -> None:
    assert split_text("abcdefghij", 3) == ["abcd", "efg", "hij"]
    assert split_text("ab", 8) == ["a", "b"]


def test_profiles_are_grouped_by_the_innermost_library_outside_the_standard_library(
    tmp_path: Path,
) -> None:
    stacks = tmp_path / "profile.txt"
    stacks.write_text(
        "run (daphne/server.py);execute (django/db/models/sql/compiler.py);"
        "loads (json/__init__.py) 3\n"
        "run (daphne/server.py);turn_submit (chat/services.py);_send (botocore/endpoint.py) 1\n"
        "run (daphne/server.py);turn_submit (chat/services.py);deepcopy (copy.py) 2\n"
    )

    summary = summarize(stacks)

    assert summary.samples == 6
    assert dict(summary.groups) == {
        "Django ORM + psycopg": 50.0,
        "app code (anycompany, chat, orders)": pytest.approx(100 / 3),
        "botocore + urllib3": pytest.approx(100 / 6),
    }
    assert summary.self_top[0] == ("loads (json/__init__.py)", 50.0)
    assert summary.app_top == [("turn_submit (chat/services.py)", 50.0)]
