"""The offline demo model speaks ConverseStream and plays by Converse's history rules."""

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.engine.client import ModelRequestRejected
from chat.engine.demo.model import PREFIX, DemoModel
from chat.engine.loop import run_turn
from chat.engine.replies import visible_text
from chat.engine.types import ModelCallRecord, ToolOutcome, TurnConfig
from chat.tools import registry

ORDER_32057 = {
    "id": "32057",
    "customer_id": "012347",
    "product": "Backpack",
    "quantity": 1,
    "price": "59.99",
    "status": "Shipped",
}


def request(*messages: dict[str, Any]) -> dict[str, Any]:
    return {
        "modelId": "demo",
        "messages": list(messages),
        "system": [{"text": "You are a support assistant."}],
        "toolConfig": {"tools": registry.specs(), "toolChoice": {"auto": {}}},
        "inferenceConfig": {"temperature": 0, "maxTokens": 4096},
    }


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"text": text}]}


def assemble(stream: Any) -> tuple[dict[str, Any], str | None, dict[str, Any]]:
    """Builds the message from ConverseStream events the way a client must."""
    blocks: dict[int, dict[str, Any]] = {}
    stop_reason = None
    metadata: dict[str, Any] = {}
    events = list(stream)
    assert next(iter(events[0])) == "messageStart"
    for event in events:
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            tool_use = dict(start["start"]["toolUse"], input="")
            blocks[start["contentBlockIndex"]] = {"toolUse": tool_use}
        elif "contentBlockDelta" in event:
            body = event["contentBlockDelta"]
            delta = body["delta"]
            if "text" in delta:
                block = blocks.setdefault(body["contentBlockIndex"], {"text": ""})
                block["text"] += delta["text"]
            else:
                blocks[body["contentBlockIndex"]]["toolUse"]["input"] += delta["toolUse"]["input"]
        elif "messageStop" in event:
            stop_reason = event["messageStop"]["stopReason"]
        elif "metadata" in event:
            metadata = event["metadata"]
    for block in blocks.values():
        if "toolUse" in block:
            block["toolUse"]["input"] = json.loads(block["toolUse"]["input"])
    content = [blocks[index] for index in sorted(blocks)]
    return {"role": "assistant", "content": content}, stop_reason, metadata


def respond(*messages: dict[str, Any], chunk_chars: int = 12) -> tuple[dict[str, Any], str | None]:
    """The demo model's message and stop reason for a request with ``messages``."""
    model = DemoModel(delay_seconds=0, chunk_chars=chunk_chars)
    message, stop_reason, _ = assemble(model.converse_stream(**request(*messages))["stream"])
    return message, stop_reason


CONVERSATIONS = [
    [user("I need help with an order")],
    [user("My order is 32057")],
    [user("<img src=x onerror=alert(1)>")],
    [
        user("My order is 32057"),
        {
            "role": "assistant",
            "content": [
                {"text": "<thinking>Looking it up. Goal: lookup.</thinking>"},
                {
                    "toolUse": {
                        "toolUseId": "t1",
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
                        "toolUseId": "t1",
                        "content": [{"json": ORDER_32057}],
                        "status": "success",
                    }
                }
            ],
        },
    ],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_a_streamed_answer_has_the_converse_stream_shape(messages: list[dict[str, Any]]) -> None:
    model = DemoModel(delay_seconds=0, chunk_chars=5)
    message, stop_reason, metadata = assemble(model.converse_stream(**request(*messages))["stream"])

    assert message["content"]
    assert stop_reason in {"end_turn", "tool_use"}
    usage = metadata["usage"]
    assert usage["inputTokens"] > 0
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert isinstance(metadata["metrics"]["latencyMs"], int)


def test_text_streams_in_small_chunks_and_tool_input_as_a_json_string() -> None:
    model = DemoModel(delay_seconds=0, chunk_chars=8)
    events = list(model.converse_stream(**request(user("My order is 32057")))["stream"])

    text_deltas = [
        e["contentBlockDelta"]["delta"]["text"]
        for e in events
        if "text" in e.get("contentBlockDelta", {}).get("delta", {})
    ]
    tool_deltas = [
        e["contentBlockDelta"]["delta"]["toolUse"]["input"]
        for e in events
        if "toolUse" in e.get("contentBlockDelta", {}).get("delta", {})
    ]
    starts = [
        e["contentBlockStart"]["start"]["toolUse"]["name"]
        for e in events
        if "contentBlockStart" in e
    ]

    assert len(text_deltas) > 1
    assert all(len(chunk) <= 8 for chunk in text_deltas)
    assert starts == ["get_order_by_id"]
    assert json.loads("".join(tool_deltas)) == {"order_id": "32057"}
    assert [next(iter(e)) for e in events[-2:]] == ["messageStop", "metadata"]
    assert events[-2]["messageStop"]["stopReason"] == "tool_use"


def test_it_asks_for_the_order_id_then_looks_the_order_up() -> None:
    first, _ = respond(user("I need help with an order"))
    assert "order number" in visible_text(first)

    second, _ = respond(user("My order is 32057"))
    uses = [b["toolUse"] for b in second["content"] if "toolUse" in b]
    assert [(u["name"], u["input"]) for u in uses] == [("get_order_by_id", {"order_id": "32057"})]


def test_it_summarises_a_looked_up_order() -> None:
    message, stop_reason = respond(*CONVERSATIONS[3])

    assert stop_reason == "end_turn"
    text = visible_text(message)
    assert text.startswith(PREFIX)
    assert "Your order 32057: 1 × Backpack at $59.99, status Shipped" in text


def test_it_thinks_in_thinking_tags_and_labels_every_reply() -> None:
    message, _ = respond(user("Hello"))
    raw = message["content"][0]["text"]

    assert raw.startswith("<thinking>")
    assert f"<reply>{PREFIX}" in raw
    assert "thinking" not in visible_text(message)


def test_it_quotes_text_it_does_not_understand() -> None:
    attack = "<img src=x onerror=alert(1)>"
    message, _ = respond(user(attack))

    text = visible_text(message)
    assert text.startswith(PREFIX)
    assert attack in text


def test_a_quoted_reply_tag_cannot_end_the_reply_early() -> None:
    message, _ = respond(user("zzz</reply>hidden<reply>"))

    assert "zzzhidden" in visible_text(message)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=300).filter(str.strip))
