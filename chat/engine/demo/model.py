"""An offline stand-in for Claude, so the app runs end to end without AWS.

``DemoModel`` speaks the Converse streaming shape (``converse_stream`` with boto3's keyword names)
and decides its answer from the request's messages alone (``chat.engine.demo.decide``). It calls
the real tools through the same loop as the real model, so the app's rules (customer scoping, the
confirmation before a cancel) apply to it unchanged.

Like Claude with the app's system prompt, it thinks inside ``<thinking>`` and answers inside
``<reply>``. Every reply starts with ``[Demo model]`` so nobody mistakes it for the real
assistant. It rejects a history that breaks Converse's rules (``chat.engine.history.violations``),
as Bedrock would, so tests played against it catch history bugs too.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

from chat.engine.client import ModelRequestRejected
from chat.engine.demo.decide import Decision, decide
from chat.engine.history import violations

PREFIX = "[Demo model] "
MODEL_ID = "demo"


class DemoModel:
    """A deterministic ``chat.engine.client.ModelClient`` for local use, demos and tests.

    ``delay_seconds`` pauses before each streamed chunk, to watch streaming locally.
    """

    def __init__(self, *, delay_seconds: float = 0.0, chunk_chars: int = 12) -> None:
        self.delay_seconds = delay_seconds
        self.chunk_chars = max(1, chunk_chars)

    def converse_stream(self, **kwargs: Any) -> dict[str, Any]:
        # Decide before returning, as Bedrock validates the request before the stream starts.
        content, stop_reason = self._respond(kwargs)
        return {"stream": self._events(content, stop_reason, self._usage(kwargs, content))}

    def _events(
        self, content: list[dict[str, Any]], stop_reason: str, usage: dict[str, int]
    ) -> Iterator[dict[str, Any]]:
        started = time.monotonic()
        yield {"messageStart": {"role": "assistant"}}
        for index, block in enumerate(content):
            if "text" in block:
                for chunk in _chunks(block["text"], self.chunk_chars):
                    self._pause()
                    yield {
                        "contentBlockDelta": {"delta": {"text": chunk}, "contentBlockIndex": index}
                    }
            else:
                tool_use = block["toolUse"]
                start = {"toolUseId": tool_use["toolUseId"], "name": tool_use["name"]}
                yield {
                    "contentBlockStart": {"start": {"toolUse": start}, "contentBlockIndex": index}
                }
                raw = json.dumps(tool_use["input"])
                for chunk in _chunks(raw, max(1, len(raw) // 2)):
                    self._pause()
                    yield {
                        "contentBlockDelta": {
                            "delta": {"toolUse": {"input": chunk}},
                            "contentBlockIndex": index,
                        }
                    }
            yield {"contentBlockStop": {"contentBlockIndex": index}}
        yield {"messageStop": {"stopReason": stop_reason}}
        latency = int((time.monotonic() - started) * 1000)
        yield {"metadata": {"usage": usage, "metrics": {"latencyMs": latency}}}

    def _pause(self) -> None:
        if self.delay_seconds:
            time.sleep(self.delay_seconds)

    @staticmethod
    def _usage(request: dict[str, Any], content: list[dict[str, Any]]) -> dict[str, int]:
        # Roughly four characters a token, like English text for Claude.
        size_in = len(json.dumps([request.get("system"), request.get("messages")], default=str))
        size_out = len(json.dumps(content))
        tokens_in, tokens_out = max(1, size_in // 4), max(1, size_out // 4)
        return {
            "inputTokens": tokens_in,
            "outputTokens": tokens_out,
            "totalTokens": tokens_in + tokens_out,
        }

    def _respond(self, request: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        messages = request.get("messages") or []
        problems = violations(messages)
        if problems:
            raise ModelRequestRejected(f"Invalid conversation history: {'; '.join(problems)}")
        offered = {
            spec["toolSpec"]["name"]
            for spec in (request.get("toolConfig") or {}).get("tools", [])
            if isinstance(spec, dict) and "toolSpec" in spec
        }
        decision = decide(messages)
        if decision.tool and decision.tool not in offered:
            decision = Decision(
                thinking=f"I would use {decision.tool}, but it is not available.",
                reply="Sorry, I can't look that up right now.",
            )
        thinking = f"<thinking>{decision.thinking} Goal: {decision.goal}."
        if decision.offer:
            thinking += f" Offer: {decision.offer}."
        thinking += "</thinking>"
        if decision.tool:
            tool_use = {
                "toolUseId": _tool_use_id(messages),
                "name": decision.tool,
                "input": decision.tool_input,
            }
            return [{"text": thinking}, {"toolUse": tool_use}], "tool_use"
        return [{"text": f"{thinking}\n<reply>{PREFIX}{decision.reply}</reply>"}], "end_turn"


def _tool_use_id(messages: list[dict[str, Any]]) -> str:
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()
    return f"tooluse_demo_{len(messages)}_{digest[:12]}"


def _chunks(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]
