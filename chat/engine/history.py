"""Conversation histories that Bedrock's Converse API always accepts.

A stored history can break Converse's rules in many small ways: a turn that failed between the
model's tool call and its results, a customer who sent two messages while the assistant was busy,
a blank text block, a result whose call is gone. ``repair`` returns a new history that obeys
every rule ``violations`` checks; ``violations`` is what the tests use to prove it. The tool loop
repairs what it loads once, then checks only what each step appends (``appended_violations``),
so a call costs nothing per message already in the history.

The rules:

1. There is at least one message; each is ``{"role": "user"|"assistant", "content": [blocks]}``
   with a non-empty content list and no other keys.
2. The first and the last message are the user's, and roles alternate.
3. No text block is blank, and no message holds only ``cachePoint`` blocks.
4. ``toolUse`` blocks appear only in assistant messages, with a string ``toolUseId`` unique in the
   conversation, a string ``name`` and an object ``input``. ``toolResult`` blocks appear only in
   user messages.
5. Every ``toolUse`` is answered by exactly one ``toolResult`` with the same ``toolUseId`` in the
   very next message, every ``toolResult`` answers a ``toolUse`` of the message just before it,
   and the results come before any other block of their message.

``repair`` keeps every non-blank text block, and ``repair(repair(h)) == repair(h)``. It never
changes its input; the blocks it keeps as they are are shared with the input, not copied.
"""

import json
from typing import Any

PLACEHOLDER_TEXT = "(no message)"
MISSING_RESULT_TEXT = "The tool call did not complete."
EMPTY_RESULT_TEXT = "The tool returned no content."

Message = dict[str, Any]
Block = dict[str, Any]

_ROLES = ("user", "assistant")


def placeholder(role: str) -> Message:
    return {"role": role, "content": [{"text": PLACEHOLDER_TEXT}]}


def missing_result(tool_use_id: str) -> Block:
    return {
        "toolResult": {
            "toolUseId": tool_use_id,
            "content": [{"text": MISSING_RESULT_TEXT}],
            "status": "error",
        }
    }


