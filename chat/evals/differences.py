"""Where two Converse requests differ, in words a person can act on.

``request_difference`` names the first part that differs — the system prompt (with the line), a
tool's spec (with the tool's name and the field), a message (with its number, role and the
path inside it), the model id or an inference setting — and shows both values, shortened.
"""

from typing import Any

_MISSING = object()
_SHOWN_CHARS = 120
# Characters shown before the first difference in a line of text.
_CONTEXT_CHARS = 30
_LABELS = {
    "modelId": "the model id",
    "inferenceConfig": "the inference settings",
    "additionalModelRequestFields": "the additional model request fields",
    "guardrailConfig": "the guardrail settings",
    "promptVariables": "the prompt variables",
}
# Checked in this order, so a prompt change is named as such rather than by its effect on the
# messages further down.
_ORDER = ("system", "toolConfig", "modelId", "inferenceConfig", "additionalModelRequestFields")


def shorten(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def first_difference(recorded: Any, actual: Any, path: str = "") -> str:
    """The path of the first difference between two JSON values and both values there."""
    if isinstance(recorded, dict) and isinstance(actual, dict):
        for key in sorted(set(recorded) | set(actual), key=str):
            a, b = recorded.get(key, _MISSING), actual.get(key, _MISSING)
            if a != b:
                return first_difference(a, b, f"{path}.{key}" if path else str(key))
    if isinstance(recorded, list) and isinstance(actual, list):
        for index, (a, b) in enumerate(zip(recorded, actual, strict=False)):
            if a != b:
                return first_difference(a, b, f"{path}[{index}]")
        if len(recorded) != len(actual):
            return f"{path or 'the list'}: recorded {len(recorded)} items, now {len(actual)}"
    where = path or "the value"
    return f"{where}: recorded {shorten(recorded)}, now {shorten(actual)}"


def text_difference(recorded: str, actual: str) -> str:
    """The first line where two texts differ, with both versions of it."""
    old, new = recorded.splitlines(), actual.splitlines()
    for number, (a, b) in enumerate(zip(old, new, strict=False), start=1):
        if a != b:
            column = next(
                (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)),
            )
            start = max(0, column - _CONTEXT_CHARS)
            lead = "…" if start else ""
            return (
                f"line {number}, column {column + 1}: recorded {lead}{shorten(a[start:])!s}, "
                f"now {lead}{shorten(b[start:])!s}"
            )
    if len(old) != len(new):
        extra = len(new) - len(old)
        which = "longer" if extra > 0 else "shorter"
        return f"now {abs(extra)} line(s) {which} after line {min(len(old), len(new))}"
    return first_difference(recorded, actual, "text")


def _system_text(system: Any) -> str | None:
    if not isinstance(system, list):
        return None
    return "\n".join(
        b["text"] for b in system if isinstance(b, dict) and isinstance(b.get("text"), str)
    )


def _tool_name(spec: Any) -> str:
    return (
        str(((spec or {}).get("toolSpec") or {}).get("name", "?"))
        if isinstance(spec, dict)
        else "?"
    )


def _tools_difference(recorded: Any, actual: Any) -> str:
    old = (recorded or {}).get("tools") or [] if isinstance(recorded, dict) else []
    new = (actual or {}).get("tools") or [] if isinstance(actual, dict) else []
    old_names, new_names = [_tool_name(s) for s in old], [_tool_name(s) for s in new]
    added = [name for name in new_names if name not in old_names]
    removed = [name for name in old_names if name not in new_names]
    if added or removed:
        parts = []
        if added:
            parts.append(f"now offered but not recorded: {', '.join(added)}")
        if removed:
            parts.append(f"recorded but no longer offered: {', '.join(removed)}")
        return "the tools: " + "; ".join(parts)
    for name, a, b in zip(old_names, old, new, strict=False):
        if a != b:
            return f"the tool spec of {name}: {first_difference(a, b)}"
    return f"the tool configuration: {first_difference(recorded, actual)}"


def _messages_difference(recorded: Any, actual: Any) -> str:
    if not isinstance(recorded, list) or not isinstance(actual, list):
        return f"the messages: {first_difference(recorded, actual)}"
    for index, (a, b) in enumerate(zip(recorded, actual, strict=False)):
        if a != b:
            role = b.get("role", "?") if isinstance(b, dict) else "?"
            return f"message {index + 1} ({role}): {first_difference(a, b)}"
    return f"the messages: the engine sent {len(actual)}, the recording has {len(recorded)}"


def request_difference(recorded: dict[str, Any], actual: dict[str, Any]) -> str | None:
    """What differs between a recorded Converse request and the one the engine sends now."""
    keys = [k for k in _ORDER if k in recorded or k in actual]
    keys += sorted(k for k in set(recorded) | set(actual) if k not in _ORDER and k != "messages")
    keys.append("messages")
    for key in keys:
        a, b = recorded.get(key, _MISSING), actual.get(key, _MISSING)
        if a == b:
            continue
        if key == "system":
            old, new = _system_text(a), _system_text(b)
            if old is not None and new is not None and old != new:
                return f"the system prompt: {text_difference(old, new)}"
            return f"the system prompt blocks: {first_difference(a, b)}"
        if key == "toolConfig":
            return _tools_difference(a, b)
        if key == "messages":
            return _messages_difference(a, b)
        label = _LABELS.get(key, f"the request field {key!r}")
        return f"{label}: {first_difference(a, b)}"
    return None
