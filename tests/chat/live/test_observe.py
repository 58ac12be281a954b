"""A turn for operators: spans by the GenAI conventions, log lines with ids and no PII."""

import copy
import io
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client
from django.urls import reverse
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from anycompany import telemetry
from anycompany.logformat import JsonFormatter, LogContextFilter
from chat.engine.client import ModelBusy
from chat.live import realtime
from chat.live.conversations import conversation_start
from chat.live.turns import action_decide, turn_submit
from chat.models import Conversation, ModelCall, PendingAction, Turn
from orders.models import Customer
from tests.chat.bedrock_standin import (
    BedrockStandIn,
    stream_reply,
    text_stream_frames,
    tool_stream_frames,
)
from tests.chat.factories import Recorder, make_conversation, submit, user_of
from tests.chat.scripted import ScriptedModel, text_response, tool_call, tool_response
from tests.chat.sockets import (
    application,
    database_sessions_closed,  # noqa: F401 - a fixture
    is_turn_end,
    signed_in_socket,
)
from tests.conftest import make_order

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("database_sessions_closed"),
]

EMAIL = "ana.silva+orders@example.com"
PHONE = "312-555-8204"
MESSAGE = f"Where is order 40001? Write to {EMAIL} or call {PHONE}, my cat Biscuit waits."
# Words of the customer's message, the tool's input and the tool's result. Not a bare "555":
# hex trace and span ids contain it by chance.
SECRETS = [EMAIL, PHONE, "555-8204", "Biscuit", "40001", "Moonstone", "Sunglasses"]
REPLY = "<thinking>Found it.</thinking><reply>Your Moonstone lamp ships on Monday.</reply>"


def one_tool_turn() -> ScriptedModel:
    return ScriptedModel(
        tool_response(tool_call("t-1", "get_order_by_id", {"order_id": "40001"})),
        text_response(REPLY, usage={"inputTokens": 120, "outputTokens": 30, "totalTokens": 150}),
    )


def attribute_text(spans: Sequence[ReadableSpan]) -> str:
    return json.dumps([[span.name, dict(span.attributes or {})] for span in spans], default=str)


@pytest.fixture
def conversation(alice: Customer) -> Conversation:
    make_order("40001", alice, product="Moonstone lamp")
    return make_conversation(alice)


def traced_turn(
    conversation: Conversation, alice: Customer, model: ScriptedModel | None
) -> list[Any]:
    connections.close_all()
    with telemetry.in_memory_tracing() as exporter:
        submit(conversation, alice, MESSAGE, model=model)
        spans = list(exporter.get_finished_spans())
    return spans


# --- Spans ------------------------------------------------------------------------------------


def test_a_one_tool_turn_is_a_turn_span_with_two_model_spans_and_a_tool_span(
    conversation: Conversation, alice: Customer
) -> None:
    spans = traced_turn(conversation, alice, one_tool_turn())

    (turn,) = [span for span in spans if span.name == "chat.turn"]
    models = [s for s in spans if (s.attributes or {}).get("gen_ai.operation.name") == "chat"]
    tools = [
        s for s in spans if (s.attributes or {}).get("gen_ai.operation.name") == "execute_tool"
    ]
    assert turn.parent is None
    assert turn.attributes is not None
    assert turn.attributes["gen_ai.conversation.id"] == str(conversation.pk)
    assert turn.attributes["chat.turn.outcome"] == "answered"
    assert turn.attributes["chat.turn.model_calls"] == 2

    assert len(models) == 2
    first, second = sorted(models, key=lambda span: span.start_time or 0)
    for span in models:
        assert span.attributes is not None
        model_id = span.attributes["gen_ai.request.model"]
        assert span.name == f"chat {model_id}"
        assert span.kind == SpanKind.CLIENT
        assert span.attributes["gen_ai.system"] == "aws.bedrock"
        assert span.attributes["gen_ai.provider.name"] == "aws.bedrock"
        assert span.parent is not None
        assert span.parent.span_id == turn.context.span_id
    assert first.attributes is not None
    assert second.attributes is not None
    assert first.attributes["gen_ai.response.finish_reasons"] == ("tool_use",)
    assert first.attributes["gen_ai.usage.input_tokens"] == 10
    assert first.attributes["gen_ai.usage.output_tokens"] == 5
    assert second.attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert second.attributes["gen_ai.usage.input_tokens"] == 120
    assert second.attributes["gen_ai.usage.output_tokens"] == 30

    (tool,) = tools
    assert tool.name == "execute_tool get_order_by_id"
    assert tool.attributes is not None
    assert tool.attributes["gen_ai.tool.name"] == "get_order_by_id"
    assert tool.attributes["chat.tool.outcome"] == "success"
    assert tool.parent is not None
    assert tool.parent.span_id == turn.context.span_id
    # The tool ran between the two calls, outside both.
    assert first.end_time is not None
    assert tool.start_time is not None
    assert first.end_time <= tool.start_time
    assert tool.end_time is not None
    assert second.start_time is not None
    assert tool.end_time <= second.start_time

    text = attribute_text(spans)
    for secret in SECRETS:
        assert secret not in text

    trace_id = format(turn.context.trace_id, "032x")
    calls = list(ModelCall.objects.filter(conversation=conversation))
    assert [call.trace_id for call in calls] == [trace_id, trace_id]


