"""What a turn reads of a long conversation: its latest turns, whole, and the orders before them."""

import json
from itertools import pairwise
from typing import Any

import pytest

from chat.engine.budget import earlier_note, estimated_tokens, within_budget
from chat.engine.history import repair, violations
from chat.live.model_history import model_history
from chat.live.storage import NewMessage, messages_append
from chat.models import MessageKind, MessageRole
from orders.models import Customer
from tests.chat.factories import make_conversation

pytestmark = pytest.mark.django_db(transaction=True)

NEW_QUESTION = NewMessage(MessageRole.USER, MessageKind.CUSTOMER, [{"text": "And my last one?"}])


def customer(text: str) -> NewMessage:
    return NewMessage(MessageRole.USER, MessageKind.CUSTOMER, [{"text": text}])


def assistant(*blocks: dict[str, Any]) -> NewMessage:
    return NewMessage(MessageRole.ASSISTANT, MessageKind.ASSISTANT, list(blocks))


def call(tool_use_id: str, order: str) -> dict[str, Any]:
    return {
        "toolUse": {
            "toolUseId": tool_use_id,
            "name": "get_order_by_id",
            "input": {"order_id": order},
        }
    }


def result(tool_use_id: str, order: str) -> dict[str, Any]:
    return {
        "toolResult": {
            "toolUseId": tool_use_id,
            "content": [{"json": {"order_id": order, "status": "Shipped"}}],
            "status": "success",
        }
    }


def tool_turn(n: int) -> list[NewMessage]:
    """A lookup of order 4NNNN: the question, the call, its result, the answer."""
    order, use = str(40000 + n), f"t-{n}"
    return [
        customer(f"Where is order {order}?"),
        assistant({"text": "<thinking>Look it up.</thinking>"}, call(use, order)),
        NewMessage(MessageRole.USER, MessageKind.TOOL_RESULTS, [result(use, order)]),
        assistant({"text": f"<reply>Order {order} has shipped.</reply>"}),
    ]


def sent(history: list[dict[str, Any]], budget: int, orders: list[str] | None) -> list[Any]:
    """What the engine sends of a loaded history (``chat.engine.loop``)."""
    return within_budget(repair(history), budget, orders)


def test_the_latest_turns_are_read_and_sent_as_the_end_of_the_whole_history(
    alice: Customer,
) -> None:
    conversation = make_conversation(alice)
    messages_append(conversation.pk, None, [m for n in range(100) for m in tool_turn(n)])
    messages_append(conversation.pk, None, [NEW_QUESTION])
    whole = repair(model_history(conversation.pk).messages)

    for budget in (40, 300, 1000, 4000):
        tail = model_history(conversation.pk, budget_tokens=budget)
        to_send = sent(tail.messages, budget, tail.earlier_orders)

        assert tail.earlier_orders is not None
        assert len(tail.messages) < len(whole)
        assert to_send[1:] == whole[len(whole) - len(to_send) + 1 :]
        assert violations(to_send) == []
        if len(to_send) > 5:  # more than the last turn
            assert estimated_tokens(to_send) <= budget


def test_the_history_sent_keeps_its_beginning_while_the_conversation_grows(
    alice: Customer,
) -> None:
    """So the prompt cache's copy of the history stays valid: the cut moves in big steps."""
    conversation = make_conversation(alice)
    messages_append(conversation.pk, None, [m for n in range(60) for m in tool_turn(n)])
    firsts = []
    for n in range(60, 100):
        messages_append(conversation.pk, None, [*tool_turn(n)[:1]])
        tail = model_history(conversation.pk, budget_tokens=1000)
        to_send = sent(tail.messages, 1000, tail.earlier_orders)
        assert estimated_tokens(to_send) <= 1000
        firsts.append(json.dumps(to_send[0]))
        messages_append(conversation.pk, None, [*tool_turn(n)[1:]])

    # 40 turns, each about a seventh of the budget: the beginning changed once every three
    # or four turns, not with each one.
    changes = sum(1 for before, after in pairwise(firsts) if before != after)
    assert 1 <= changes <= len(firsts) // 3


def test_a_conversation_within_the_budget_is_read_whole(alice: Customer) -> None:
    conversation = make_conversation(alice)
    messages_append(conversation.pk, None, [*tool_turn(1), NEW_QUESTION])

    read = model_history(conversation.pk, budget_tokens=12000)

    assert read.earlier_orders is None
    assert read.messages == model_history(conversation.pk).messages
    assert len(read.messages) == 5


def test_the_orders_of_messages_not_read_are_named_latest_last(alice: Customer) -> None:
    conversation = make_conversation(alice)
    turns = [m for n in range(30) for m in tool_turn(n)]
    small_talk = [customer("How are you?"), assistant({"text": "<reply>Fine.</reply>"})] * 40
    messages_append(conversation.pk, None, [*turns, *small_talk, NEW_QUESTION])

    read = model_history(conversation.pk, budget_tokens=300)

    # Only small talk is read; the note names the 20 latest orders looked up before it.
    assert read.earlier_orders == [str(40000 + n) for n in range(10, 30)]
    first = sent(read.messages, 300, read.earlier_orders)[0]["content"][0]["text"]
    assert first == earlier_note([], read.earlier_orders)


def test_cuts_keep_tool_pairs_whole_and_the_history_valid(alice: Customer) -> None:
    """Staff notes, notices, a decision typed with its tool result, a turn that died between
    its call and its result: wherever the read starts, what is sent obeys every rule."""
    conversation = make_conversation(alice)
    staff = NewMessage(MessageRole.USER, MessageKind.STAFF, [{"text": "[Support agent Sam]: Hi"}])
    notice = NewMessage(MessageRole.ASSISTANT, MessageKind.NOTICE, [{"text": "Try again."}])
    cancel = assistant({"text": "<reply>Cancel it?</reply>"}, call("c-1", "40077"))
    typed = NewMessage(
        MessageRole.USER, MessageKind.CUSTOMER, [result("c-1", "40077"), {"text": "yes"}]
    )
    died = assistant({"text": "<thinking>Look.</thinking>"}, call("d-1", "40078"))
    mixed = [staff, notice, customer("cancel 40077"), cancel, typed, assistant({"text": "Done"})]
    mixed += [customer("and 40078?"), died, notice, staff, customer("hello?")]
    stored = [m for n in range(20) for m in [*tool_turn(n), *mixed]]
    messages_append(conversation.pk, None, [*stored, NEW_QUESTION])

    for budget in (1, 50, 120, 400, 900, 2500):
        tail = model_history(conversation.pk, budget_tokens=budget)
        to_send = sent(tail.messages, budget, tail.earlier_orders)

        assert violations(to_send) == []
        assert to_send[-1]["content"][-1] == {"text": "And my last one?"}
        uses = {b["toolUse"]["toolUseId"] for m in to_send for b in m["content"] if "toolUse" in b}
        answered = {
            b["toolResult"]["toolUseId"] for m in to_send for b in m["content"] if "toolResult" in b
        }
        assert uses == answered
        turn_starts = [
            i
            for i, m in enumerate(to_send)
            if m["role"] == "user" and not any("toolResult" in b for b in m["content"])
        ]
        # Over the budget only when the last turn alone is.
        assert estimated_tokens(to_send) <= budget or turn_starts == [0]
