"""The pure tool loop against a scripted model: no database, no network, no sleeping.

Every model call streams (``converse_stream``), as in production.
"""

import json
import logging
from typing import Any

import pytest

from chat.engine.client import ModelBusy, ModelError, ModelRequestRejected, ModelUnavailable
from chat.engine.history import MISSING_RESULT_TEXT, repair, violations
from chat.engine.loop import (
    BLOCKED_TEXT,
    CAPPED_TEXT,
    CONTEXT_WINDOW_TEXT,
    DEADLINE_TEXT,
    EMPTY_TEXT,
    MALFORMED_TEXT,
    MAX_TOKENS_TEXT,
    UNKNOWN_STOP_TEXT,
    run_turn,
)
from chat.engine.toolcalls import (
    INTERNAL_ERROR_TEXT,
    NOT_AN_OBJECT_TEXT,
    ONE_AT_A_TIME_TEXT,
    complete_pending,
)
from chat.engine.types import PendingConfirmation, ToolOutcome, TurnResult
from tests.chat.scripted import (
    FakeClock,
    FakeTools,
    RecordingSink,
    ScriptedModel,
    config,
    response,
    text_response,
    tool_call,
    tool_response,
    user,
)

REPLY = (
    "Okay. <thinking>\nThe customer wants order details; I need the id.\n</thinking>\n\n"
    "<reply>\nSure, what is your order id?\n</reply>"
)


def turn(
    model: ScriptedModel,
    history: list[dict[str, Any]] | None = None,
    *,
    tools: FakeTools | None = None,
    sink: RecordingSink | None = None,
    clock: FakeClock | None = None,
    **overrides: Any,
) -> tuple[TurnResult, RecordingSink]:
    sink = sink if sink is not None else RecordingSink()
    result = run_turn(
        client=model,
        history=history if history is not None else [user("I need help with an order")],
        tools=tools if tools is not None else FakeTools(),
        config=config(**overrides),
        sink=sink,
        clock=clock if clock is not None else FakeClock(),
    )
    return result, sink


