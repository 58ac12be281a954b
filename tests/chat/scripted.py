"""A scripted Converse model, a fake clock, a recording sink and small tools for the pure loop.

``ScriptedModel`` plays prepared responses in order through ``converse_stream`` (responses are
turned into stream events, text cut into small chunks) and records every request. It refuses any
request whose history Converse would reject.
"""

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from chat.engine.client import ModelError
from chat.engine.history import violations
from chat.engine.types import ModelCallRecord, ToolOutcome, TurnConfig

Step = dict[str, Any] | list[Any] | ModelError


def text_response(
    text: str,
    stop_reason: str = "end_turn",
    *,
    usage: dict[str, int] | None = None,
    latency_ms: int | None = 12,
) -> dict[str, Any]:
    return response([{"text": text}], stop_reason, usage=usage, latency_ms=latency_ms)


def tool_call(tool_use_id: str, name: str, tool_input: Any) -> dict[str, Any]:
    return {"toolUse": {"toolUseId": tool_use_id, "name": name, "input": tool_input}}


def tool_response(
    *calls: dict[str, Any], text: str = "<thinking>I need a tool.</thinking>"
) -> dict:
    return response([{"text": text}, *calls], "tool_use")


def response(
    content: list[dict[str, Any]],
    stop_reason: str,
    *,
    usage: dict[str, int] | None = None,
    latency_ms: int | None = 12,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": usage or {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
    }
    if latency_ms is not None:
        body["metrics"] = {"latencyMs": latency_ms}
    return body


def stream_events(body: dict[str, Any], chunk: int = 3) -> list[dict[str, Any]]:
    """The ConverseStream events that deliver ``body``, text and tool input cut into chunks."""
    events: list[dict[str, Any]] = [{"messageStart": {"role": "assistant"}}]
    for index, block in enumerate(body["output"]["message"]["content"]):
        if "text" in block:
            text = block["text"]
            for start in range(0, len(text), chunk):
                events.append(
                    {
                        "contentBlockDelta": {
                            "delta": {"text": text[start : start + chunk]},
                            "contentBlockIndex": index,
                        }
                    }
                )
        elif "toolUse" in block:
            use = block["toolUse"]
            events.append(
                {
                    "contentBlockStart": {
                        "start": {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}},
                        "contentBlockIndex": index,
                    }
                }
            )
            raw = use["input"] if isinstance(use["input"], str) else json.dumps(use["input"])
            for start in range(0, len(raw), chunk):
                events.append(
                    {
                        "contentBlockDelta": {
                            "delta": {"toolUse": {"input": raw[start : start + chunk]}},
                            "contentBlockIndex": index,
                        }
                    }
                )
        events.append({"contentBlockStop": {"contentBlockIndex": index}})
    events.append({"messageStop": {"stopReason": body["stopReason"]}})
    metadata: dict[str, Any] = {"usage": body["usage"]}
    if "metrics" in body:
        metadata["metrics"] = body["metrics"]
    events.append({"metadata": metadata})
    return events


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedModel:
    """Plays ``steps`` in order: a response, a list of raw stream events, or an error to raise."""

    def __init__(
        self,
        *steps: Step,
        clock: FakeClock | None = None,
        seconds_per_call: float = 0.0,
        seconds_per_event: float = 0.0,
        chunk: int = 3,
    ) -> None:
        self.steps = list(steps)
        self.requests: list[dict[str, Any]] = []
        self.clock = clock
        self.seconds_per_call = seconds_per_call
        self.seconds_per_event = seconds_per_event
        self.chunk = chunk
        self.streams_closed = 0

    def _next(self, kwargs: dict[str, Any]) -> Step:
        problems = violations(kwargs.get("messages"))
        assert problems == [], problems
        self.requests.append(copy.deepcopy(kwargs))
        assert self.steps, "the model was called more often than scripted"
        if self.clock is not None:
            self.clock.now += self.seconds_per_call
        step = self.steps.pop(0)
        if isinstance(step, ModelError):
            raise step
        return step

    def converse_stream(self, **kwargs: Any) -> dict[str, Any]:
        step = self._next(kwargs)
        assert not isinstance(step, ModelError)
        events = step if isinstance(step, list) else stream_events(step, self.chunk)
        return {"stream": _Stream(copy.deepcopy(events), self)}