def parse_tool_input(raw: Any) -> dict[str, Any] | None:
    """A toolUse input as an object; stored histories sometimes hold it as a JSON string."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def tool_use_ids(message: Message) -> list[str]:
    return [
        block["toolUse"]["toolUseId"]
        for block in message.get("content") or []
        if isinstance(block, dict) and isinstance(block.get("toolUse"), dict)
    ]


def has_tool_blocks(messages: list[Message]) -> bool:
    return any(
        isinstance(block, dict) and ("toolUse" in block or "toolResult" in block)
        for message in messages
        for block in message.get("content") or []
    )


def _is_blank_text(block: Block) -> bool:
    return "text" in block and (not isinstance(block["text"], str) or not block["text"].strip())


def _clean_block(block: Any, role: str, seen_tool_use_ids: set[str]) -> Block | None:
    if not isinstance(block, dict) or not block:
        return None
    if _is_blank_text(block):
        return None
    if "cachePoint" in block:
        # Cache points are request decorations added per call; stored ones would pile up
        # past Converse's limit of four.
        return None
    if "toolUse" in block:
        tool_use = block["toolUse"]
        if role != "assistant" or not isinstance(tool_use, dict):
            return None
        tool_use_id, name = tool_use.get("toolUseId"), tool_use.get("name")
        if not isinstance(tool_use_id, str) or not tool_use_id or not isinstance(name, str):
            return None
        if tool_use_id in seen_tool_use_ids:
            return None
        seen_tool_use_ids.add(tool_use_id)
        tool_input = parse_tool_input(tool_use.get("input"))
        return {"toolUse": {**tool_use, "input": tool_input if tool_input is not None else {}}}
    if "toolResult" in block:
        result = block["toolResult"]
        if role != "user" or not isinstance(result, dict):
            return None
        if not isinstance(result.get("toolUseId"), str):
            return None
        content = result.get("content")
        if not isinstance(content, list) or not content:
            return {"toolResult": {**result, "content": [{"text": EMPTY_RESULT_TEXT}]}}
    return block


def _clean(messages: list[Any]) -> list[Message]:
    seen_tool_use_ids: set[str] = set()
    cleaned: list[Message] = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            continue
        role = message["role"]
        content = message.get("content")
        if isinstance(content, str):
            content = [{"text": content}]
        if not isinstance(content, list):
            continue
        blocks = [
            b for b in (_clean_block(b, role, seen_tool_use_ids) for b in content) if b is not None
        ]
        if blocks:
            cleaned.append({"role": role, "content": blocks})
    return cleaned


def _merge(messages: list[Message]) -> list[Message]:
    merged: list[Message] = []
    for message in messages:
        if merged and merged[-1]["role"] == message["role"]:
            merged[-1]["content"].extend(message["content"])
        else:
            merged.append(message)
    return merged


def _drop_orphan_results(messages: list[Message]) -> bool:
    """Drop results that answer nothing in the message just before; True if anything changed."""
    changed = False
    for index, message in enumerate(messages):
        if message["role"] != "user":
            continue
        previous = messages[index - 1] if index > 0 else None
        open_ids = set(tool_use_ids(previous)) if previous is not None else set()
        kept: list[Block] = []
        for block in message["content"]:
            if "toolResult" in block:
                tool_use_id = block["toolResult"]["toolUseId"]
                if tool_use_id not in open_ids:
                    changed = True
                    continue
                open_ids.discard(tool_use_id)  # a second answer to the same call is dropped too
            kept.append(block)
        message["content"] = kept
    if changed:
        messages[:] = [m for m in messages if m["content"]]
    return changed


def _answer_tool_uses(messages: list[Message]) -> None:
    index = 0
    while index < len(messages):
        ids = tool_use_ids(messages[index]) if messages[index]["role"] == "assistant" else []
        if ids:
            if index + 1 == len(messages):
                messages.append({"role": "user", "content": []})
            reply = messages[index + 1]  # a user message: roles already alternate
            results = {
                b["toolResult"]["toolUseId"]: b for b in reply["content"] if "toolResult" in b
            }
            others = [b for b in reply["content"] if "toolResult" not in b]
            # Results first and in call order: Claude rejects text ahead of tool results.
            reply["content"] = [results.get(i) or missing_result(i) for i in ids] + others
        index += 1


def repair(messages: list[Any]) -> list[Message]:
    """A new list of new messages from ``messages`` that obeys every rule in the module docstring.

    Blank text and cache points are dropped, consecutive messages of one role are merged, results
    that answer nothing are dropped, calls without a result get an error result
    (``MISSING_RESULT_TEXT``), and a placeholder user message is added where the history would
    otherwise start or end with the assistant (or be empty).
    """
    fixed = _merge(_clean(messages))
    # Dropping an emptied user message lets two assistant messages meet; merge and look again.
    while _drop_orphan_results(fixed):
        fixed = _merge(fixed)
    if not fixed or fixed[0]["role"] != "user":
        fixed.insert(0, placeholder("user"))
    _answer_tool_uses(fixed)
    if fixed[-1]["role"] != "user":
        fixed.append(placeholder("user"))
    return fixed


def violations(messages: Any) -> list[str]:
    """Every way ``messages`` breaks Converse's history rules; empty when it is safe to send."""
    if not isinstance(messages, list) or not messages:
        return ["there are no messages"]
    problems: list[str] = []
    seen_ids: set[str] = set()
    previous_calls: list[str] = []
    for index, message in enumerate(messages):
        where = f"message {index}"
        if not isinstance(message, dict):
            problems.append(f"{where} is not an object")
            previous_calls = []
            continue
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES:
            problems.append(f"{where} has role {role!r}")
        if set(message) - {"role", "content"}:
            problems.append(f"{where} has keys other than role and content")
        if not isinstance(content, list) or not content:
            problems.append(f"{where} has no content")
            content = []
        if index == 0 and role != "user":
            problems.append("the first message is not the user's")
        before = messages[index - 1] if index > 0 else None
        if isinstance(before, dict) and before.get("role") == role:
            problems.append(f"{where} has the same role as the one before it")
        if content and all(isinstance(b, dict) and "cachePoint" in b for b in content):
            problems.append(f"{where} holds only cache points")

        calls: list[str] = []
        answered: list[str] = []
        other_seen = False
        for position, block in enumerate(content):
            at = f"{where} block {position}"
            if not isinstance(block, dict):
                problems.append(f"{at} is not an object")
                continue
            if _is_blank_text(block):
                problems.append(f"{at} is blank text")
            if "toolUse" in block:
                problems.extend(_tool_use_problems(block["toolUse"], role, at, seen_ids, calls))
            elif "toolResult" in block:
                result = block["toolResult"]
                tool_use_id = result.get("toolUseId") if isinstance(result, dict) else None
                if role != "user":
                    problems.append(f"{at} is a toolResult outside a user message")
                elif tool_use_id not in previous_calls:
                    problems.append(f"{at} answers no toolUse of the message before")
                elif tool_use_id in answered:
                    problems.append(f"{at} answers {tool_use_id} a second time")
                else:
                    answered.append(tool_use_id)
                if other_seen:
                    problems.append(f"{at} is a toolResult after other content")
            elif "cachePoint" not in block:
                other_seen = True
        for tool_use_id in previous_calls:
            if tool_use_id not in answered:
                problems.append(f"{where} does not answer toolUse {tool_use_id}")
        previous_calls = calls
    if previous_calls:
        problems.append("the last message's tool calls have no results")
    if isinstance(messages[-1], dict) and messages[-1].get("role") != "user":
        problems.append("the last message is not the user's")
    return problems


def appended_violations(
    messages: list[Message], appended: list[Message], tool_use_ids_before: set[str]
) -> list[str]:
    """Every way ``messages + appended`` breaks the rules, for a ``messages`` that keeps them:
    only ``appended`` is checked, against the last message before it and the toolUse ids
    already used (``tool_use_ids_before``)."""
    problems = violations([*messages[-1:], *appended])
    reused = tool_use_ids_before.intersection(i for m in appended for i in tool_use_ids(m))
    problems += [f"an appended message reuses toolUseId {i}" for i in sorted(reused)]
    return problems


def _tool_use_problems(
    tool_use: Any, role: Any, at: str, seen_ids: set[str], calls: list[str]
) -> list[str]:
    if role != "assistant":
        return [f"{at} is a toolUse outside an assistant message"]
    if not isinstance(tool_use, dict):
        return [f"{at} is a malformed toolUse"]
    problems = []
    tool_use_id = tool_use.get("toolUseId")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        problems.append(f"{at} has no toolUseId")
    elif tool_use_id in seen_ids:
        problems.append(f"{at} reuses toolUseId {tool_use_id}")
    else:
        seen_ids.add(tool_use_id)
        calls.append(tool_use_id)
    if not isinstance(tool_use.get("name"), str):
        problems.append(f"{at} has no tool name")
    if not isinstance(tool_use.get("input"), dict):
        problems.append(f"{at} has an input that is not an object")
    return problems