def tool_results(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [block["toolResult"] for block in message["content"] if "toolResult" in block]


def sent_texts(model: ScriptedModel) -> str:
    return json.dumps(model.requests)


# Plain answers


def test_it_answers_with_the_reply_text_only() -> None:
    model = ScriptedModel(text_response(REPLY))
    result, sink = turn(model)

    assert result == TurnResult("answered", "Sure, what is your order id?", "end_turn")
    assert sink.streamed == "Sure, what is your order id?"


def test_it_keeps_the_thinking_in_the_stored_message() -> None:
    model = ScriptedModel(text_response(REPLY))
    _, sink = turn(model)

    assert sink.appended == [[{"role": "assistant", "content": [{"text": REPLY}]}]]
    assert "thinking" not in sink.streamed


def test_it_shows_an_untagged_answer_without_its_thinking() -> None:
    model = ScriptedModel(text_response("<thinking>easy</thinking>Hello! How can I help?"))
    result, sink = turn(model)

    assert result.reply == "Hello! How can I help?"
    assert sink.streamed == "Hello! How can I help?"


def test_it_sends_the_converse_request_the_original_design_sends() -> None:
    model = ScriptedModel(text_response(REPLY))
    turn(model)

    request = model.requests[0]
    assert request["modelId"] == "test-model"
    assert request["system"] == [{"text": "You are a support assistant."}]
    assert request["inferenceConfig"] == {"temperature": 0, "maxTokens": 4096}
    assert request["additionalModelRequestFields"] == {"top_k": 10}
    assert request["toolConfig"]["toolChoice"] == {"auto": {}}
    assert [t["toolSpec"]["name"] for t in request["toolConfig"]["tools"]] == [
        "get_order_by_id",
        "get_customer_orders",
        "cancel_order",
        "explode",
    ]
    assert request["messages"] == [user("I need help with an order")]
    assert "guardrailConfig" not in request


def test_it_records_usage_and_latency_of_each_call() -> None:
    usage = {
        "inputTokens": 120,
        "outputTokens": 30,
        "totalTokens": 150,
        "cacheReadInputTokens": 900,
        "cacheWriteInputTokens": 40,
    }
    model = ScriptedModel(text_response(REPLY, usage=usage, latency_ms=345))
    _, sink = turn(model)

    [record] = sink.calls
    assert (record.model_id, record.stop_reason, record.error) == ("test-model", "end_turn", "")
    assert (record.input_tokens, record.output_tokens) == (120, 30)
    assert (record.cache_read_tokens, record.cache_write_tokens) == (900, 40)
    assert record.latency_ms == 345


def test_it_measures_latency_with_the_clock_when_metrics_are_missing() -> None:
    clock = FakeClock()
    model = ScriptedModel(text_response(REPLY, latency_ms=None), clock=clock, seconds_per_call=1.5)
    _, sink = turn(model, clock=clock)

    assert sink.calls[0].latency_ms == 1500


def test_it_repairs_a_broken_history_before_sending_it() -> None:
    history = [
        user("my order is 32057"),
        {"role": "assistant", "content": [tool_call("t1", "get_order_by_id", {"order_id": "1"})]},
        user("   "),
        user("hello?"),
    ]
    model = ScriptedModel(text_response("<reply>Hi</reply>"))
    turn(model, history)

    sent = model.requests[0]["messages"]
    assert violations(sent) == []
    assert tool_results(sent[2])[0]["content"] == [{"text": MISSING_RESULT_TEXT}]
    assert sent[2]["content"][1] == {"text": "hello?"}


# Tools


def test_it_runs_a_tool_and_sends_its_result_back() -> None:
    tools = FakeTools()
    model = ScriptedModel(
        tool_response(tool_call("t1", "get_order_by_id", {"order_id": "32057"})),
        text_response("<reply>Your backpack has shipped.</reply>"),
    )
    result, sink = turn(model, [user("my order is 32057")], tools=tools)

    assert result.outcome == "answered"
    assert result.reply == "Your backpack has shipped."
    assert tools.ran == [("get_order_by_id", {"order_id": "32057"})]
    assert sink.started == [("get_order_by_id", {"order_id": "32057"}, "Running get_order_by_id…")]
    answer = model.requests[1]["messages"][-1]
    assert answer["role"] == "user"
    assert tool_results(answer) == [
        {
            "toolUseId": "t1",
            "content": [{"json": tools.orders["32057"]}],
            "status": "success",
        }
    ]
    # The call and its results are stored together, then the final answer.
    assert [len(batch) for batch in sink.appended] == [2, 1]
    assert sink.appended[0][1] == answer


def test_it_still_sends_a_valid_history_when_the_model_reuses_a_tool_use_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    earlier = [
        user("my order is 32057"),
        {"role": "assistant", "content": [tool_call("t1", "get_order_by_id", {"order_id": "1"})]},
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "x"}]}}],
        },
        {"role": "assistant", "content": [{"text": "<reply>Shipped.</reply>"}]},
        user("and again?"),
    ]
    model = ScriptedModel(
        tool_response(tool_call("t1", "get_order_by_id", {"order_id": "32057"})),
        text_response("<reply>Still shipped.</reply>"),
    )

    result, _ = turn(model, earlier)

    assert result.outcome == "answered"
    # ScriptedModel refuses any request Converse would reject; the second one got through.
    assert len(model.requests) == 2
    assert violations(model.requests[1]["messages"]) == []
    assert "reuses toolUseId t1" in caplog.text


def test_it_sends_the_history_it_was_given_without_changing_it() -> None:
    history = [user("my order is 32057")]
    before = json.dumps(history)
    model = ScriptedModel(
        tool_response(tool_call("t1", "get_order_by_id", {"order_id": "32057"})),
        text_response("<reply>Shipped.</reply>"),
    )

    turn(model, history, prompt_caching=True)

    assert json.dumps(history) == before
    assert model.requests[1]["messages"][:1] == [
        {"role": "user", "content": [{"text": "my order is 32057"}]}
    ]