def test_it_answers_any_text_with_a_labelled_reply_or_one_valid_tool_call(text: str) -> None:
    message, stop_reason = respond(user(text))

    if stop_reason == "tool_use":
        uses = [b["toolUse"] for b in message["content"] if "toolUse" in b]
        assert len(uses) == 1
        assert uses[0]["name"] in {"get_user", "get_order_by_id", "get_customer_orders"}
    else:
        assert stop_reason == "end_turn"
        assert visible_text(message).startswith(PREFIX)


def test_it_is_deterministic() -> None:
    assert respond(user("My order is 32057")) == respond(user("My order is 32057"))


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [user("one"), user("two")],
        [
            user("My order is 32057"),
            {
                "role": "assistant",
                "content": [
                    {
                        "toolUse": {
                            "toolUseId": "t1",
                            "name": "get_order_by_id",
                            "input": {"order_id": "1"},
                        }
                    }
                ],
            },
            user("no result for t1"),
        ],
    ],
)
def test_it_rejects_histories_that_converse_rejects(messages: list[dict[str, Any]]) -> None:
    with pytest.raises(ModelRequestRejected):
        DemoModel(delay_seconds=0).converse_stream(**request(*messages))


class _OrderTools:
    specs = registry.specs()

    def needs_confirmation(self, name: str, tool_input: dict[str, Any]) -> bool:
        return False

    def status_text(self, name: str, tool_input: dict[str, Any]) -> str:
        return name

    def run(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome:
        return ToolOutcome("success", ORDER_32057)


class _ListSink:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.deltas: list[str] = []

    def model_called(self, record: ModelCallRecord) -> None:
        pass

    def messages_appended(self, messages: list[dict[str, Any]]) -> None:
        self.messages.extend(messages)

    def text_delta(self, text: str) -> None:
        self.deltas.append(text)

    def tool_started(self, name: str, tool_input: dict[str, Any], description: str) -> None:
        pass


def test_the_tool_loop_runs_a_whole_turn_against_it() -> None:
    config = TurnConfig(
        model_id="demo",
        system_prompt="",
        inference_config={},
        additional_model_request_fields={},
        max_model_calls=4,
        deadline_seconds=30,
    )
    sink = _ListSink()
    result = run_turn(
        client=DemoModel(delay_seconds=0, chunk_chars=3),
        history=[user("My order is 32057")],
        tools=_OrderTools(),
        config=config,
        sink=sink,
    )

    assert result.outcome == "answered"
    assert (
        result.reply
        == f"{PREFIX}Your order 32057: 1 × Backpack at $59.99, status Shipped. It is on its way."
    )
    assert "".join(sink.deltas) == result.reply
    assert [m["role"] for m in sink.messages] == ["assistant", "user", "assistant"]
