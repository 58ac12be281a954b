"""A long conversation is sent as its latest turns, within the token budget, still valid."""

from typing import Any

from chat.engine.budget import earlier_note, estimated_tokens, within_budget
from chat.engine.history import violations


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