def test_it_answers_parallel_tool_calls_together_in_order() -> None:
    tools = FakeTools()
    model = ScriptedModel(
        tool_response(
            tool_call("t1", "get_order_by_id", {"order_id": "37129"}),
            tool_call("t2", "get_order_by_id", {"order_id": "32057"}),
            tool_call("t3", "get_order_by_id", {"order_id": "404"}),
        ),
        text_response("<reply>Here they are.</reply>"),
    )
    turn(model, tools=tools)

    second = model.requests[1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    results = tool_results(second[2])
    assert [r["toolUseId"] for r in results] == ["t1", "t2", "t3"]
    assert [r["status"] for r in results] == ["success", "success", "error"]
    assert results[2]["content"] == [{"text": "Order not found."}]
    assert [name for name, _ in tools.ran] == ["get_order_by_id"] * 3


def test_it_wraps_a_non_object_tool_result_in_an_object() -> None:
    model = ScriptedModel(
        tool_response(tool_call("t1", "get_customer_orders", {})),
        text_response("<reply>You have two orders.</reply>"),
    )
    turn(model)

    [result] = tool_results(model.requests[1]["messages"][-1])
    assert list(result["content"][0]["json"]) == ["result"]
    assert len(result["content"][0]["json"]["result"]) == 2


def test_it_parses_tool_input_sent_as_a_json_string() -> None:
    tools = FakeTools()
    model = ScriptedModel(
        tool_response(tool_call("t1", "get_order_by_id", '{"order_id": "32057"}')),
        text_response("<reply>Shipped.</reply>"),
    )
    _, sink = turn(model, tools=tools)

    assert tools.ran == [("get_order_by_id", {"order_id": "32057"})]
    stored_call = sink.appended[0][0]["content"][1]["toolUse"]
    assert stored_call["input"] == {"order_id": "32057"}


@pytest.mark.parametrize("raw", ['["32057"]', "{not json", '"32057"'])
def test_it_refuses_tool_input_that_is_not_a_json_object(raw: str) -> None:
    tools = FakeTools()
    model = ScriptedModel(
        tool_response(tool_call("t1", "get_order_by_id", raw)),
        text_response("<reply>Which order?</reply>"),
    )
    result, _ = turn(model, tools=tools)

    assert tools.ran == []
    [tool_result] = tool_results(model.requests[1]["messages"][-1])
    assert tool_result["status"] == "error"
    assert tool_result["content"] == [{"text": NOT_AN_OBJECT_TEXT}]
    assert result.outcome == "answered"


def test_it_reports_unknown_tools_and_invalid_input_and_carries_on() -> None:
    tools = FakeTools()
    model = ScriptedModel(
        tool_response(
            tool_call("t1", "drop_tables", {}),
            tool_call("t2", "get_order_by_id", {"order_id": 32057}),
            tool_call("t3", "get_order_by_id", {}),
            tool_call("t4", "get_order_by_id", {"order_id": "32057"}),
        ),
        text_response("<reply>Done.</reply>"),
    )
    result, _ = turn(model, tools=tools)

    results = tool_results(model.requests[1]["messages"][-1])
    assert [r["status"] for r in results] == ["error", "error", "error", "success"]
    assert results[0]["content"] == [{"text": "Unknown tool: drop_tables."}]
    assert results[1]["content"] == [
        {"text": "Invalid input for get_order_by_id: 32057 is not of type 'string'"}
    ]
    assert results[2]["content"] == [
        {"text": "Invalid input for get_order_by_id: 'order_id' is a required property"}
    ]
    assert tools.ran == [("get_order_by_id", {"order_id": "32057"})]
    assert result.outcome == "answered"


def test_it_hides_an_unexpected_tool_failure_from_the_model(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = ScriptedModel(
        tool_response(tool_call("t1", "explode", {})),
        text_response("<reply>Sorry, something broke.</reply>"),
    )
    with caplog.at_level(logging.ERROR, logger="chat.engine.toolcalls"):
        result, _ = turn(model)

    [tool_result] = tool_results(model.requests[1]["messages"][-1])
    assert tool_result["content"] == [{"text": INTERNAL_ERROR_TEXT}]
    assert "hunter2" not in sent_texts(model)
    assert "hunter2" in caplog.text
    assert result.outcome == "answered"


def test_it_shows_reply_text_of_a_tool_calling_message_but_not_its_narration() -> None:
    model = ScriptedModel(
        tool_response(
            tool_call("t1", "get_order_by_id", {"order_id": "32057"}),
            text="Okay, got it. <reply>Let me look that up.</reply> <thinking>use the tool",
        ),
        text_response("Found it.\n</thinking>\n<reply>It has shipped.</reply>"),
    )
    result, sink = turn(model)

    assert result.reply == "Let me look that up.\n\nIt has shipped."
    assert sink.streamed == result.reply


def test_it_sends_tool_config_even_without_tools_when_history_has_tool_blocks() -> None:
    tools = FakeTools()
    tools.specs = []
    history = [
        user("order 32057"),
        {"role": "assistant", "content": [tool_call("t1", "get_order_by_id", {"order_id": "1"})]},
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "x"}]}}],
        },
        {"role": "assistant", "content": [{"text": "<reply>Shipped.</reply>"}]},
        user("thanks"),
    ]
    model = ScriptedModel(text_response("<reply>You're welcome.</reply>"))
    turn(model, history, tools=tools)

    names = [t["toolSpec"]["name"] for t in model.requests[0]["toolConfig"]["tools"]]
    assert names == ["get_order_by_id"]


