"""The tool loop: one customer turn against a Converse-shaped model client.

Plain Python over Converse dicts (no Django, no boto3, no asyncio), so the real Bedrock client, the
offline demo model and a scripted test double are interchangeable. ``run_turn`` repairs the
history once (``chat.engine.history.repair``) and cuts it to the context budget
(``chat.engine.budget``), streams each model call (``converse_stream``), runs the
tools the model asks for through a ``Tools`` object bound to the signed-in customer
(``chat.engine.toolcalls``), and reports everything to a ``TurnSink``: each model call, each
finished exchange (an assistant message plus, if it called tools, the user message with all their
results — never one without the other, except when the turn pauses for a confirmation), live
reply text and tool progress.

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
deadline passing before a call or during a stream ("deadline"), and a
``chat.engine.client.ModelError`` from the client or in the stream (its ``kind``: "busy",
"unavailable", "rejected"; the reply is the exception's ``customer_message``). A failed turn's
``reply`` is always one of the fixed, customer-safe texts below; an answered or paused turn's
``reply`` is the visible text of its assistant messages, the same text that went to
``TurnSink.text_delta``. Streamed reply text cannot be recalled: when a streamed message ends
abnormally, the failed outcome tells the caller to replace what it showed. Whatever happens, the
stored history stays valid: it ends with a user message or with a complete exchange (or, when
paused, with the assistant message whose results ``chat.engine.toolcalls.complete_pending``
builds).
"""

import copy
import logging
import time
from collections.abc import Callable
from typing import Any

from chat.engine.budget import within_budget
from chat.engine.client import ModelClient, ModelError
from chat.engine.history import appended_violations, has_tool_blocks, repair, tool_use_ids
from chat.engine.stream import ANSWER_STOPS, DeadlinePassed, StreamedReply, read_stream
from chat.engine.toolcalls import ToolCallRunner
from chat.engine.types import (
    ModelCallRecord,
    PendingConfirmation,
    Tools,
    TurnConfig,
    TurnResult,
    TurnSink,
)

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
        self.runner = ToolCallRunner(tools, sink)
        self.emitter = _Emitter(sink)
        self.deadline = clock() + config.deadline_seconds

    def run(self, history: list[dict[str, Any]], earlier_orders: list[str] | None) -> TurnResult:
        # Repaired and cut once; each step below appends to it and checks only what it appends.
        messages = within_budget(repair(history), self.config.context_budget_tokens, earlier_orders)
        used_ids = {i for message in messages for i in tool_use_ids(message)}
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
                return self._failed(error.kind, error.customer_message, None)
            except DeadlinePassed:
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
                step = [reply.message, answer]
                problems = appended_violations(messages, step, used_ids)
                if problems:
                    # The model's own message broke a rule (e.g. a reused toolUseId): send a
                    # valid history anyway.
                    logger.error("A step breaks Converse rules: %s", problems)
                    messages = repair([*messages, *step])
                else:
                    messages += step
                used_ids.update(tool_use_ids(reply.message))
                continue

            if tool_uses:
                # Calls the model did not finish (or mean) would stay unanswered in the history.
                logger.warning(
                    "Dropping %d toolUse block(s) at stopReason %s", len(tool_uses), stop_reason
                )
                reply.message["content"] = [
                    b for b in reply.message["content"] if "toolUse" not in b
                ]
            if stop_reason in ANSWER_STOPS or stop_reason == "tool_use":
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
        # The request shares the history's messages and blocks: neither the client nor the
        # loop changes them, so nothing is copied per call.
        config = self.config
        caching = config.prompt_caching
        if caching:
            last = messages[-1]
            messages = [*messages[:-1], {**last, "content": [*last["content"], _CACHE_POINT]}]
        request: dict[str, Any] = {"modelId": config.model_id, "messages": messages}
        texts = [t for t in (config.system_prompt, config.customer_context) if t.strip()]
        if texts and caching:
            request["system"] = [
                {"text": texts[0]},
                _CACHE_POINT,
                *({"text": t} for t in texts[1:]),
            ]
        elif texts:
            request["system"] = [{"text": "\n\n".join(texts)}]
        tool_specs = list(self.tools.specs) or _stand_in_specs(messages)
        if tool_specs:
            if caching:
                tool_specs.append(_CACHE_POINT)
            request["toolConfig"] = {"tools": tool_specs, "toolChoice": {"auto": {}}}
        if config.inference_config:
            request["inferenceConfig"] = copy.deepcopy(config.inference_config)
        if config.additional_model_request_fields:
            request["additionalModelRequestFields"] = copy.deepcopy(
                config.additional_model_request_fields
            )
        if config.guardrail is not None:
            identifier, version = config.guardrail
            request["guardrailConfig"] = {
                "guardrailIdentifier": identifier,
                "guardrailVersion": version,
                # Sync mode checks each chunk before it is sent, so blocked text never streams.
                "streamProcessingMode": "sync",
            }
        return request

    def _call(self, messages: list[dict[str, Any]]) -> StreamedReply:
        request = self._request(messages)
        self.emitter.new_message()
        started = self.clock()
        model_id = self.config.model_id

        def elapsed_ms() -> int:
            return max(0, int((self.clock() - started) * 1000))

        try:
            reply = read_stream(
                self.client.converse_stream(**request),
                emit=self.emitter.emit,
                expired=lambda: self.clock() >= self.deadline,
            )
        except ModelError as error:
            self.sink.model_called(_usage_record(model_id, None, {}, elapsed_ms(), error.kind))
            raise
        except DeadlinePassed:
            self.sink.model_called(_usage_record(model_id, None, {}, elapsed_ms(), "deadline"))
            raise
        latency = reply.latency_ms if reply.latency_ms is not None else elapsed_ms()
        record = _usage_record(model_id, reply.stop_reason, reply.usage, latency)
        self.sink.model_called(record)
        return reply


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
    earlier_orders: list[str] | None = None,
) -> TurnResult:
    """Run one customer turn; ``history`` ends with the new user message (text or toolResults).

    ``history`` is the whole conversation, or (with ``earlier_orders``, the orders discussed in
    what was left out) only its latest part: see ``chat.engine.budget.within_budget``.
    """
    return _Turn(client, tools, config, sink, clock).run(history, earlier_orders)
