"""Histories that Converse always accepts, whatever was stored."""

import json
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chat.engine.history import (
    MISSING_RESULT_TEXT,
    PLACEHOLDER_TEXT,
    appended_violations,
    has_tool_blocks,
    repair,
    violations,
)


def user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


def text(value: str) -> dict[str, Any]:
    return {"text": value}


def call(tool_use_id: str, tool_input: Any = None) -> dict[str, Any]:
    return {
        "toolUse": {
            "toolUseId": tool_use_id,
            "name": "get_order_by_id",
            "input": {"order_id": "1"} if tool_input is None else tool_input,
        }
    }


def result(tool_use_id: str) -> dict[str, Any]:
    return {
        "toolResult": {
            "toolUseId": tool_use_id,
            "content": [{"json": {"id": "1"}}],
            "status": "success",
        }
    }


def missing(tool_use_id: str) -> dict[str, Any]:
    return {
        "toolResult": {
            "toolUseId": tool_use_id,
            "content": [{"text": MISSING_RESULT_TEXT}],
            "status": "error",
        }
    }


GOOD = [
    user(text("my order is 14826")),
    assistant(text("Okay. <thinking>look it up"), call("t1")),
    user(result("t1")),
    assistant(text("<reply>It shipped.</reply>")),
    user(text("thanks")),
]


def test_it_leaves_a_valid_history_as_it_is() -> None:
    assert violations(GOOD) == []
    assert repair(GOOD) == GOOD


def test_it_does_not_change_its_input() -> None:
    broken = [assistant(text("hi")), user(text(" "))]
    before = json.dumps(broken)

    repair(broken)

    assert json.dumps(broken) == before


def test_it_merges_consecutive_messages_of_one_role() -> None:
    history = [user(text("hello")), user(text("anyone there?"))]

    assert violations(history) == ["message 1 has the same role as the one before it"]
    assert repair(history) == [user(text("hello"), text("anyone there?"))]


def test_it_drops_blank_text_and_the_messages_it_empties() -> None:
    history = [
        user(text("hi")),
        assistant(text("<reply>Hello</reply>"), text("\n\n")),
        user(text("   ")),
        user(text("where is my order?")),
    ]

    assert repair(history) == [
        user(text("hi")),
        assistant(text("<reply>Hello</reply>")),
        user(text("where is my order?")),
    ]


def test_it_starts_with_a_user_message() -> None:
    history = [assistant(text("<reply>Welcome!</reply>")), user(text("hi"))]

    repaired = repair(history)

    assert repaired[0] == user(text(PLACEHOLDER_TEXT))
    assert repaired[1:] == history


def test_it_ends_with_a_user_message() -> None:
    history = [user(text("hi")), assistant(text("<reply>Hello</reply>"))]

    assert repair(history)[-1] == user(text(PLACEHOLDER_TEXT))


def test_it_answers_a_dangling_tool_call_with_an_error() -> None:
    history = [
        user(text("order 1")),
        assistant(call("t1"), call("t2")),
        user(result("t2"), text("hello?")),
    ]

    assert violations(history) == ["message 2 does not answer toolUse t1"]
    assert repair(history)[-1] == user(missing("t1"), result("t2"), text("hello?"))


def test_it_answers_a_tool_call_at_the_end_of_the_history() -> None:
    history = [user(text("order 1")), assistant(call("t1"))]

    assert repair(history) == [*history, user(missing("t1"))]


def test_it_drops_results_that_answer_nothing() -> None:
    history = [
        user(result("ghost"), text("hi")),
        assistant(text("<reply>Hello</reply>")),
        user(result("t9")),
        user(text("are you there?")),
    ]

    assert repair(history) == [
        user(text("hi")),
        assistant(text("<reply>Hello</reply>")),
        user(text("are you there?")),
    ]


def test_it_merges_the_assistant_messages_an_orphan_result_kept_apart() -> None:
    history = [
        user(text("hi")),
        assistant(text("<reply>One</reply>")),
        user(result("ghost")),
        assistant(text("<reply>Two</reply>"), call("t1")),
        user(result("t1")),
    ]

    assert repair(history) == [
        user(text("hi")),
        assistant(text("<reply>One</reply>"), text("<reply>Two</reply>"), call("t1")),
        user(result("t1")),
    ]


def test_it_keeps_one_answer_per_call_and_puts_results_first() -> None:
    history = [
        user(text("x")),
        assistant(call("t1")),
        user(text("and"), result("t1"), result("t1")),
    ]

    assert repair(history)[-1] == user(result("t1"), text("and"))