# Stop reasons


@pytest.mark.parametrize(
    ("stop_reason", "error_kind", "text", "stored"),
    [
        ("max_tokens", "max_tokens", MAX_TOKENS_TEXT, True),
        ("guardrail_intervened", "guardrail", BLOCKED_TEXT, False),
        ("content_filtered", "content_filtered", BLOCKED_TEXT, False),
        ("malformed_model_output", "malformed", MALFORMED_TEXT, False),
        ("malformed_tool_use", "malformed", MALFORMED_TEXT, False),
        ("model_context_window_exceeded", "context_window", CONTEXT_WINDOW_TEXT, False),
        ("something_new", "unknown_stop", UNKNOWN_STOP_TEXT, False),
    ],
)
def test_it_ends_the_turn_safely_at_an_abnormal_stop_reason(
    stop_reason: str, error_kind: str, text: str, stored: bool
) -> None:
    model = ScriptedModel(text_response("<reply>Partial answer", stop_reason))
    result, sink = turn(model)

    assert result == TurnResult("failed", text, stop_reason, error_kind=error_kind)
    if stored:
        assert sink.appended == [
            [{"role": "assistant", "content": [{"text": "<reply>Partial answer"}]}]
        ]
    else:
        assert sink.appended == []
    assert sink.calls[0].stop_reason == stop_reason


def test_it_answers_at_a_stop_sequence() -> None:
    model = ScriptedModel(text_response("<reply>Here you go.</reply>", "stop_sequence"))
    result, _ = turn(model)

    assert result == TurnResult("answered", "Here you go.", "stop_sequence")


def test_it_never_streams_text_the_guardrail_blocked() -> None:
    model = ScriptedModel(
        text_response("Sorry, the model cannot answer this.", "guardrail_intervened")
    )
    result, sink = turn(model)

    assert sink.deltas == []
    assert result.reply == BLOCKED_TEXT


def test_it_drops_an_unfinished_tool_call_cut_off_by_max_tokens() -> None:
    cut = response(
        [{"text": "<thinking>call it"}, tool_call("t1", "get_order_by_id", '{"order_')],
        "max_tokens",
    )
    tools = FakeTools()
    result, sink = turn(ScriptedModel(cut), tools=tools)

    assert result.error_kind == "max_tokens"
    assert tools.ran == []
    assert sink.appended == [[{"role": "assistant", "content": [{"text": "<thinking>call it"}]}]]


def test_it_fails_politely_when_the_model_shows_nothing() -> None:
    model = ScriptedModel(text_response("<thinking>hmm, not sure</thinking>"))
    result, sink = turn(model)

    assert result == TurnResult("failed", EMPTY_TEXT, "end_turn", error_kind="empty")
    assert len(sink.appended) == 1  # the message is valid history, so it is kept


def test_it_does_not_store_an_empty_message() -> None:
    model = ScriptedModel(response([{"text": "  \n"}], "end_turn"))
    result, sink = turn(model)

    assert result.error_kind == "empty"
    assert sink.appended == []


# Limits


def test_it_stops_after_the_model_call_cap() -> None:
    calls = [
        tool_response(tool_call(f"t{i}", "get_order_by_id", {"order_id": "32057"}))
        for i in range(3)
    ]
    model = ScriptedModel(*calls)
    result, sink = turn(model, max_model_calls=3)

    assert result == TurnResult("failed", CAPPED_TEXT, None, error_kind="capped")
    assert len(model.requests) == 3
    # Every exchange was stored whole: the history ends with the last tool results.
    assert [len(batch) for batch in sink.appended] == [2, 2, 2]
    assert violations([user("hi"), *sink.stored]) == []


