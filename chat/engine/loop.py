"""The tool loop: one customer turn against a Converse-shaped model client.

Plain Python over Converse dicts (no Django, no boto3, no asyncio), so the real Bedrock client, the
offline demo model and a scripted test double are interchangeable. ``run_turn`` repairs the
history (``chat.history.repair``), calls the model until it stops asking for tools, runs the tools
through a ``Tools`` object bound to the signed-in customer, and reports everything to a
``TurnSink``: each model call, each finished exchange (an assistant message plus, if it called
tools, the user message with all their results — never one without the other, except when the turn
pauses for a confirmation), live reply text and tool progress.

How each ``stopReason`` ends (or continues) the turn:

============================== ============================ ============ ================
stopReason                     assistant message            outcome      error_kind
============================== ============================ ============ ================
end_turn, stop_sequence        stored                       answered     ""
  … with no visible reply      stored                       failed       "empty"
tool_use                       stored with all its results; the loop calls the model again
  … a tool needs a yes         stored alone                 awaiting_confirmation
  … without any toolUse block  treated as end_turn
max_tokens                     stored (toolUse dropped)     failed       "max_tokens"
guardrail_intervened           not stored                   failed       "guardrail"
content_filtered               not stored                   failed       "content_filtered"
malformed_model_output         not stored                   failed       "malformed"
malformed_tool_use             not stored                   failed       "malformed"
model_context_window_exceeded  not stored                   failed       "context_window"
anything else / missing        not stored                   failed       "unknown_stop"
============================== ============================ ============ ================

Other ways a turn ends: more than ``max_model_calls`` model calls ("capped"), the wall-clock
deadline passing before a call or during a stream ("deadline"), and a ``chat.modelapi.ModelError``
from the client ("busy", "unavailable", "rejected"; the reply is the exception's
``customer_message``). A failed turn's ``reply`` is always one of the fixed, customer-safe texts
below; an answered or paused turn's ``reply`` is the visible text of its assistant messages, the
same text that went to ``TurnSink.text_delta``. Streamed reply text cannot be recalled: when a
streamed message ends abnormally, the failed outcome tells the caller to replace what it showed.
Whatever happens, the stored history stays valid: it ends with a user message or with a complete
exchange (or, when paused, with the assistant message whose results ``complete_pending`` builds).

Each toolUse input is checked against its tool's JSON schema before anything runs. An unknown
tool, an invalid input or a domain error becomes a ``toolResult`` with status "error" and a short
reason; an unexpected exception in ``Tools.run`` is logged and the model only hears
``INTERNAL_ERROR_TEXT``.
"""

import copy
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from chat.history import has_tool_blocks, parse_tool_input, repair, violations
from chat.modelapi import (
    ModelBusy,
    ModelClient,
    ModelError,
    ModelRequestRejected,
    ModelUnavailable,
)
from chat.replies import ReplyStream, extract_reply, message_text

logger = logging.getLogger(__name__)

CAPPED_TEXT = (
    "Sorry, this is taking me longer than it should. Please try again, or ask in smaller steps."
)
DEADLINE_TEXT = "Sorry, I couldn't finish in time. Please try again in a moment."
MAX_TOKENS_TEXT = "Sorry, my answer was cut short. Please ask again, or ask for a shorter answer."
BLOCKED_TEXT = (
    "Sorry, I can't help with that request. I can look up your account and orders, "
    "or cancel an order that hasn't shipped yet."
)
MALFORMED_TEXT = "Sorry, something went wrong while preparing my answer. Please try again."
CONTEXT_WINDOW_TEXT = (
    "This conversation has become too long for me to continue. Please start a new conversation."
)
EMPTY_TEXT = "Sorry, I don't have an answer for that. Could you rephrase your question?"
UNKNOWN_STOP_TEXT = "Sorry, something went wrong on our side. Please try again."

INTERNAL_ERROR_TEXT = "The tool failed because of an internal error."
NOT_AN_OBJECT_TEXT = "The tool input must be a JSON object."
ONE_AT_A_TIME_TEXT = "Only one cancellation can be confirmed at a time; ask again after this one."

