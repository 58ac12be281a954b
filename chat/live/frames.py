"""The frames a browser may send on the chat sockets: one JSON Schema per frame type.

A frame is a JSON object whose "type" picks its ``FrameType``; the rest is checked against that
type's schema. Whatever is wrong, the socket answers with an "error" frame whose ``code`` and
``text`` say what to do (the pages know the codes), never with a crash.

Customer frames (``customer_frame_types``)::

    {"type": "send", "text": str, "client_message_id": str}
    {"type": "decide", "action_id": str, "approve": bool}
    {"type": "resume", "after_seq": int}        # the last seq the client has shown
    {"type": "handoff"}                         # "Talk to a person"
    {"type": "ping"}
"""

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError


class FrameError(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text

    def event(self) -> dict[str, Any]:
        """The "error" frame the socket sends back."""
        return {"type": "error", "code": self.code, "text": self.text, "retryable": False}


@dataclass(frozen=True)
class FrameType:
    """The members of one frame type besides "type", and the error for each way they fail.

    ``errors`` is keyed by member name, or by "member.keyword" (e.g. "text.maxLength") where one
    member fails in more than one way that the page tells apart.
    """

    properties: dict[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    errors: dict[str, FrameError] = field(default_factory=dict)

    @functools.cached_property
    def validator(self) -> Draft202012Validator:
        schema = {"type": "object", "properties": self.properties, "required": list(self.required)}
        Draft202012Validator.check_schema(schema)
        return Draft202012Validator(schema)

    def error_for(self, error: ValidationError) -> FrameError:
        member = _member(error)
        found = self.errors.get(f"{member}.{error.validator}") or self.errors.get(member)
        return found or FrameError("invalid_frame", "That request could not be read.")


def _member(error: ValidationError) -> str:
    required = error.validator_value if error.validator == "required" else None
    if isinstance(required, list) and isinstance(error.instance, dict):
        return next((name for name in required if name not in error.instance), "")
    return str(error.absolute_path[0]) if error.absolute_path else ""


def frame_parse(
    content: Any,
    frame_types: Mapping[str, FrameType],
    *,
    not_an_object: FrameError,
    unknown_type: FrameError,
) -> dict[str, Any]:
    """The frame, checked against the schema of its type.

    When several members are wrong, the error is about the first of them in ``properties``.

    Raises: ``FrameError``.
    """
    if not isinstance(content, dict):
        raise not_an_object
    frame_type = frame_types.get(content.get("type"))  # type: ignore[arg-type]
    if frame_type is None:
        raise unknown_type
    errors = list(frame_type.validator.iter_errors(content))
    if errors:
        order = list(frame_type.properties)
        first = min(
            errors, key=lambda e: order.index(_member(e)) if _member(e) in order else len(order)
        )
        raise frame_type.error_for(first)
    return content


# --- The customer's frames ------------------------------------------------------------------------

CLIENT_MESSAGE_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,64}$"}
UUID = {
    "type": "string",
    "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
}
# A message's seq is a PostgreSQL integer: a larger number cannot name one, and would fail in the
# query rather than here.
SEQ_MAX = 2**31 - 1
AFTER_SEQ = {"type": "integer", "minimum": 0, "maximum": SEQ_MAX}
# Legitimate frames are a flat object. Deeper nesting is refused before anything walks it: the
# JSON decoder and jsonschema recurse, and a thousand levels exhaust the interpreter's stack.
MAX_FRAME_DEPTH = 32
# Characters PostgreSQL cannot store: NUL (in text and jsonb) and lone surrogates (not UTF-8).
UNSTORABLE_PATTERN = "[\x00\ud800-\udfff]"
UNSTORABLE = re.compile(UNSTORABLE_PATTERN)
UNSTORABLE_TEXT = (
    "Your message contains a character we can't store (an invisible control character or a "
    "broken emoji). Please remove it or retype the message, then send it again."
)


def message_text(max_chars: int) -> dict[str, Any]:
    """Some text that is not only whitespace, at most ``max_chars`` characters, all of them
    storable."""
    return {
        "type": "string",
        "pattern": r"\S",
        "maxLength": max_chars,
        "not": {"pattern": UNSTORABLE_PATTERN},
    }


def nesting_depth_over(value: Any, limit: int = MAX_FRAME_DEPTH) -> bool:
    """Whether decoded JSON nests lists and objects deeper than ``limit`` (without recursing)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def after_seq_parse(value: str) -> int:
    """A seq given as text (a query parameter): ASCII digits only, within range.

    ``str.isdigit()`` would accept "²" and other digits ``int()`` rejects or reads otherwise.

    Raises: ``FrameError`` (``AFTER_SEQ_INVALID``).
    """
    if not re.fullmatch(r"[0-9]{1,10}", value) or int(value) > SEQ_MAX:
        raise AFTER_SEQ_INVALID
    return int(value)


RELOAD = "That message could not be read. Please reload the page and try again."
NOT_AN_OBJECT = FrameError("invalid_frame", RELOAD)
NOT_JSON = FrameError("invalid_json", RELOAD)
NOT_TEXT = FrameError(
    "invalid_frame", "This chat only understands text messages. Please reload the page."
)
UNKNOWN_TYPE = FrameError(
    "unknown_type", "That request is not supported. Please reload the page and try again."
)
TEXT_REQUIRED = FrameError("text_required", "Please type a message before sending.")
AFTER_SEQ_INVALID = FrameError(
    "invalid_after_seq", "The conversation could not be resumed. Please reload the page."
)
TOO_DEEP = FrameError("invalid_frame", RELOAD)
UNSTORABLE_CHARACTERS = FrameError("invalid_characters", UNSTORABLE_TEXT)


def too_long(max_chars: int) -> FrameError:
    return FrameError(
        "text_too_long", f"Your message is too long. Please keep it under {max_chars} characters."
    )


def frame_size_limit(max_chars: int) -> int:
    """The longest text frame worth decoding: the longest allowed text with every character
    escaped, plus the other members."""
    return max_chars * 12 + 1024


@functools.cache
def customer_frame_types(max_chars: int) -> dict[str, FrameType]:
    """The frames of the customer's chat socket, for messages of at most ``max_chars``."""
    return {
        "send": FrameType(
            properties={"text": message_text(max_chars), "client_message_id": CLIENT_MESSAGE_ID},
            required=("text", "client_message_id"),
            errors={
                "text": TEXT_REQUIRED,
                "text.maxLength": too_long(max_chars),
                "text.not": UNSTORABLE_CHARACTERS,
                "client_message_id": FrameError(
                    "invalid_client_message_id",
                    "Your message was missing its id. Please reload the page and send it again.",
                ),
            },
        ),
        "decide": FrameType(
            properties={"action_id": UUID, "approve": {"type": "boolean"}},
            required=("action_id", "approve"),
            errors={
                "action_id": FrameError(
                    "invalid_action_id",
                    "That confirmation is no longer valid. Please reload the page.",
                ),
                "approve": FrameError(
                    "invalid_approve", "Please answer the confirmation with one of its buttons."
                ),
            },
        ),
        "resume": FrameType(
            properties={"after_seq": AFTER_SEQ}, errors={"after_seq": AFTER_SEQ_INVALID}
        ),
        "handoff": FrameType(),
        "ping": FrameType(),
    }