def test_it_stops_before_a_call_once_the_deadline_has_passed() -> None:
    clock = FakeClock()
    model = ScriptedModel(
        tool_response(tool_call("t1", "get_order_by_id", {"order_id": "32057"})),
        text_response("<reply>never</reply>"),
    )
    tools = FakeTools(clock=clock, seconds_per_run=45)
    result, sink = turn(model, tools=tools, clock=clock, deadline_seconds=30)

    assert result == TurnResult("failed", DEADLINE_TEXT, None, error_kind="deadline")
    assert len(model.requests) == 1
    assert [len(batch) for batch in sink.appended] == [2]


def test_it_abandons_a_stream_that_runs_past_the_deadline() -> None:
    clock = FakeClock()
    model = ScriptedModel(text_response(REPLY), clock=clock, seconds_per_event=10)
    result, sink = turn(model, clock=clock, deadline_seconds=25)

    assert result.error_kind == "deadline"
    assert sink.appended == []
    assert model.streams_closed == 1
    assert sink.calls[0].error == "deadline"


# Model errors


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ModelBusy("throttled"), "busy"),
        (ModelUnavailable("timeout"), "unavailable"),
        (ModelRequestRejected("validation"), "rejected"),
        (ModelError("other"), "unavailable"),
    ],
)
def test_it_ends_the_turn_with_the_errors_customer_message(error: ModelError, kind: str) -> None:
    model = ScriptedModel(
        tool_response(tool_call("t1", "get_order_by_id", {"order_id": "32057"})), error
    )
    result, sink = turn(model)

    assert result == TurnResult("failed", error.customer_message, None, error_kind=kind)
    assert [record.error for record in sink.calls] == ["", kind]
    assert [len(batch) for batch in sink.appended] == [2]
    assert violations([user("hi"), *sink.stored]) == []


def test_it_handles_a_model_error_in_the_middle_of_a_stream() -> None:
    events: list[Any] = [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "<reply>Let me"}, "contentBlockIndex": 0}},
        ModelUnavailable("connection reset"),
    ]
    model = ScriptedModel(events)
    result, sink = turn(model)

    assert result.error_kind == "unavailable"
    assert sink.appended == []
    assert sink.calls[0].error == "unavailable"
    assert model.streams_closed == 1


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ("throttlingException", "busy"),
        ("serviceUnavailableException", "busy"),
        ("modelStreamErrorException", "unavailable"),
        ("internalServerException", "unavailable"),
        ("validationException", "rejected"),
    ],
)
def test_it_treats_stream_error_events_as_model_errors(event: str, kind: str) -> None:
    model = ScriptedModel([{"messageStart": {"role": "assistant"}}, {event: {"message": "boom"}}])
    result, _ = turn(model)

    assert (result.outcome, result.error_kind) == ("failed", kind)
    assert "boom" not in result.reply


def test_it_lets_other_exceptions_from_the_client_propagate() -> None:
    class Broken:
        def converse_stream(self, **kwargs: Any) -> dict[str, Any]:
            raise KeyError("bug")

    with pytest.raises(KeyError):
        run_turn(
            client=Broken(),
            history=[user("hi")],
            tools=FakeTools(),
            config=config(),
            sink=RecordingSink(),
            clock=FakeClock(),
        )


# Streaming assembly


def test_it_streams_reply_text_with_tags_split_across_deltas() -> None:
    events: list[dict[str, Any]] = [{"messageStart": {"role": "assistant"}}]
    for piece in [
        "<thin",
        "king>secret plan</thi",
        "nking>\n<rep",
        "ly>\nHel",
        "lo <b",
        "> there",
        "</rep",
        "ly>",
    ]:
        events.append({"contentBlockDelta": {"delta": {"text": piece}, "contentBlockIndex": 0}})
    events += [
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "end_turn"}},
        {"metadata": {"usage": {"inputTokens": 1, "outputTokens": 2}, "metrics": {"latencyMs": 7}}},
    ]
    result, sink = turn(ScriptedModel(events))

    assert result.reply == "Hello <b> there"
    assert sink.streamed == "Hello <b> there"
    assert all("secret" not in delta and delta[-1:] != "<" for delta in sink.deltas)
    assert sink.stored[0]["content"][0]["text"].startswith("<thinking>secret plan</thinking>")


