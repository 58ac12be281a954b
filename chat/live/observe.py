"""What a turn tells operators: log lines carrying its ids, and OpenTelemetry spans.

Each turn job (``turn_submit``, ``action_decide``) runs under :func:`turn_scope`: in a
``chat.turn`` span, with the conversation and user ids bound for its log lines, and the turn id
from the moment the turn runs (:class:`ObservedSink`). Inside it:

- each model call is a ``chat <model id>`` span following the OpenTelemetry GenAI semantic
  conventions (``gen_ai.operation.name``, ``gen_ai.system``, ``gen_ai.request.model``,
  ``gen_ai.usage.*``, ``gen_ai.response.finish_reasons``) and one INFO line
  (:class:`ObservedSink`, with :meth:`ObservedSink.client` around the model client);
- each tool call is an ``execute_tool <name>`` span and one INFO line with its outcome
  (:class:`ObservedTools`);
- the turn's end is one INFO line with its outcome, calls and tokens
  (:meth:`ObservedSink.turn_ended`); a message the chat does not accept is one INFO line with
  the app's reason.

Neither logs nor spans carry message text, tool inputs or tool results: ids, names, counts and
outcomes only. ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` adds the request
messages to model spans and tool arguments and results to tool spans (spans only, never logs).
Tracing off, the spans are no-ops and the log lines stay.
"""

import contextvars
import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from anycompany import logcontext, telemetry
from chat.engine.client import ModelClient
from chat.engine.registry import BoundTools
from chat.engine.types import ModelCallRecord, ToolOutcome, TurnResult, TurnSink

logger = logging.getLogger(__name__)

TURN_SPAN = "chat.turn"
# The value the GenAI conventions give Bedrock (``gen_ai.system`` and its newer name).
GEN_AI_SYSTEM = "aws.bedrock"
MAX_NAME_CHARS = 64


def turn_scope[**P, R](job: Callable[P, R]) -> Callable[P, R]:
    """Runs a turn job in its own ``chat.turn`` span with the conversation and user ids bound.

    ``job`` takes ``conversation``, ``user`` and ``emit`` keywords. It runs in a copy of the
    caller's context, so the ids it adds (the turn's, by :class:`ObservedSink`) end with it.
    "error" events it emits (a message not accepted) are logged with their fixed, customer-safe
    text.
    """

    @functools.wraps(job)
    def scoped(*args: P.args, **kwargs: P.kwargs) -> R:
        return contextvars.copy_context().run(_run_scoped, job, args, kwargs)

    return scoped


