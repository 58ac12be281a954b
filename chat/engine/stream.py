"""One ConverseStream response read into the assistant message it delivers.

Reply text is released as it arrives (``chat.engine.replies.ReplyStream``), text blocks, tool
calls (their input streamed as JSON text) and reasoning blocks are assembled by index, and the
message is normalised the way it will be stored and sent back: no blank text, every tool input
an object. Error events in the stream raise the ``ModelError`` they stand for.
"""

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from chat.engine.client import stream_error
from chat.engine.history import parse_tool_input
from chat.engine.replies import ReplyStream

ANSWER_STOPS = frozenset({"end_turn", "stop_sequence"})


class DeadlinePassed(Exception):
    """The turn's deadline passed while the stream was still delivering."""


@dataclass
class StreamedReply:
    message: dict[str, Any]  # as stored and sent back
    tool_uses: list[dict[str, Any]]  # as the model sent them (an input may still be a string)
    stop_reason: str | None
    visible: str  # the reply text released while reading
    usage: dict[str, Any]
    latency_ms: int | None


def read_stream(
    response: dict[str, Any], *, emit: Callable[[str], None], expired: Callable[[], bool]
) -> StreamedReply:
    """Reads ``response["stream"]`` to its end, passing newly visible reply text to ``emit``.

    The stream is closed however reading ends, so its connection goes back to the pool.

    Raises: ``DeadlinePassed`` as soon as ``expired()`` says so between events; the
    ``chat.engine.client.ModelError`` of an error event (or raised by the client's stream).
    """
    events: Iterable[dict[str, Any]] = response.get("stream") or ()
    blocks: dict[int, dict[str, Any]] = {}
    replies = ReplyStream()
    visible: list[str] = []
    last_text_index: int | None = None
    stop_reason: str | None = None
    usage: dict[str, Any] = {}
    latency: int | None = None

    def show(text: str) -> None:
        if text:
            visible.append(text)
            emit(text)

    try:
        for event in events:
            if expired():
                raise DeadlinePassed
            error = stream_error(event)
            if error is not None:
                raise error
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
                    if last_text_index is not None and last_text_index != index:
                        show(replies.feed("\n"))
                    last_text_index = index
                    show(replies.feed(delta["text"]))
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
    if stop_reason in ANSWER_STOPS or stop_reason in ("tool_use", "max_tokens"):
        # In a message that calls a tool, untagged text is the model narrating its way there.
        calls_tool = any("toolUse" in b for b in message["content"])
        show(replies.finish(include_untagged=not calls_tool and stop_reason != "tool_use"))
    return StreamedReply(
        message, _tool_uses(content), stop_reason, "".join(visible), usage, latency
    )


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