def test_it_streams_reply_text_as_it_arrives() -> None:
    model = ScriptedModel(text_response("<reply>One two three four.</reply>"), chunk=4)
    _, sink = turn(model)

    assert len(sink.deltas) > 3
    assert sink.streamed == "One two three four."


def test_it_assembles_tool_calls_from_stream_chunks() -> None:
    tools = FakeTools()
    model = ScriptedModel(
        tool_response(
            tool_call("t1", "get_order_by_id", {"order_id": "32057"}),
            tool_call("t2", "get_customer_orders", {}),
        ),
        text_response("<reply>ok</reply>"),
        chunk=2,
    )
    _, sink = turn(model, tools=tools)

    assert tools.ran == [("get_order_by_id", {"order_id": "32057"}), ("get_customer_orders", {})]
    assistant = sink.appended[0][0]
    assert assistant["content"][1:] == [
        tool_call("t1", "get_order_by_id", {"order_id": "32057"}),
        tool_call("t2", "get_customer_orders", {}),
    ]


def test_it_keeps_reasoning_blocks_from_the_stream() -> None:
    events: list[dict[str, Any]] = [
        {"messageStart": {"role": "assistant"}},
        {
            "contentBlockDelta": {
                "delta": {"reasoningContent": {"text": "deep "}},
                "contentBlockIndex": 0,
            }
        },
        {
            "contentBlockDelta": {
                "delta": {"reasoningContent": {"text": "thought"}},
                "contentBlockIndex": 0,
            }
        },
        {
            "contentBlockDelta": {
                "delta": {"reasoningContent": {"signature": "sig"}},
                "contentBlockIndex": 0,
            }
        },
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"contentBlockDelta": {"delta": {"text": "<reply>Hi</reply>"}, "contentBlockIndex": 1}},
        {"messageStop": {"stopReason": "end_turn"}},
    ]
    result, sink = turn(ScriptedModel(events))

    assert result.reply == "Hi"
    assert sink.stored[0]["content"][0] == {
        "reasoningContent": {"reasoningText": {"text": "deep thought", "signature": "sig"}}
    }


# Caching and guardrails


def test_it_places_cache_points_when_prompt_caching_is_on() -> None:
    model = ScriptedModel(
        tool_response(tool_call("t1", "get_order_by_id", {"order_id": "32057"})),
        text_response("<reply>ok</reply>"),
    )
    _, sink = turn(model, prompt_caching=True)

    point = {"cachePoint": {"type": "default"}}
    for request in model.requests:
        assert request["system"][-1] == point
        assert request["toolConfig"]["tools"][-1] == point
        assert request["messages"][-1]["content"][-1] == point
        assert sent_texts_count(request, "cachePoint") == 3
    assert "cachePoint" not in json.dumps(sink.appended)


def sent_texts_count(request: dict[str, Any], needle: str) -> int:
    return json.dumps(request).count(needle)


def test_the_customer_context_comes_after_the_cached_instructions() -> None:
    model = ScriptedModel(text_response("<reply>ok</reply>"), text_response("<reply>ok</reply>"))
    facts = "The signed-in customer is Alice (customer id 012345)."

    turn(model, prompt_caching=True, customer_context=facts)
    turn(model, customer_context=facts)

    cached, uncached = (request["system"] for request in model.requests)
    assert cached == [
        {"text": "You are a support assistant."},
        {"cachePoint": {"type": "default"}},
        {"text": facts},
    ]
    assert uncached == [{"text": "You are a support assistant.\n\n" + facts}]


def test_it_places_no_cache_points_when_prompt_caching_is_off() -> None:
    model = ScriptedModel(text_response("<reply>ok</reply>"))
    turn(model)

    assert "cachePoint" not in json.dumps(model.requests)


def test_it_sends_the_guardrail_configuration() -> None:
    model = ScriptedModel(text_response("<reply>ok</reply>"))
    turn(model, guardrail=("gr-123", "4"))

    # Sync mode checks each chunk before it is streamed, so blocked text never reaches the page.
    assert model.requests[0]["guardrailConfig"] == {
        "guardrailIdentifier": "gr-123",
        "guardrailVersion": "4",
        "streamProcessingMode": "sync",
    }