_MAX_REASON_CHARS = 300
_CACHE_POINT = {"cachePoint": {"type": "default"}}

# stopReason -> (error_kind, customer text, keep the assistant message)
_FAILED_STOPS: dict[str, tuple[str, str, bool]] = {
    "max_tokens": ("max_tokens", MAX_TOKENS_TEXT, True),
    "guardrail_intervened": ("guardrail", BLOCKED_TEXT, False),
    "content_filtered": ("content_filtered", BLOCKED_TEXT, False),
    "malformed_model_output": ("malformed", MALFORMED_TEXT, False),
    "malformed_tool_use": ("malformed", MALFORMED_TEXT, False),
    "model_context_window_exceeded": ("context_window", CONTEXT_WINDOW_TEXT, False),
}
_ANSWER_STOPS = frozenset({"end_turn", "stop_sequence"})

# Error events a Converse stream can carry in place of a botocore exception.
_STREAM_ERRORS: dict[str, type[ModelError]] = {
    "throttlingException": ModelBusy,
    "serviceUnavailableException": ModelBusy,
    "internalServerException": ModelUnavailable,
    "modelStreamErrorException": ModelUnavailable,
    "validationException": ModelRequestRejected,
}


@dataclass(frozen=True)
class ToolOutcome:
    status: Literal["success", "error"]
    content: Any  # JSON-able; sent as [{"json": content}] on success, [{"text": content}] on error


