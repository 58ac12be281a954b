"""A long conversation is sent as its latest turns, within the token budget, still valid."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chat.engine.budget import earlier_note, estimated_tokens, within_budget
from chat.engine.history import repair, violations
from tests.chat.engine.test_history import HISTORIES


def tool_turn(n: int) -> list[dict[str, Any]]:
    order = str(40000 + n)
    return [
        {"role": "user", "content": [{"text": f"Where is order {order}? " + "words " * 20}]},
        {
            "role": "assistant",
            "content": [
                {"text": "<thinking>Look it up.</thinking>"},
                {
                    "toolUse": {
                        "toolUseId": f"t-{n}",
                        "name": "get_order_by_id",
                        "input": {"order_id": order},
                    }
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": f"t-{n}",
                        "content": [{"json": {"id": order, "status": "Shipped"}}],
                    }
                }
            ],
        },
        {"role": "assistant", "content": [{"text": f"<reply>Order {order} has shipped.</reply>"}]},
    ]


def long_history(turns: int) -> list[dict[str, Any]]:
    history = [message for n in range(turns) for message in tool_turn(n)]
    return [*history, {"role": "user", "content": [{"text": "And my last one?"}]}]


def test_a_history_within_the_budget_is_sent_whole() -> None:
    history = long_history(3)

    assert within_budget(history, 100_000) is history
    assert within_budget(history, 0) is history


def test_past_the_budget_the_oldest_turns_go_and_the_rest_stays_valid() -> None:
    history = long_history(125)  # 501 messages
    budget = 2000

    sent = within_budget(history, budget)

    assert estimated_tokens(sent) <= budget
    assert violations(sent) == []
    assert sent[-1] == history[-1]
    assert sent[1:] == history[len(history) - len(sent) + 1 :]


def test_the_dropped_turns_leave_the_orders_they_discussed() -> None:
    history = long_history(125)

    sent = within_budget(history, 2000)

    dropped = history[: len(history) - len(sent)]
    last_dropped_order = dropped[-2]["content"][0]["toolResult"]["content"][0]["json"]["id"]
    note = sent[0]["content"][0]["text"]
    assert note == earlier_note(dropped)
    assert last_dropped_order in note


def test_a_last_turn_over_the_budget_is_still_sent() -> None:
    history = long_history(2)

    sent = within_budget(history, 5)

    assert sent[-1]["content"][-1] == history[-1]["content"][-1]
    assert violations(sent) == []


def test_a_tail_of_a_longer_conversation_carries_the_orders_left_out_before_it() -> None:
    history = long_history(3)

    sent = within_budget(history, 100_000, earlier_orders=["39998", "39999"])

    assert sent[1:] == history[1:]
    assert sent[0]["content"][1:] == history[0]["content"]
    assert sent[0]["content"][0]["text"] == earlier_note([], ["39998", "39999"])
    assert "39998, 39999" in sent[0]["content"][0]["text"]
    assert violations(sent) == []


def test_orders_left_out_before_and_dropped_here_are_named_once_oldest_first() -> None:
    history = long_history(10)
    budget = estimated_tokens(history) // 2

    sent = within_budget(history, budget, earlier_orders=["39999", "40000"])

    dropped = history[: len(history) - len(sent)]
    note = sent[0]["content"][0]["text"]
    assert note == earlier_note(dropped, ["39999", "40000"])
    assert "Orders discussed earlier: 39999, 40000, 40001, 40002" in note
    assert note.count("40000") == 1
    assert estimated_tokens(sent) <= budget


def test_the_note_fits_in_what_the_cut_reserved_for_it() -> None:
    # Found by the property below: the note's block and its JSON framing are larger than the
    # note's text alone, and a cut that reserved only the text went one token over.
    tail = [
        {"role": "user", "content": [{"text": "(no message)"}]},
        {"role": "assistant", "content": [{"text": "my order is 14826"}, {"text": "0"}]},
        {"role": "user", "content": [{"text": "And now?"}]},
    ]

    sent = within_budget(tail, 60, earlier_orders=[])

    assert estimated_tokens(sent) <= 60
    assert sent[-1]["content"][-1] == {"text": "And now?"}


# Property: wherever the stored tail starts and whatever the budget, what is sent is valid.


@settings(max_examples=300, deadline=None)
@given(
    HISTORIES,
    st.integers(min_value=0, max_value=12),
    st.sampled_from([0, 1, 30, 60, 200]),
    st.one_of(st.none(), st.lists(st.sampled_from(["1", "2", "40001"]), max_size=3)),
)
def test_any_tail_cut_to_any_budget_obeys_every_rule(
    history: list[dict[str, Any]], start: int, budget: int, earlier_orders: list[str] | None
) -> None:
    tail = [*history[start:], {"role": "user", "content": [{"text": "And now?"}]}]

    sent = within_budget(repair(tail), budget, earlier_orders)

    assert violations(sent) == []
    assert sent[-1]["content"][-1] == {"text": "And now?"}
    if budget and estimated_tokens(sent) > budget:
        # Over the budget only when what is sent is the last turn alone.
        user_texts = [
            i
            for i, m in enumerate(sent)
            if m["role"] == "user" and not any("toolResult" in b for b in m["content"])
        ]
        assert user_texts == [0]