# Confirmation gate


def paused_turn() -> tuple[TurnResult, RecordingSink, FakeTools, ScriptedModel]:
    tools = FakeTools()
    model = ScriptedModel(
        tool_response(
            tool_call("a", "get_order_by_id", {"order_id": "37129"}),
            tool_call("b", "cancel_order", {"order_id": "37129"}),
            tool_call("c", "get_order_by_id", {"order_id": "32057"}),
            tool_call("d", "cancel_order", {"order_id": "32057"}),
            text="<reply>I'll cancel order 37129 once you confirm.</reply>",
        ),
        text_response("<reply>Order 37129 is cancelled.</reply>"),
    )
    result, sink = turn(model, [user("cancel 37129")], tools=tools)
    return result, sink, tools, model


def test_it_pauses_before_a_tool_that_needs_confirmation() -> None:
    result, sink, tools, _ = paused_turn()

    assert result.outcome == "awaiting_confirmation"
    assert result.reply == "I'll cancel order 37129 once you confirm."
    pending = result.pending
    assert pending is not None
    assert (pending.tool_use_id, pending.name, pending.tool_input) == (
        "b",
        "cancel_order",
        {"order_id": "37129"},
    )
    # Tools before the paused one ran; it and the ones after did not.
    assert tools.ran == [("get_order_by_id", {"order_id": "37129"})]
    assert [r is None for r in pending.results] == [False, True, True, False]
    assert pending.results[0]["toolResult"]["status"] == "success"  # type: ignore[index]
    assert pending.results[3]["toolResult"]["content"] == [{"text": ONE_AT_A_TIME_TEXT}]  # type: ignore[index]
    # The assistant message is stored alone; its results wait for the customer.
    assert [len(batch) for batch in sink.appended] == [1]
    assert sink.appended[0][0]["role"] == "assistant"


def test_it_resumes_after_the_customer_confirms() -> None:
    result, sink, tools, model = paused_turn()
    assert result.pending is not None
    pending = PendingConfirmation.from_dict(json.loads(json.dumps(result.pending.to_dict())))
    decided = tools.run(pending.name, pending.tool_input)

    answer = complete_pending(pending, decided, tools)

    assert [r["toolUseId"] for r in tool_results(answer)] == ["a", "b", "c", "d"]
    assert [r["status"] for r in tool_results(answer)] == ["success"] * 3 + ["error"]
    assert tools.ran[-1] == ("get_order_by_id", {"order_id": "32057"})
    history = [user("cancel 37129"), *sink.stored, answer]
    resumed, _ = turn(model, history, tools=tools)
    assert resumed == TurnResult("answered", "Order 37129 is cancelled.", "end_turn")
    assert model.requests[-1]["messages"] == history


def test_it_tells_the_model_when_the_customer_declines() -> None:
    result, sink, tools, _ = paused_turn()
    assert result.pending is not None
    declined = ToolOutcome("error", "The customer declined the cancellation.")

    answer = complete_pending(result.pending, declined, tools, message=sink.stored[0])

    assert tool_results(answer)[1] == {
        "toolUseId": "b",
        "content": [{"text": "The customer declined the cancellation."}],
        "status": "error",
    }
    assert ("cancel_order", {"order_id": "37129"}) not in tools.ran


def test_it_completes_a_pending_confirmation_stored_without_its_calls() -> None:
    result, sink, tools, _ = paused_turn()
    assert result.pending is not None
    bare = PendingConfirmation(
        result.pending.tool_use_id,
        result.pending.name,
        result.pending.tool_input,
        result.pending.results,
    )

    answer = complete_pending(bare, ToolOutcome("success", {"id": "37129"}), tools)

    # The call that waited cannot run without its input; repair() answers it when resuming.
    assert [r["toolUseId"] for r in tool_results(answer)] == ["a", "b", "d"]
    repaired = repair([user("cancel"), *sink.stored, answer])
    assert violations(repaired) == []
    assert [r["toolUseId"] for r in tool_results(repaired[-1])] == ["a", "b", "c", "d"]
    assert tool_results(repaired[-1])[2]["content"] == [{"text": MISSING_RESULT_TEXT}]
