"""What a turn costs the database: the same few statements, however long the conversation."""

from collections import Counter
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.engine.budget import estimated_tokens
from chat.live.model_history import model_history
from chat.live.storage import NewMessage, messages_append
from chat.models import Conversation, Message, MessageKind, MessageRole, ModelCall, Turn
from orders.models import Customer
from tests.chat.factories import make_conversation, submit
from tests.chat.scripted import ScriptedModel, text_response, tool_call, tool_response
from tests.conftest import make_order

pytestmark = pytest.mark.django_db(transaction=True)

REPLY = "<thinking>Found it.</thinking><reply>Your Moonstone lamp ships on Monday.</reply>"


def one_tool_turn() -> ScriptedModel:
    return ScriptedModel(
        tool_response(tool_call("t-1", "get_order_by_id", {"order_id": "40001"})),
        text_response(REPLY),
    )


def grown(customer: Customer, messages: int) -> Conversation:
    """A conversation with ``messages`` stored messages of small talk."""
    conversation = make_conversation(customer)
    exchange = [
        NewMessage(MessageRole.USER, MessageKind.CUSTOMER, [{"text": "How are you today?"}]),
        NewMessage(MessageRole.ASSISTANT, MessageKind.ASSISTANT, [{"text": "<reply>Fine</reply>"}]),
    ]
    messages_append(conversation.pk, None, exchange * (messages // 2))
    return conversation


def statements_of_a_one_tool_turn(
    conversation: Conversation, customer: Customer, model: ScriptedModel | None = None
) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        submit(conversation, customer, "Where is order 40001?", model=model or one_tool_turn())
    return [query["sql"] for query in captured.captured_queries]


def test_a_turn_at_500_messages_issues_the_same_statements_as_at_10(
    alice: Customer, settings: Any
) -> None:
    settings.CHAT_CONTEXT_BUDGET_TOKENS = 1500
    make_order("40001", alice, product="Moonstone lamp")
    short, long, longer = grown(alice, 10), grown(alice, 500), grown(alice, 1000)
    # What a turn reads of each: the latest messages, as many at 1,000 as at 500.
    read_at_500 = model_history(long.pk, budget_tokens=1500).messages
    read_at_1000 = model_history(longer.pk, budget_tokens=1500).messages
    model = one_tool_turn()

    at_10 = statements_of_a_one_tool_turn(short, alice)
    at_500 = statements_of_a_one_tool_turn(long, alice, model)

    assert len(at_500) == len(at_10)
    assert ModelCall.objects.filter(conversation=long).count() == 2
    # What the model got of the 500 messages: the latest turns, within the budget.
    first_call = model.requests[0]["messages"]
    assert estimated_tokens(first_call) <= 1500
    assert len(first_call) < 500
    # Read: what fits the budget, never the whole conversation.
    for read in (read_at_500, read_at_1000):
        assert estimated_tokens(read) <= 1500
        assert len(read) < 500 // 4


def kind_of(sql: str) -> str:
    """What a statement is for, by the table it reads or how it starts."""
    text = sql.lstrip().upper()
    if text.startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
        return "transaction"
    if text.startswith("WITH"):
        return "write"
    for table, kind in (
        ("ORDERS_CUSTOMER", "admission"),  # with the conversation, its turns and the budget
        ("ORDERS_ORDER", "tool"),  # get_order_by_id
        ("CHAT_MESSAGE", "history"),
    ):
        if table in text.replace('"', ""):
            return kind
    return sql


def test_a_one_tool_turn_costs_six_statements(alice: Customer) -> None:
    make_order("40001", alice, product="Moonstone lamp")
    conversation = grown(alice, 10)

    statements = statements_of_a_one_tool_turn(conversation, alice)

    # One read decides whether the message starts a turn; each step is one write: the
    # customer's message with its new turn, the tool exchange with the first call's usage, the
    # reply with the second's and the turn's end. No transaction: each write is one statement.
    # Django runs the health check's SELECT 1 outside its query log, so it is not counted here
    # (the bench counts it; a pooled connection has none).
    assert Counter(map(kind_of, statements)) == {
        "admission": 1,
        "write": 3,
        "history": 1,
        "tool": 1,
    }


def test_turns_messages_and_model_calls_have_no_database_keys_to_check_at_commit() -> None:
    # PostgreSQL checks a foreign key per inserted row at COMMIT: two checks per message and per
    # model call. Their writes insert them only for a conversation and turn they updated.
    with connection.cursor() as cursor:
        for table in (Turn._meta.db_table, Message._meta.db_table, ModelCall._meta.db_table):
            constraints = connection.introspection.get_constraints(cursor, table)
            keys = [found["columns"] for found in constraints.values() if found["foreign_key"]]
            # (A staff message's author is still checked; other messages have none.)
            assert keys in ([], [["author_id"]]), table
            # The keys' indexes stay: the admin and the history read join and filter on them.
            indexed = {tuple(found["columns"]) for found in constraints.values() if found["index"]}
            assert ("conversation_id",) in indexed, table