@pytest.fixture
def standin(bedrock_standin: BedrockStandIn, settings: Any) -> BedrockStandIn:
    settings.CHAT_MODEL = "bedrock"
    return bedrock_standin


def test_a_bedrock_call_is_one_gen_ai_span_not_two(
    conversation: Conversation, alice: Customer, standin: BedrockStandIn, settings: Any
) -> None:
    standin.script(
        stream_reply(
            tool_stream_frames("Let me look.", "t-1", "get_order_by_id", {"order_id": "40001"})
        ),
        stream_reply(text_stream_frames("<reply>It ships on Monday.</reply>")),
    )

    spans = traced_turn(conversation, alice, None)

    (turn,) = [span for span in spans if span.name == "chat.turn"]
    models = [s for s in spans if (s.attributes or {}).get("gen_ai.operation.name") == "chat"]
    # botocore's own Bedrock span would be a second GenAI span of the same call.
    assert [span.name for span in models] == [f"chat {settings.BEDROCK_MODEL_ID}"] * 2
    for span in models:
        assert span.parent is not None
        assert span.parent.span_id == turn.context.span_id
        assert (span.attributes or {})["gen_ai.usage.input_tokens"] == 12
    assert len(standin.received) == 2
    for secret in SECRETS:
        assert secret not in attribute_text(spans)


def test_message_text_reaches_spans_only_when_the_setting_asks(
    conversation: Conversation, alice: Customer, settings: Any
) -> None:
    settings.TRACES_CAPTURE_CONTENT = True

    spans = traced_turn(conversation, alice, one_tool_turn())

    model = next(s for s in spans if s.name.startswith("chat ") and s.name != "chat.turn")
    assert model.attributes is not None
    assert "Biscuit" in str(model.attributes["gen_ai.input.messages"])
    (tool,) = [s for s in spans if s.name.startswith("execute_tool")]
    assert tool.attributes is not None
    assert json.loads(str(tool.attributes["gen_ai.tool.call.arguments"])) == {"order_id": "40001"}
    assert "Moonstone" in str(tool.attributes["gen_ai.tool.call.result"])


def test_a_failed_model_call_is_an_error_span_and_the_turn_says_why(
    conversation: Conversation, alice: Customer
) -> None:
    spans = traced_turn(conversation, alice, ScriptedModel(ModelBusy("throttled")))

    (model,) = [s for s in spans if (s.attributes or {}).get("gen_ai.operation.name") == "chat"]
    (turn,) = [span for span in spans if span.name == "chat.turn"]
    assert model.status.status_code == StatusCode.ERROR
    assert model.attributes is not None
    assert model.attributes["error.type"] == "busy"
    assert turn.attributes is not None
    assert turn.attributes["chat.turn.outcome"] == "failed"
    assert turn.attributes["error.type"] == "busy"