class _Stream:
    def __init__(self, events: list[Any], model: ScriptedModel) -> None:
        self.events = events
        self.model = model

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for event in self.events:
            if isinstance(event, ModelError):
                raise event
            yield event
            if self.model.clock is not None:
                self.model.clock.now += self.model.seconds_per_event

    def close(self) -> None:
        self.model.streams_closed += 1


@dataclass
class RecordingSink:
    calls: list[ModelCallRecord] = field(default_factory=list)
    appended: list[list[dict[str, Any]]] = field(default_factory=list)
    deltas: list[str] = field(default_factory=list)
    started: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)

    def model_called(self, record: ModelCallRecord) -> None:
        self.calls.append(record)

    def messages_appended(self, messages: list[dict[str, Any]]) -> None:
        self.appended.append(copy.deepcopy(messages))

    def text_delta(self, text: str) -> None:
        self.deltas.append(text)

    def tool_started(self, name: str, tool_input: dict[str, Any], description: str) -> None:
        self.started.append((name, tool_input, description))

    @property
    def stored(self) -> list[dict[str, Any]]:
        return [message for batch in self.appended for message in batch]

    @property
    def streamed(self) -> str:
        return "".join(self.deltas)


def _spec(name: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "toolSpec": {
            "name": name,
            "description": f"The {name} tool.",
            "inputSchema": {
                "json": {"type": "object", "properties": properties, "required": required}
            },
        }
    }


ORDER_ID = {"order_id": {"type": "string"}}


class FakeTools:
    """Alice's orders; ``cancel_order`` needs a confirmation; ``explode`` fails unexpectedly."""

    def __init__(self, clock: FakeClock | None = None, seconds_per_run: float = 0.0) -> None:
        self.clock = clock
        self.seconds_per_run = seconds_per_run
        self.specs = [
            _spec("get_order_by_id", ORDER_ID, ["order_id"]),
            _spec("get_customer_orders", {}, []),
            _spec("cancel_order", ORDER_ID, ["order_id"]),
            _spec("explode", {}, []),
        ]
        self.orders = {
            "32057": {"id": "32057", "product": "Backpack", "status": "Shipped"},
            "37129": {"id": "37129", "product": "Sunglasses", "status": "Processing"},
        }
        self.ran: list[tuple[str, dict[str, Any]]] = []

    def needs_confirmation(self, name: str, tool_input: dict[str, Any]) -> bool:
        return name == "cancel_order"

    def status_text(self, name: str, tool_input: dict[str, Any]) -> str:
        return f"Running {name}…"

    def run(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome:
        self.ran.append((name, tool_input))
        if self.clock is not None:
            self.clock.now += self.seconds_per_run
        if name == "explode":
            raise RuntimeError("password=hunter2 at db.internal:5432")
        if name == "get_customer_orders":
            return ToolOutcome("success", list(self.orders.values()))
        order = self.orders.get(tool_input["order_id"])
        if order is None:
            return ToolOutcome("error", "Order not found.")
        if name == "cancel_order":
            order["status"] = "Cancelled"
        return ToolOutcome("success", order)


def config(**overrides: Any) -> TurnConfig:
    values: dict[str, Any] = {
        "model_id": "test-model",
        "system_prompt": "You are a support assistant.",
        "inference_config": {"temperature": 0, "maxTokens": 4096},
        "additional_model_request_fields": {"top_k": 10},
        "max_model_calls": 5,
        "deadline_seconds": 60.0,
    }
    values.update(overrides)
    return TurnConfig(**values)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"text": text}]}
