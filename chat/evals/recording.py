"""Recording model calls, and playing them back offline.

A recording file (JSON) holds, per case, every model call in order: the Converse request the
engine sent and what came back (the stream's events, or the error). ``RecordingModel`` writes
one while a real client answers; ``ReplayModel`` answers from one, offline, after checking that
the engine sends exactly the recorded request — if not, the case stops and the mismatch is
named (see ``chat.evals.differences``), because a changed prompt or tool makes the recorded
answers meaningless.

Cases drafted from a stored conversation carry that conversation's responses in their own
``recorded`` list (assistant messages, no requests: the original requests were not stored);
``ReplayModel`` plays those too and then checks only the order of calls.
"""

import base64
import copy
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema.validators import Draft202012Validator

from chat.evals import engine
from chat.evals.differences import request_difference

FORMAT = "anycompany-evals-recording/1"
_BYTES = "$base64"


class RecordingError(Exception):
    """A recording file or a case's ``recorded`` list is unusable; ``str()`` says why."""


class ReplayMismatch(engine.ModelRequestRejected):
    """The engine sent a request the recording does not have; the turn fails like a rejection."""


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON (bytes, e.g. redacted reasoning, as base64)."""
    if isinstance(value, bytes):
        return {_BYTES: base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def from_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_BYTES}:
            return base64.b64decode(value[_BYTES])
        return {k: from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    return value


@dataclass
class Exchange:
    """One model call: the request (None when unknown) and the events or error it produced."""

    request: dict[str, Any] | None
    events: list[dict[str, Any]]
    error: dict[str, str] | None = None  # {"kind": "busy"|"unavailable"|"rejected", "message"}

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"request": self.request, "events": self.events}
        if self.error is not None:
            data["error"] = self.error
        return data


# --- Recording -------------------------------------------------------------------------------


class RecordingModel:
    """A ``ModelClient`` that passes every call to ``inner`` and keeps a copy of both sides."""

    def __init__(self, inner: engine.ModelClient) -> None:
        self.inner = inner
        self.exchanges: list[Exchange] = []

    def converse_stream(self, **kwargs: Any) -> dict[str, Any]:
        exchange = Exchange(request=jsonable(kwargs), events=[])
        self.exchanges.append(exchange)
        try:
            response = self.inner.converse_stream(**kwargs)
        except engine.ModelError as error:
            exchange.error = {"kind": error.kind, "message": str(error)}
            raise
        return {"stream": self._tee(response.get("stream") or (), exchange)}

    @staticmethod
    def _tee(stream: Iterable[dict[str, Any]], exchange: Exchange) -> Iterator[dict[str, Any]]:
        try:
            for event in stream:
                exchange.events.append(jsonable(event))
                yield event
        except engine.ModelError as error:
            exchange.error = {"kind": error.kind, "message": str(error)}
            raise
        finally:
            close = getattr(stream, "close", None)
            if callable(close):
                close()


def recording_write(path: Path, *, model: str, cases: dict[str, list[Exchange]]) -> None:
    """Writes a recording file (stable key order, so re-recording shows a readable git diff)."""
    data = {
        "format": FORMAT,
        "model": model,
        "cases": {name: [e.to_json() for e in exchanges] for name, exchanges in cases.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


@dataclass(frozen=True)
class Recording:
    model: str
    cases: dict[str, list[Exchange]]


def recording_read(path: Path) -> Recording:
    """Reads a recording file. Raises ``RecordingError`` saying what is wrong with it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RecordingError(f"{path}: cannot read the recording ({error.strerror})") from None
    except ValueError as error:
        raise RecordingError(f"{path}: not a recording (invalid JSON: {error})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RecordingError(f"{path}: not a recording made by `evaluate --record` ({FORMAT})")
    cases: dict[str, list[Exchange]] = {}
    for name, exchanges in (data.get("cases") or {}).items():
        cases[name] = [
            Exchange(
                request=e.get("request"),
                events=list(e.get("events") or []),
                error=e.get("error"),
            )
            for e in exchanges
        ]
    return Recording(model=str(data.get("model", "")), cases=cases)


# --- Responses stored with a case (drafts) ----------------------------------------------------

_RESPONSE = Draft202012Validator(
    {
        "oneOf": [
            {
                "type": "object",
                "required": ["stop_reason", "content"],
                "additionalProperties": False,
                "properties": {
                    "stop_reason": {"type": "string"},
                    "content": {"type": "array", "items": {"type": "object"}},
                    "usage": {"type": "object"},
                    "latency_ms": {"type": "integer", "minimum": 0},
                },
            },
            {
                "type": "object",
                "required": ["error"],
                "additionalProperties": False,
                "properties": {"error": {"enum": ["busy", "unavailable", "rejected"]}},
            },
        ]
    }
)


def message_events(
    content: list[dict[str, Any]],
    stop_reason: str,
    usage: dict[str, Any] | None = None,
    latency_ms: int = 0,
) -> list[dict[str, Any]]:
    """The ConverseStream events that deliver a stored assistant message."""
    events: list[dict[str, Any]] = [{"messageStart": {"role": "assistant"}}]
    for index, block in enumerate(content):
        deltas: list[dict[str, Any]] = []
        if "text" in block:
            deltas.append({"text": block["text"]})
        elif "toolUse" in block:
            use = block["toolUse"]
            start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
            events.append({"contentBlockStart": {"contentBlockIndex": index, "start": start}})
            deltas.append({"toolUse": {"input": json.dumps(use.get("input") or {})}})
        elif "reasoningContent" in block:
            reasoning = block["reasoningContent"]
            if "redactedContent" in reasoning:
                deltas.append(
                    {"reasoningContent": {"redactedContent": reasoning["redactedContent"]}}
                )
            else:
                text = reasoning.get("reasoningText") or {}
                deltas.append({"reasoningContent": {"text": text.get("text", "")}})
                if text.get("signature"):
                    deltas.append({"reasoningContent": {"signature": text["signature"]}})
        events.extend(
            {"contentBlockDelta": {"contentBlockIndex": index, "delta": delta}} for delta in deltas
        )
        events.append({"contentBlockStop": {"contentBlockIndex": index}})
    events.append({"messageStop": {"stopReason": stop_reason}})
    metadata = {"usage": usage or {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0}}
    events.append({"metadata": {**metadata, "metrics": {"latencyMs": latency_ms}}})
    return events


def stored_exchanges(recorded: tuple[dict[str, Any], ...], *, case: str) -> list[Exchange]:
    """The ``recorded`` list of a case as exchanges. Raises ``RecordingError`` naming a bad item."""
    exchanges = []
    for index, item in enumerate(recorded):
        error = next(iter(_RESPONSE.iter_errors(item)), None)
        if error is not None:
            raise RecordingError(
                f"case {case}: recorded[{index}] is neither a response (stop_reason, content) "
                f"nor an error (error: busy, unavailable or rejected): {error.message}"
            )
        if "error" in item:
            kind = item["error"]
            exchanges.append(Exchange(None, [], {"kind": kind, "message": f"recorded {kind}"}))
        else:
            events = message_events(
                item["content"], item["stop_reason"], item.get("usage"), item.get("latency_ms", 0)
            )
            exchanges.append(Exchange(None, events))
    return exchanges


# --- Replaying -------------------------------------------------------------------------------


class ReplayModel:
    """A ``ModelClient`` answering from recorded exchanges; ``mismatch`` says why it stopped."""

    def __init__(self, exchanges: list[Exchange]) -> None:
        self.exchanges = exchanges
        self.used = 0
        self.mismatch: str | None = None

    def _stop(self, reason: str) -> ReplayMismatch:
        self.mismatch = self.mismatch or reason
        return ReplayMismatch(self.mismatch)

    def converse_stream(self, **kwargs: Any) -> dict[str, Any]:
        exchange = self._next(kwargs)
        return {"stream": self._play(exchange)}

    def _next(self, kwargs: dict[str, Any]) -> Exchange:
        if self.mismatch is not None:
            raise ReplayMismatch(self.mismatch)
        number = self.used + 1
        if self.used >= len(self.exchanges):
            raise self._stop(
                f"model call {number}: the recording has only {len(self.exchanges)} call(s) "
                "for this case"
            )
        exchange = self.exchanges[self.used]
        self.used += 1
        if exchange.request is not None:
            difference = request_difference(exchange.request, jsonable(kwargs))
            if difference is not None:
                raise self._stop(
                    f"model call {number}: the request differs from the recording in {difference}"
                )
        if exchange.error is not None and not exchange.events:
            raise engine.model_error(exchange.error["kind"], exchange.error.get("message", ""))
        return exchange

    @staticmethod
    def _play(exchange: Exchange) -> Iterator[dict[str, Any]]:
        for event in exchange.events:
            yield from_jsonable(copy.deepcopy(event))
        if exchange.error is not None:
            raise engine.model_error(exchange.error["kind"], exchange.error.get("message", ""))

    def leftover(self) -> str | None:
        """Why a finished case did not use every recorded call, or None."""
        if self.mismatch is None and self.used < len(self.exchanges):
            return (
                f"the recording has {len(self.exchanges) - self.used} more model call(s) than "
                f"the engine made ({self.used} of {len(self.exchanges)})"
            )
        return None


class PromptSwap:
    """A ``ModelClient`` wrapper that tells the model ``prompt`` instead of the shipped prompt.

    The engine writes the shipped prompt followed by the signed-in customer's line; the wrapper
    replaces only the shipped part, so the customer's line stays the engine's.
    """

    def __init__(self, inner: engine.ModelClient, prompt: str) -> None:
        self.inner = inner
        self.prompt = prompt
        self.shipped = engine.shipped_prompt()

    def _swapped(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        swapped = copy.deepcopy(kwargs)
        system = swapped.get("system") or []
        text = system[0].get("text") if system and isinstance(system[0], dict) else None
        if not isinstance(text, str) or not text.startswith(self.shipped):
            raise engine.ModelRequestRejected("the engine's system prompt has an unknown shape")
        system[0]["text"] = self.prompt + text[len(self.shipped) :]
        return swapped

    def converse_stream(self, **kwargs: Any) -> dict[str, Any]:
        return self.inner.converse_stream(**self._swapped(kwargs))