def test_model_calls_record_no_trace_id_with_tracing_off(
    conversation: Conversation, alice: Customer
) -> None:
    submit(conversation, alice, MESSAGE, model=one_tool_turn())

    assert [call.trace_id for call in ModelCall.objects.filter(conversation=conversation)] == [
        "",
        "",
    ]


def test_staff_find_the_trace_of_a_model_call_in_the_audit_pages(
    conversation: Conversation, alice: Customer, support: User
) -> None:
    spans = traced_turn(conversation, alice, one_tool_turn())
    (turn,) = [span for span in spans if span.name == "chat.turn"]
    trace_id = format(turn.context.trace_id, "032x")
    support.is_superuser = True
    support.save()
    staff = Client()
    staff.force_login(support)
    call = ModelCall.objects.filter(conversation=conversation).first()
    assert call is not None

    audit = staff.get(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    record = staff.get(reverse("admin:chat_modelcall_change", args=[call.pk]))
    found = staff.get(reverse("admin:chat_modelcall_changelist"), {"q": trace_id})
    edit = staff.post(reverse("admin:chat_modelcall_change", args=[call.pk]), {"trace_id": "0"})

    assert audit.content.decode().count(f"<code>{trace_id}</code>") == 2
    assert trace_id in record.content.decode()
    assert 'name="trace_id"' not in record.content.decode()
    assert found.context["cl"].result_count == 2
    assert edit.status_code == 403
    call.refresh_from_db()
    assert call.trace_id == trace_id


# --- Log lines --------------------------------------------------------------------------------


class Captured(logging.Handler):
    """The raw records and the JSON lines the production formatter writes for them."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.stream = io.StringIO()
        self.lines = logging.StreamHandler(self.stream)
        self.lines.addFilter(LogContextFilter())
        self.lines.setFormatter(JsonFormatter())
        self.addFilter(LogContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.handle(record)

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


@pytest.fixture
def captured() -> Iterator[Captured]:
    # Loading the ASGI application sets Django's logging up again, dropping root handlers.
    application()
    handler = Captured()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture(autouse=True)
def demo_model(settings: Any) -> Iterator[None]:
    # A channel layer of its own: the Redis layer's locks belong to one event loop.
    settings.CHANNEL_LAYERS = copy.deepcopy(settings.CHANNEL_LAYERS)
    settings.CHAT_MODEL = "demo"
    settings.CHAT_DEMO_DELAY_SECONDS = 0.0
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 100
    settings.CHAT_DAILY_TOKEN_BUDGET = 0
    yield
    realtime.turn_executor_shutdown()


async def test_a_turn_over_a_socket_logs_json_lines_with_its_ids_and_no_customer_text(
    alice: Customer, captured: Captured
) -> None:
    from asgiref.sync import sync_to_async

    user: User | None = alice.user
    assert user is not None
    conversation = await sync_to_async(conversation_start)(user=user)
    await sync_to_async(make_order)("40001", alice, product="Moonstone lamp")
    socket = await signed_in_socket(user, conversation.pk)
    await socket.send({"type": "resume", "after_seq": 0})

    await socket.send({"type": "send", "text": MESSAGE, "client_message_id": str(uuid.uuid4())})
    await socket.receive_until(is_turn_end)
    await realtime.turns_settled()
    await socket.close()

    # The rule is on what the code logs, before the formatter's mask: no record at INFO or
    # above carries the customer's text, email or phone, in its message or its fields.
    for record in captured.records:
        raw = record.getMessage() + json.dumps(record.__dict__, default=str)
        for secret in (EMAIL, PHONE, "Biscuit", MESSAGE[:20]):
            assert secret not in raw, record.getMessage()

    turn_lines = [line for line in captured.json_lines() if line["logger"] == "chat.live.observe"]
    events = [line["event"].split(":")[0] for line in turn_lines]
    assert events[0] == "Turn started"
    assert events[-1] == "Turn ended"
    assert "Model call done" in events
    assert "Tool call" in " ".join(events)
    request_ids = {line.get("request_id") for line in turn_lines}
    turn = await Turn.objects.aget(conversation_id=conversation.pk)
    for line in turn_lines:
        assert line["conversation_id"] == str(conversation.pk)
        assert line["user_id"] == user.pk
        assert line["turn_id"] == str(turn.pk)
    # The socket's request id followed the turn onto the worker thread.
    assert len(request_ids) == 1
    assert None not in request_ids
    model_line = next(line for line in turn_lines if line["event"].startswith("Model call"))
    assert model_line["model_id"] == "demo"
    assert {"stop_reason", "input_tokens", "output_tokens", "latency_ms"} <= set(model_line)
    ended = turn_lines[-1]
    assert ended["outcome"] == "answered"
    assert ended["model_calls"] >= 2


async def test_socket_lines_carry_the_user_and_the_conversation(
    alice: Customer, captured: Captured
) -> None:
    from asgiref.sync import sync_to_async

    user: User | None = alice.user
    assert user is not None
    conversation = await sync_to_async(conversation_start)(user=user)
    socket = await signed_in_socket(user, conversation.pk)

    await socket.send("not json")
    await socket.receive_until(lambda event: event["type"] == "error")
    await socket.close()

    lines = [line for line in captured.json_lines() if line["logger"] == "chat.live.consumers"]
    assert [line["event"] for line in lines] == [
        "Socket opened",
        "Frame refused: invalid_json",
        "Socket closed (1000)",
    ]
    assert lines[1]["refused"] == "invalid_json"
    for line in lines:
        assert line["conversation_id"] == str(conversation.pk)
        assert line["user_id"] == user.pk
        assert line["request_id"] == lines[0]["request_id"]


def test_an_approved_cancellation_is_logged_and_traced_within_its_turn(
    alice: Customer, captured: Captured
) -> None:
    make_order("40001", alice)
    conversation = make_conversation(alice)
    submit(
        conversation,
        alice,
        "Please cancel order 40001",
        model=ScriptedModel(tool_response(tool_call("t-c", "cancel_order", {"order_id": "40001"}))),
    )
    action = PendingAction.objects.get()
    captured.stream.truncate(0)
    captured.stream.seek(0)

    connections.close_all()
    with telemetry.in_memory_tracing() as exporter:
        assert action_decide(
            conversation=conversation,
            user=user_of(alice),
            action_id=str(action.pk),
            approve=True,
            emit=Recorder(),
            client=ScriptedModel(text_response(REPLY)),
        )
        spans = list(exporter.get_finished_spans())

    (turn,) = [span for span in spans if span.name == "chat.turn"]
    (tool,) = [span for span in spans if span.name == "execute_tool cancel_order"]
    assert tool.parent is not None
    assert tool.parent.span_id == turn.context.span_id
    assert (tool.attributes or {})["chat.tool.outcome"] == "success"
    lines = [line for line in captured.json_lines() if line["logger"] == "chat.live.observe"]
    assert [line["event"].split(":")[0] for line in lines] == [
        "Tool call done",
        "Turn started",
        "Model call done",
        "Turn ended",
    ]
    for line in lines:
        assert line["turn_id"] == str(action.turn_id)
        assert line["conversation_id"] == str(conversation.pk)


def test_a_message_that_runs_no_turn_is_a_not_run_span_and_one_line(
    conversation: Conversation, alice: Customer, captured: Captured
) -> None:
    connections.close_all()
    with telemetry.in_memory_tracing() as exporter:
        accepted = turn_submit(
            conversation=conversation,
            user=user_of(alice),
            text="   ",
            client_message_id=str(uuid.uuid4()),
            emit=Recorder(),
        )
        spans = list(exporter.get_finished_spans())

    assert accepted is False
    (turn,) = [span for span in spans if span.name == "chat.turn"]
    assert (turn.attributes or {})["chat.turn.outcome"] == "not_run"
    (line,) = [line for line in captured.json_lines() if line["logger"] == "chat.live.observe"]
    assert line["event"] == "Message not accepted: Please type a message before sending."
    assert line["retryable"] is False
    assert line["conversation_id"] == str(conversation.pk)
