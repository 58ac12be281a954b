"""What the benchmark's Bedrock stand-in answers: a one-tool turn, decided from the request alone.

- The last message is the customer's text naming "order NNNNN": a short thinking text and a
  ``toolUse`` of ``get_order_by_id`` for that order.
- The last message holds tool results: the answer, ``<reply>Order …</reply>``, built from the
  tool's JSON result, so a correct reply proves the tool really read the customer's order.
- Any other customer text: a plain ``<reply>`` answer without a tool (small talk).
Every customer message carries a ``[bench:TOKEN]`` marker naming its turn.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from tests.chat.bedrock_standin import event_frame

TOKEN = re.compile(r"\[bench:([0-9a-f]{8,32})\]")
ORDER = re.compile(r"\border (\d{3,10})\b", re.IGNORECASE)
TOOL_NAME = "get_order_by_id"


class ScriptError(ValueError):
    """A request the script cannot answer; sent back as a ValidationException."""


@dataclass(frozen=True)
class Plan:
    token: str
    content: list[dict[str, Any]]  # the assistant message, Converse-shaped (toolUse input a dict)
    stop_reason: str
    tool_ok: bool | None = None


def marker(token: str) -> str:
    return f"[bench:{token}]"


def question_text(order_id: str, token: str) -> str:
    return f"Hi, what is the status of my order {order_id}? {marker(token)}"


def small_talk_text(token: str) -> str:
    return f"Thanks, that helps. {marker(token)}"


def answer_text(order: dict[str, Any], token: str) -> str:
    """The visible reply to ``question_text``, given the order as the tool returns it."""
    return (
        f"Order {order['id']} ({order['product']}, quantity {order['quantity']}) "
        f"is {order['status']}. {marker(token)}"
    )


def not_found_text(order_id: str, token: str) -> str:
    return f"I could not find order {order_id} on your account. {marker(token)}"


def small_talk_answer(token: str) -> str:
    return f"You're welcome! Anything else I can help with? {marker(token)}"


def _texts(message: dict[str, Any]) -> str:
    return "\n".join(
        block["text"]
        for block in message.get("content") or []
        if isinstance(block, dict) and isinstance(block.get("text"), str)
    )


def plan(body: dict[str, Any]) -> Plan:
    """What the model answers to a Converse request body.

    Raises: ``ScriptError`` when the request has no customer message with a bench marker.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ScriptError("The request has no messages.")
    # The current turn's customer text: the last user message with text (tool results have none).
    question = next(
        (text for m in reversed(messages) if m.get("role") == "user" and (text := _texts(m))),
        "",
    )
    found = TOKEN.findall(question)
    if not found:
        raise ScriptError("No [bench:TOKEN] marker in the last customer message.")
    token = found[-1]
    last = messages[-1]
    results = [
        block["toolResult"]
        for block in last.get("content") or []
        if isinstance(block, dict) and "toolResult" in block
    ]
    if last.get("role") == "user" and results:
        return _answer(token, question, results[0])
    order = ORDER.search(question)
    if order is None:
        return Plan(token, [{"text": _reply(small_talk_answer(token))}], "end_turn")
    return Plan(
        token,
        [
            {"text": f"<thinking>The customer asks about order {order.group(1)}.</thinking>"},
            {
                "toolUse": {
                    "toolUseId": f"tooluse_{uuid.uuid4().hex[:22]}",
                    "name": TOOL_NAME,
                    "input": {"order_id": order.group(1)},
                }
            },
        ],
        "tool_use",
    )


def _reply(text: str) -> str:
    return f"<thinking>I have what I need.</thinking><reply>{text}</reply>"


def _answer(token: str, question: str, result: dict[str, Any]) -> Plan:
    asked = ORDER.search(question)
    order_id = asked.group(1) if asked else ""
    payload = next(
        (
            block["json"]
            for block in result.get("content") or []
            if isinstance(block, dict) and isinstance(block.get("json"), dict)
        ),
        None,
    )
    ok = result.get("status", "success") == "success" and payload is not None
    if ok and payload is not None and str(payload.get("id")) == order_id:
        text = answer_text(payload, token)
    else:
        ok = False
        text = not_found_text(order_id, token)
    return Plan(token, [{"text": _reply(text)}], "end_turn", tool_ok=ok)


def split_text(text: str, chunks: int) -> list[str]:
    """``text`` in ``chunks`` pieces of about the same size (fewer when the text is shorter)."""
    count = max(1, min(chunks, len(text)))
    size, extra = divmod(len(text), count)
    pieces, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _usage(body_bytes: int, plan: Plan) -> dict[str, Any]:
    output = sum(len(json.dumps(block)) for block in plan.content) // 4
    return {
        "usage": {
            "inputTokens": body_bytes // 4,
            "outputTokens": output,
            "totalTokens": body_bytes // 4 + output,
        },
        "metrics": {"latencyMs": 1},
    }


def stream_frames(plan: Plan, *, chunks: int, body_bytes: int) -> list[bytes]:
    """The ``ConverseStream`` events of ``plan`` as event-stream frames."""
    frames = [event_frame("messageStart", {"role": "assistant"})]
    for index, block in enumerate(plan.content):
        if "text" in block:
            pieces = split_text(block["text"], chunks) if plan.stop_reason == "end_turn" else None
            for piece in pieces or [block["text"]]:
                frames.append(
                    event_frame(
                        "contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}}
                    )
                )
        else:
            use = block["toolUse"]
            frames.append(
                event_frame(
                    "contentBlockStart",
                    {
                        "contentBlockIndex": index,
                        "start": {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}},
                    },
                )
            )
            frames.append(
                event_frame(
                    "contentBlockDelta",
                    {
                        "contentBlockIndex": index,
                        "delta": {"toolUse": {"input": json.dumps(use["input"])}},
                    },
                )
            )
        frames.append(event_frame("contentBlockStop", {"contentBlockIndex": index}))
    frames.append(event_frame("messageStop", {"stopReason": plan.stop_reason}))
    frames.append(event_frame("metadata", _usage(body_bytes, plan)))
    return frames


def converse_body(plan: Plan, *, body_bytes: int) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": plan.content}},
        "stopReason": plan.stop_reason,
        **_usage(body_bytes, plan),
    }