class Tools(Protocol):
    """The customer's tools; implementations are bound to the signed-in customer."""

    specs: list[dict[str, Any]]  # Converse "tools" entries ({"toolSpec": {...}})

    def needs_confirmation(self, name: str, tool_input: dict[str, Any]) -> bool: ...

    def describe(self, name: str, tool_input: dict[str, Any]) -> str: ...

    def run(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome: ...


@dataclass(frozen=True)
class ModelCallRecord:
    model_id: str
    stop_reason: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    latency_ms: int
    error: str  # "" on success, else the error kind ("busy", "deadline", …)


class TurnSink(Protocol):
    def model_called(self, record: ModelCallRecord) -> None: ...

    def messages_appended(self, messages: list[dict[str, Any]]) -> None: ...

    def text_delta(self, text: str) -> None: ...

    def tool_started(self, name: str, tool_input: dict[str, Any], description: str) -> None: ...


@dataclass(frozen=True)
class TurnConfig:
    model_id: str
    system_prompt: str
    inference_config: dict[str, Any]
    additional_model_request_fields: dict[str, Any]
    max_model_calls: int
    deadline_seconds: float
    prompt_caching: bool = False
    guardrail: tuple[str, str] | None = None  # (identifier, version)
    stream: bool = True


@dataclass(frozen=True)
class PendingConfirmation:
    """The turn paused on a tool that needs the customer's yes.

    ``results`` holds the toolResult blocks of the paused assistant message in call order; the
    pending call's slot and the slots of the calls after it that have not run yet are ``None``.
    ``tool_uses`` holds that message's toolUse blocks (inputs parsed), so ``complete_pending`` can
    run the calls that waited. ``to_dict``/``from_dict`` round-trip through JSON.
    """

    tool_use_id: str
    name: str
    tool_input: dict[str, Any]
    results: list[dict[str, Any] | None]
    tool_uses: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PendingConfirmation":
        return cls(
            tool_use_id=data["tool_use_id"],
            name=data["name"],
            tool_input=data["tool_input"],
            results=list(data["results"]),
            tool_uses=list(data.get("tool_uses") or []),
        )


@dataclass(frozen=True)
class TurnResult:
    outcome: Literal["answered", "awaiting_confirmation", "failed"]
    reply: str
    stop_reason: str | None
    pending: PendingConfirmation | None = None
    error_kind: str = ""


def tool_result_block(tool_use_id: str, outcome: ToolOutcome) -> dict[str, Any]:
    """The Converse toolResult block for ``outcome``."""
    if outcome.status == "success":
        content = _json_safe(outcome.content)
        # Converse only takes an object as a json tool result.
        if not isinstance(content, dict):
            content = {"result": content}
        blocks: list[dict[str, Any]] = [{"json": content}]
    else:
        reason = str(outcome.content).strip() or "The tool failed."
        blocks = [{"text": reason[:_MAX_REASON_CHARS]}]
    return {"toolResult": {"toolUseId": tool_use_id, "content": blocks, "status": outcome.status}}


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _error_result(tool_use_id: str, reason: str) -> dict[str, Any]:
    return tool_result_block(tool_use_id, ToolOutcome("error", reason))


def _validators(specs: list[dict[str, Any]]) -> dict[str, Validator]:
    validators: dict[str, Validator] = {}
    for spec in specs:
        tool_spec = spec.get("toolSpec") or {}
        name = tool_spec.get("name")
        schema = (tool_spec.get("inputSchema") or {}).get("json") or {"type": "object"}
        if isinstance(name, str):
            validators[name] = validator_for(schema)(schema)
    return validators


class _ToolRunner:
    """Checks and runs the toolUse blocks of one assistant message."""

    def __init__(self, tools: Tools, sink: TurnSink | None) -> None:
        self.tools = tools
        self.sink = sink
        self.validators = _validators(tools.specs)

    def check(self, tool_use: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The parsed input and "" if the call may run, else ({}, a short reason for the model)."""
        name = tool_use.get("name")
        validator = self.validators.get(name) if isinstance(name, str) else None
        if validator is None:
            return {}, f"Unknown tool: {str(name)[:80]}."
        tool_input = parse_tool_input(tool_use.get("input"))
        if tool_input is None:
            return {}, NOT_AN_OBJECT_TEXT
        error = best_match(validator.iter_errors(tool_input))
        if error is not None:
            return {}, f"Invalid input for {name}: {error.message}"[:_MAX_REASON_CHARS]
        return tool_input, ""

    def run(self, tool_use_id: str, name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
        if self.sink is not None:
            self.sink.tool_started(name, tool_input, self.tools.describe(name, tool_input))
        try:
            outcome = self.tools.run(name, tool_input)
        except Exception:
            # Domain errors arrive as outcomes; anything else is a bug the model must not read.
            logger.exception("Tool %s failed unexpectedly", name)
            outcome = ToolOutcome("error", INTERNAL_ERROR_TEXT)
        return tool_result_block(tool_use_id, outcome)

    def answer(
        self, tool_uses: list[dict[str, Any]], slots: list[dict[str, Any] | None] | None = None
    ) -> tuple[list[dict[str, Any] | None], int | None]:
        """Fill the result slots in call order, stopping before the first call that needs a yes.

        Returns the slots (``None`` for the paused call and the valid calls after it) and the
        index of the paused call, if any.
        """
        results: list[dict[str, Any] | None] = (
            list(slots) if slots is not None else [None] * len(tool_uses)
        )
        paused: int | None = None
        for index, tool_use in enumerate(tool_uses):
            if results[index] is not None:
                continue
            tool_use_id = tool_use["toolUseId"]
            tool_input, reason = self.check(tool_use)
            if reason:
                results[index] = _error_result(tool_use_id, reason)
            elif self.tools.needs_confirmation(tool_use["name"], tool_input):
                if paused is None:
                    paused = index
                else:
                    results[index] = _error_result(tool_use_id, ONE_AT_A_TIME_TEXT)
            elif paused is None:
                results[index] = self.run(tool_use_id, tool_use["name"], tool_input)
        return results, paused


def complete_pending(
    pending: PendingConfirmation,
    outcome: ToolOutcome,
    tools: Tools,
    *,
    message: dict[str, Any] | None = None,
    sink: TurnSink | None = None,
) -> dict[str, Any]:
    """The user message answering a paused assistant message, once the customer has decided.

    ``outcome`` is the result of the confirmed call (or an error saying the customer declined).
    The calls that waited behind it run now, in order; a further call that needs confirmation gets
    ``ONE_AT_A_TIME_TEXT``. ``message`` is the paused assistant message, needed only when
    ``pending.tool_uses`` is empty. Resume the turn with ``run_turn`` on the history plus the
    returned message.
    """
    tool_uses = [
        b["toolUse"]
        for b in (message or {}).get("content") or []
        if isinstance(b, dict) and "toolUse" in b
    ] or list(pending.tool_uses)
    decided = tool_result_block(pending.tool_use_id, outcome)
    if len(tool_uses) != len(pending.results):
        # Without the calls we cannot run the waiting ones; repair() gives them error results.
        blocks = [
            decided if b is None and i == _first_none(pending.results) else b
            for i, b in enumerate(pending.results)
        ]
        return {"role": "user", "content": [b for b in blocks if b is not None]}
    slots = [
        decided if tool_use["toolUseId"] == pending.tool_use_id else slot
        for tool_use, slot in zip(tool_uses, pending.results, strict=True)
    ]
    runner = _ToolRunner(tools, sink)
    filled, paused = runner.answer(tool_uses, slots)
    if paused is not None:  # cannot happen for a pending built by run_turn; stay consistent anyway
        filled[paused] = _error_result(tool_uses[paused]["toolUseId"], ONE_AT_A_TIME_TEXT)
        filled, _ = runner.answer(tool_uses, filled)
    return {"role": "user", "content": [b for b in filled if b is not None]}


def _first_none(results: list[dict[str, Any] | None]) -> int:
    return next((i for i, r in enumerate(results) if r is None), -1)


class _DeadlinePassed(Exception):
    pass


@dataclass
class _Reply:
    message: dict[str, Any]  # as stored and sent back
    tool_uses: list[dict[str, Any]]  # as the model sent them (an input may still be a string)
    stop_reason: str | None
    visible: str


class _Emitter:
    """Sends visible text to the sink, a blank line apart between assistant messages."""

    def __init__(self, sink: TurnSink) -> None:
        self.sink = sink
        self.parts: list[str] = []
        self._separate = False

    def new_message(self) -> None:
        self._separate = bool(self.parts)

    def emit(self, text: str) -> None:
        if not text:
            return
        if self._separate:
            text = "\n\n" + text.lstrip("\n")
            self._separate = False
        self.parts.append(text)
        self.sink.text_delta(text)

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _usage_record(
    model_id: str, stop_reason: str | None, usage: dict[str, Any], latency_ms: int, error: str = ""
) -> ModelCallRecord:
    return ModelCallRecord(
        model_id=model_id,
        stop_reason=stop_reason,
        input_tokens=int(usage.get("inputTokens") or 0),
        output_tokens=int(usage.get("outputTokens") or 0),
        cache_read_tokens=int(usage.get("cacheReadInputTokens") or 0),
        cache_write_tokens=int(usage.get("cacheWriteInputTokens") or 0),
        latency_ms=latency_ms,
        error=error,
    )


def _error_kind(error: ModelError) -> str:
    if isinstance(error, ModelBusy):
        return "busy"
    if isinstance(error, ModelRequestRejected):
        return "rejected"
    return "unavailable"


def _shows_untagged(stop_reason: str | None, message: dict[str, Any]) -> bool:
    calls_tool = any("toolUse" in b for b in message.get("content") or [])
    return not calls_tool and (stop_reason in _ANSWER_STOPS or stop_reason == "max_tokens")


class _Turn:
    def __init__(
        self,
        client: ModelClient,
        tools: Tools,
        config: TurnConfig,
        sink: TurnSink,
        clock: Callable[[], float],
    ) -> None:
        self.client = client
        self.tools = tools
        self.config = config
        self.sink = sink
        self.clock = clock
        self.runner = _ToolRunner(tools, sink)
        self.emitter = _Emitter(sink)
        self.deadline = clock() + config.deadline_seconds

    def run(self, history: list[dict[str, Any]]) -> TurnResult:
        messages = repair(history)
        calls = 0
        while True:
            if calls >= self.config.max_model_calls:
                return self._failed("capped", CAPPED_TEXT, None)
            if self.clock() >= self.deadline:
                return self._failed("deadline", DEADLINE_TEXT, None)
            calls += 1
            try:
                reply = self._call(messages)
            except ModelError as error:
                return self._failed(_error_kind(error), error.customer_message, None)
            except _DeadlinePassed:
                return self._failed("deadline", DEADLINE_TEXT, None)

            stop_reason = reply.stop_reason
            tool_uses = reply.tool_uses
            if stop_reason == "tool_use" and tool_uses:
                results, paused = self.runner.answer(tool_uses)
                if paused is not None:
                    self.sink.messages_appended([copy.deepcopy(reply.message)])
                    stored_uses = [b["toolUse"] for b in reply.message["content"] if "toolUse" in b]
                    pending = stored_uses[paused]
                    return TurnResult(
                        outcome="awaiting_confirmation",
                        reply=self.emitter.text,
                        stop_reason=stop_reason,
                        pending=PendingConfirmation(
                            tool_use_id=pending["toolUseId"],
                            name=pending["name"],
                            tool_input=copy.deepcopy(pending["input"]),
                            results=results,
                            tool_uses=copy.deepcopy(stored_uses),
                        ),
                    )
                answer = {"role": "user", "content": [r for r in results if r is not None]}
                self.sink.messages_appended(copy.deepcopy([reply.message, answer]))
                messages += [reply.message, answer]
                continue

            if tool_uses:
                # Calls the model did not finish (or mean) would stay unanswered in the history.
                logger.warning(
                    "Dropping %d toolUse block(s) at stopReason %s", len(tool_uses), stop_reason
                )
                reply.message["content"] = [
                    b for b in reply.message["content"] if "toolUse" not in b
                ]
            if stop_reason in _ANSWER_STOPS or stop_reason == "tool_use":
                if reply.message["content"]:
                    self.sink.messages_appended([copy.deepcopy(reply.message)])
                if not reply.visible:
                    return self._failed("empty", EMPTY_TEXT, stop_reason)
                return TurnResult(
                    outcome="answered", reply=self.emitter.text, stop_reason=stop_reason
                )
            error_kind, text, keep = _FAILED_STOPS.get(
                stop_reason or "", ("unknown_stop", UNKNOWN_STOP_TEXT, False)
            )
            if keep and reply.message["content"]:
                self.sink.messages_appended([copy.deepcopy(reply.message)])
            logger.warning("Turn ended at stopReason %s", stop_reason)
            return self._failed(error_kind, text, stop_reason)

    def _failed(self, error_kind: str, text: str, stop_reason: str | None) -> TurnResult:
        return TurnResult(
            outcome="failed", reply=text, stop_reason=stop_reason, error_kind=error_kind
        )

    def _request(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        config = self.config
        problems = violations(messages)
        if problems:
            # repair() output cannot break the rules; if it ever does, send a valid history anyway.
            logger.error("History breaks Converse rules before a call: %s", problems)
            messages = repair(messages)
        messages = copy.deepcopy(messages)
        request: dict[str, Any] = {"modelId": config.model_id, "messages": messages}
        if config.system_prompt.strip():
            system: list[dict[str, Any]] = [{"text": config.system_prompt}]
            if config.prompt_caching:
                system.append(copy.deepcopy(_CACHE_POINT))
            request["system"] = system
        tool_specs = copy.deepcopy(self.tools.specs) or _stand_in_specs(messages)
        if tool_specs:
            if config.prompt_caching:
                tool_specs.append(copy.deepcopy(_CACHE_POINT))
            request["toolConfig"] = {"tools": tool_specs, "toolChoice": {"auto": {}}}
        if config.prompt_caching:
            messages[-1]["content"].append(copy.deepcopy(_CACHE_POINT))
        if config.inference_config:
            request["inferenceConfig"] = copy.deepcopy(config.inference_config)
        if config.additional_model_request_fields:
            request["additionalModelRequestFields"] = copy.deepcopy(
                config.additional_model_request_fields
            )
        if config.guardrail is not None:
            identifier, version = config.guardrail
            guardrail = {"guardrailIdentifier": identifier, "guardrailVersion": version}
            if config.stream:
                # Sync mode checks each chunk before it is sent, so blocked text never streams.
                guardrail["streamProcessingMode"] = "sync"
            request["guardrailConfig"] = guardrail
        return request

    def _call(self, messages: list[dict[str, Any]]) -> _Reply:
        request = self._request(messages)
        self.emitter.new_message()
        started = self.clock()
        model_id = self.config.model_id

        def elapsed_ms() -> int:
            return max(0, int((self.clock() - started) * 1000))

        try:
            if self.config.stream:
                assembled = self._consume_stream(self.client.converse_stream(**request))
                reply, usage, latency = assembled
            else:
                response = self.client.converse(**request)
                reply, usage, latency = self._read_response(response)
        except ModelError as error:
            self.sink.model_called(
                _usage_record(model_id, None, {}, elapsed_ms(), _error_kind(error))
            )
            raise
        except _DeadlinePassed:
            self.sink.model_called(_usage_record(model_id, None, {}, elapsed_ms(), "deadline"))
            raise
        record = _usage_record(
            model_id, reply.stop_reason, usage, latency if latency is not None else elapsed_ms()
        )
        self.sink.model_called(record)
        return reply

    def _read_response(self, response: dict[str, Any]) -> tuple[_Reply, dict[str, Any], int | None]:
        content = ((response.get("output") or {}).get("message") or {}).get("content") or []
        message = _normalized_message(content)
        stop_reason = response.get("stopReason")
        visible = ""
        if stop_reason in _ANSWER_STOPS or stop_reason in ("tool_use", "max_tokens"):
            visible = extract_reply(
                message_text(message), include_untagged=_shows_untagged(stop_reason, message)
            )
            self.emitter.emit(visible)
        latency = (response.get("metrics") or {}).get("latencyMs")
        reply = _Reply(message, _tool_uses(content), stop_reason, visible)
        return reply, response.get("usage") or {}, latency

    def _consume_stream(
        self, response: dict[str, Any]
    ) -> tuple[_Reply, dict[str, Any], int | None]:
        events: Iterable[dict[str, Any]] = response.get("stream") or ()
        blocks: dict[int, dict[str, Any]] = {}
        replies = ReplyStream()
        visible: list[str] = []
        fed_text = False
        last_text_index: int | None = None
        stop_reason: str | None = None
        usage: dict[str, Any] = {}
        latency: int | None = None
        try:
            for event in events:
                if self.clock() >= self.deadline:
                    raise _DeadlinePassed
                for key, error_class in _STREAM_ERRORS.items():
                    if key in event:
                        raise error_class(str((event[key] or {}).get("message", key)))
                if "contentBlockStart" in event:
                    start = event["contentBlockStart"]
                    tool_use = (start.get("start") or {}).get("toolUse")
                    if tool_use is not None:
                        blocks[start.get("contentBlockIndex", len(blocks))] = {
                            "toolUse": {
                                "toolUseId": tool_use.get("toolUseId"),
                                "name": tool_use.get("name"),
                                "input": "",
                            }
                        }
                elif "contentBlockDelta" in event:
                    body = event["contentBlockDelta"]
                    index = body.get("contentBlockIndex", 0)
                    delta = body.get("delta") or {}
                    if "text" in delta:
                        block = blocks.setdefault(index, {"text": ""})
                        block["text"] += delta["text"]
                        if fed_text and last_text_index != index:
                            visible.append(self._emit(replies.feed("\n")))
                        fed_text, last_text_index = True, index
                        visible.append(self._emit(replies.feed(delta["text"])))
                    elif "toolUse" in delta:
                        block = blocks.setdefault(index, {"toolUse": {"input": ""}})
                        block["toolUse"]["input"] += delta["toolUse"].get("input") or ""
                    elif "reasoningContent" in delta:
                        _add_reasoning(blocks.setdefault(index, {"reasoningContent": {}}), delta)
                elif "messageStop" in event:
                    stop_reason = event["messageStop"].get("stopReason")
                elif "metadata" in event:
                    usage = event["metadata"].get("usage") or {}
                    latency = (event["metadata"].get("metrics") or {}).get("latencyMs")
        finally:
            close = getattr(events, "close", None)
            if callable(close):
                close()
        content = [blocks[i] for i in sorted(blocks)]
        message = _normalized_message(content)
        if stop_reason in _ANSWER_STOPS or stop_reason in ("tool_use", "max_tokens"):
            visible.append(
                self._emit(replies.finish(include_untagged=_shows_untagged(stop_reason, message)))
            )
        return _Reply(message, _tool_uses(content), stop_reason, "".join(visible)), usage, latency

    def _emit(self, text: str) -> str:
        self.emitter.emit(text)
        return text


def _add_reasoning(block: dict[str, Any], delta: dict[str, Any]) -> None:
    reasoning = delta["reasoningContent"]
    content = block["reasoningContent"]
    if "redactedContent" in reasoning:
        content["redactedContent"] = reasoning["redactedContent"]
        return
    text_part = content.setdefault("reasoningText", {"text": ""})
    text_part["text"] += reasoning.get("text") or ""
    if reasoning.get("signature"):
        text_part["signature"] = reasoning["signature"]


def _tool_uses(content: list[Any]) -> list[dict[str, Any]]:
    uses = [
        _with_empty_input_as_object(b["toolUse"])
        for b in content
        if isinstance(b, dict) and isinstance(b.get("toolUse"), dict)
    ]
    return [u for u in uses if isinstance(u.get("toolUseId"), str) and u["toolUseId"]]


def _with_empty_input_as_object(tool_use: dict[str, Any]) -> dict[str, Any]:
    raw = tool_use.get("input")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        # A tool without parameters streams no input at all.
        return {**tool_use, "input": {}}
    return tool_use


def _normalized_message(content: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message as it will be stored and sent back: no blank text, object inputs."""
    blocks: list[dict[str, Any]] = []
    for block in content:
        if "text" in block:
            if isinstance(block["text"], str) and block["text"].strip():
                blocks.append({"text": block["text"]})
        elif "toolUse" in block:
            tool_use = _with_empty_input_as_object(dict(block["toolUse"]))
            if not isinstance(tool_use.get("toolUseId"), str) or not tool_use["toolUseId"]:
                continue
            # Stored histories get an object; a call with unusable input gets an error result.
            tool_use["input"] = parse_tool_input(tool_use.get("input")) or {}
            blocks.append({"toolUse": tool_use})
        else:
            blocks.append(copy.deepcopy(block))
    return {"role": "assistant", "content": blocks}


def _stand_in_specs(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Converse refuses tool blocks in a history sent without toolConfig, even with no tools."""
    if not has_tool_blocks(messages):
        return []
    names = sorted(
        {
            b["toolUse"]["name"]
            for m in messages
            for b in m["content"]
            if "toolUse" in b and isinstance(b["toolUse"].get("name"), str)
        }
    )
    return [
        {
            "toolSpec": {
                "name": name,
                "description": "No longer available.",
                "inputSchema": {"json": {"type": "object"}},
            }
        }
        for name in names
    ]


def run_turn(
    *,
    client: ModelClient,
    history: list[dict[str, Any]],
    tools: Tools,
    config: TurnConfig,
    sink: TurnSink,
    clock: Callable[[], float] = time.monotonic,
) -> TurnResult:
    """Run one customer turn; ``history`` ends with the new user message (text or toolResults)."""
    return _Turn(client, tools, config, sink, clock).run(history)