def test_it_drops_a_reused_tool_use_id() -> None:
    history = [
        user(text("x")),
        assistant(call("t1")),
        user(result("t1")),
        assistant(call("t1")),
        user(result("t1")),
    ]

    assert "message 3 block 0 reuses toolUseId t1" in violations(history)
    assert repair(history) == history[:3]


def test_it_parses_tool_input_stored_as_a_json_string() -> None:
    history = [user(text("x")), assistant(call("t1", '{"order_id": "14826"}')), user(result("t1"))]

    assert violations(history) == ["message 1 block 0 has an input that is not an object"]
    assert repair(history)[1] == assistant(call("t1", {"order_id": "14826"}))


def test_it_replaces_unusable_tool_input_with_an_empty_object() -> None:
    history = [user(text("x")), assistant(call("t1", "[1, 2]")), user(result("t1"))]

    assert repair(history)[1] == assistant(call("t1", {}))


def test_it_drops_cache_points_and_keys_converse_does_not_know() -> None:
    history = [
        {"role": "user", "content": [text("hi"), {"cachePoint": {"type": "default"}}], "id": 7}
    ]

    assert violations(history) == ["message 0 has keys other than role and content"]
    assert repair(history) == [user(text("hi"))]


def test_it_drops_tool_blocks_on_the_wrong_side() -> None:
    history = [user(text("x"), call("t1")), assistant(text("y"), result("t1"))]

    problems = violations(history)
    assert "message 0 block 1 is a toolUse outside an assistant message" in problems
    assert "message 1 block 1 is a toolResult outside a user message" in problems
    assert repair(history) == [user(text("x")), assistant(text("y")), user(text(PLACEHOLDER_TEXT))]


def test_it_turns_an_empty_history_into_something_sendable() -> None:
    assert violations([]) == ["there are no messages"]
    assert repair([]) == [user(text(PLACEHOLDER_TEXT))]


def test_it_knows_when_a_history_holds_tool_blocks() -> None:
    assert has_tool_blocks(GOOD)
    assert not has_tool_blocks([user(text("hi"))])


# Property: any history, however broken, comes out valid.

TOOL_IDS = st.sampled_from(["t1", "t2", "t3", "t4"])
TEXTS = st.one_of(
    st.sampled_from(["", " ", "\n\t", "hi", "my order is 14826", "<reply>ok</reply>"]),
    st.text(max_size=8),
)
TOOL_INPUTS = st.one_of(
    st.just({"order_id": "1"}),
    st.just('{"order_id": "1"}'),
    st.just("not json"),
    st.just("[1]"),
    st.none(),
)
BLOCKS = st.one_of(
    TEXTS.map(text),
    st.builds(call, TOOL_IDS, TOOL_INPUTS),
    TOOL_IDS.map(result),
    st.just({"cachePoint": {"type": "default"}}),
    st.just({"toolResult": {"toolUseId": "t1", "content": []}}),
)
MESSAGES = st.builds(
    lambda role, blocks: {"role": role, "content": blocks},
    st.sampled_from(["user", "assistant", "user", "assistant", "system"]),
    st.lists(BLOCKS, max_size=4),
)
HISTORIES = st.lists(MESSAGES, max_size=10)


def non_blank_texts(messages: list[dict[str, Any]]) -> Counter[str]:
    return Counter(
        block["text"]
        for message in messages
        if message["role"] in ("user", "assistant")
        for block in message["content"]
        if "text" in block and block["text"].strip()
    )


@settings(max_examples=300, deadline=None)
@given(HISTORIES)
def test_a_repaired_history_obeys_every_rule(history: list[dict[str, Any]]) -> None:
    repaired = repair(history)

    assert violations(repaired) == []
    assert repair(repaired) == repaired
    kept = non_blank_texts(repaired)
    assert non_blank_texts(history) - kept == Counter()


# What a step appends is checked alone.


def test_a_valid_step_appends_without_problems() -> None:
    step = [assistant(text("<thinking>again</thinking>"), call("t2")), user(result("t2"))]

    assert appended_violations(GOOD, step, {"t1"}) == []
    assert violations([*GOOD, *step]) == []


def test_a_step_that_reuses_an_earlier_tool_use_id_is_caught() -> None:
    step = [assistant(call("t1")), user(result("t1"))]

    assert appended_violations(GOOD, step, {"t1"}) == ["an appended message reuses toolUseId t1"]


def test_a_step_whose_results_answer_nothing_is_caught() -> None:
    step = [assistant(call("t2")), user(result("t3"))]

    problems = appended_violations(GOOD, step, {"t1"})

    assert "message 2 block 0 answers no toolUse of the message before" in problems
    assert "message 2 does not answer toolUse t2" in problems