def _run_scoped[R](job: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
    conversation = kwargs.get("conversation")
    user = kwargs.get("user")
    conversation_id = getattr(conversation, "pk", None)
    emit = kwargs.get("emit")
    if emit is not None:
        kwargs = {**kwargs, "emit": _refusals_logged(emit)}
    logcontext.bind_rest(conversation_id=conversation_id, user_id=getattr(user, "pk", None))
    # "not_run" stays when no turn runs: a message refused, repeated or held by a person.
    attributes = {"chat.turn.outcome": "not_run"}
    if conversation_id is not None:
        attributes["gen_ai.conversation.id"] = str(conversation_id)
    with telemetry.tracer().start_as_current_span(TURN_SPAN, attributes=attributes):
        return job(*args, **kwargs)


def _refusals_logged(emit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def logged(event: dict[str, Any]) -> None:
        if event.get("type") == "error":
            # These texts are the app's own ("Please wait until…"), never the customer's.
            logger.info(
                "Message not accepted: %s",
                event.get("text"),
                extra={"retryable": bool(event.get("retryable"))},
            )
        emit(event)

    return logged


class _ObservedClient:
    """The model client with each ``converse_stream`` call opening its model call span."""

    def __init__(self, inner: ModelClient, sink: "ObservedSink") -> None:
        self.inner = inner
        self.sink = sink

    def converse_stream(self, **request: Any) -> dict[str, Any]:
        span = self.sink.call_started(request)
        # Current during the request, so spans made on the way (none by default) nest in it.
        with trace.use_span(span, end_on_exit=False), telemetry.library_spans_suppressed():
            return self.inner.converse_stream(**request)


class ObservedSink:
    """A ``TurnSink`` that logs and traces each model call, then hands it to ``inner``.

    Made when the turn ``turn_id`` starts to run: the id joins the rest of the job's log lines
    and its span, and the start is logged. The span of a model call opens when the request
    leaves (through :meth:`client`) and ends when the loop reports the call, its reply read.
    """

    def __init__(self, inner: TurnSink, turn_id: object) -> None:
        logcontext.bind_rest(turn_id=turn_id)
        trace.get_current_span().set_attribute("chat.turn.id", str(turn_id))
        logger.info("Turn started")
        self.inner = inner
        self.calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self._span: Span | None = None

    def client(self, client: ModelClient) -> ModelClient:
        return _ObservedClient(client, self)

    def call_started(self, request: dict[str, Any], start_time: int | None = None) -> Span:
        self._end_open_span("abandoned")
        model_id = str(request.get("modelId") or "")
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": GEN_AI_SYSTEM,
            "gen_ai.provider.name": GEN_AI_SYSTEM,
            "gen_ai.request.model": model_id,
        }
        inference = request.get("inferenceConfig") or {}
        for key, name in (
            ("maxTokens", "gen_ai.request.max_tokens"),
            ("temperature", "gen_ai.request.temperature"),
            ("topP", "gen_ai.request.top_p"),
        ):
            if isinstance(inference.get(key), int | float):
                attributes[name] = inference[key]
        conversation_id = logcontext.current().get("conversation_id")
        if conversation_id is not None:
            attributes["gen_ai.conversation.id"] = str(conversation_id)
        if telemetry.capture_content():
            attributes["gen_ai.input.messages"] = _json(request.get("messages"))
            attributes["gen_ai.system_instructions"] = _json(request.get("system"))
        self._span = telemetry.tracer().start_span(
            f"chat {model_id}", kind=SpanKind.CLIENT, attributes=attributes, start_time=start_time
        )
        return self._span

    def model_called(self, record: ModelCallRecord) -> None:
        span = self._span
        if span is None:  # the client was not wrapped: a span as long as the call took
            started = time.time_ns() - record.latency_ms * 1_000_000
            span = self.call_started({"modelId": record.model_id}, start_time=started)
        self._span = None
        self.calls += 1
        self.input_tokens += record.input_tokens
        self.output_tokens += record.output_tokens
        span.set_attribute("gen_ai.response.model", record.model_id)
        span.set_attribute("gen_ai.usage.input_tokens", record.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", record.output_tokens)
        if record.cache_read_tokens:
            span.set_attribute("gen_ai.usage.cache_read.input_tokens", record.cache_read_tokens)
        if record.cache_write_tokens:
            span.set_attribute(
                "gen_ai.usage.cache_creation.input_tokens", record.cache_write_tokens
            )
        if record.stop_reason:
            span.set_attribute("gen_ai.response.finish_reasons", (record.stop_reason,))
        if record.error:
            span.set_attribute("error.type", record.error)
            span.set_status(Status(StatusCode.ERROR, record.error))
        span.end()
        logger.info(
            "Model call done: %s, stop reason %s, %d input and %d output tokens, %d ms%s",
            record.model_id,
            record.stop_reason or "none",
            record.input_tokens,
            record.output_tokens,
            record.latency_ms,
            f", error {record.error}" if record.error else "",
            extra={
                "model_id": record.model_id,
                "stop_reason": record.stop_reason or "",
                "input_tokens": record.input_tokens,
                "output_tokens": record.output_tokens,
                "latency_ms": record.latency_ms,
                "error_kind": record.error,
            },
        )
        self.inner.model_called(record)

    def messages_appended(self, messages: list[dict[str, Any]]) -> None:
        self.inner.messages_appended(messages)

    def text_delta(self, text: str) -> None:
        self.inner.text_delta(text)

    def tool_started(self, name: str, tool_input: dict[str, Any], description: str) -> None:
        self.inner.tool_started(name, tool_input, description)

    def turn_ended(self, result: TurnResult) -> None:
        """Logs how the turn ended and puts it on the turn's span."""
        self._end_open_span("internal")
        span = trace.get_current_span()
        span.set_attribute("chat.turn.outcome", result.outcome)
        span.set_attribute("chat.turn.model_calls", self.calls)
        if result.error_kind:
            span.set_attribute("error.type", result.error_kind)
        logger.info(
            "Turn ended: %s%s after %d model calls, %d input and %d output tokens",
            result.outcome,
            f" ({result.error_kind})" if result.error_kind else "",
            self.calls,
            self.input_tokens,
            self.output_tokens,
            extra={
                "outcome": result.outcome,
                "error_kind": result.error_kind,
                "stop_reason": result.stop_reason or "",
                "model_calls": self.calls,
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
            },
        )

    def _end_open_span(self, error: str) -> None:
        # A call the loop never reported (a bug raised on the way): end its span as failed.
        span, self._span = self._span, None
        if span is not None:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, error))
            span.end()


class ObservedTools(BoundTools):
    """The bound tools with each call an ``execute_tool <name>`` span and one INFO line."""

    def run(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome:
        return tool_call_observed(
            name, tool_input, lambda: super(ObservedTools, self).run(name, tool_input)
        )

    def run_confirmed(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome:
        return tool_call_observed(
            name, tool_input, lambda: super(ObservedTools, self).run_confirmed(name, tool_input)
        )


def tool_call_observed(
    name: str, tool_input: dict[str, Any], run: Callable[[], ToolOutcome]
) -> ToolOutcome:
    """Runs one tool call in its span; the span and the log line name the tool and the outcome."""
    name = name[:MAX_NAME_CHARS]
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.type": "function",
    }
    if telemetry.capture_content():
        attributes["gen_ai.tool.call.arguments"] = _json(tool_input)
    with telemetry.tracer().start_as_current_span(
        f"execute_tool {name}", kind=SpanKind.INTERNAL, attributes=attributes
    ) as span:
        outcome = run()
        span.set_attribute("chat.tool.outcome", outcome.status)
        if outcome.status == "error":
            # Refused by the tool (not the customer's, not cancellable…): an answer, not a fault.
            span.set_attribute("error.type", "tool_error")
        if telemetry.capture_content():
            span.set_attribute("gen_ai.tool.call.result", _json(outcome.content))
    logger.info(
        "Tool call %s: %s",
        "done" if outcome.status == "success" else "refused",
        name,
        extra={"tool": name, "outcome": outcome.status},
    )
    return outcome


def _json(value: object) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)
