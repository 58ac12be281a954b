"""What the customer sees of a model message.

The system prompt asks the model to think inside ``<thinking>…</thinking>`` and to answer inside
``<reply>…</reply>``. The rules, applied the same way to a whole message and to a stream of deltas:

- Text inside ``<reply>…</reply>`` is visible; several reply blocks are joined by a blank line.
  An unclosed ``<reply>`` at the end still shows what it holds.
- If no ``<reply>`` tag appears at all, everything outside ``<thinking>…</thinking>`` is visible
  (unless the caller says untagged text is narration, e.g. in a message that calls a tool).
- Thinking never shows: an unclosed ``<thinking>`` hides the rest of the message, a ``<thinking>``
  inside a reply is hidden too, and a stray ``</thinking>`` (the model carrying on a thought from
  before a tool call) hides the untagged text that came before it.
- Visible text is stripped of leading and trailing whitespace.

``ReplyStream`` produces exactly what ``extract_reply`` returns, however the text is split into
deltas (``<rep`` + ``ly>`` included): reply text is released as it arrives, untagged text is held
until ``finish()`` because only then is it known that no ``<reply>`` came.
"""

from typing import Any, Literal

REPLY_OPEN = "<reply>"
REPLY_CLOSE = "</reply>"
THINKING_OPEN = "<thinking>"
THINKING_CLOSE = "</thinking>"

_State = Literal["outside", "reply", "thinking"]

# The tags that mean something in each state; anything else is plain text.
_TAGS: dict[_State, tuple[str, ...]] = {
    "outside": (REPLY_OPEN, THINKING_OPEN, THINKING_CLOSE, REPLY_CLOSE),
    "reply": (REPLY_CLOSE, THINKING_OPEN),
    "thinking": (THINKING_CLOSE,),
}


class ReplyStream:
    """Incremental extraction: ``feed(delta)`` returns newly visible text, ``finish()`` the rest."""

    def __init__(self) -> None:
        self._pending = ""  # text starting with "<" that may still become a tag
        self._state: _State = "outside"
        self._after_thinking: _State = "outside"
        self._saw_reply = False
        self._untagged: list[str] = []
        self._emitted_any = False
        self._segment_started = False
        self._held_whitespace = ""
        self._finished = False

    @property
    def saw_reply(self) -> bool:
        return self._saw_reply

    def feed(self, delta: str) -> str:
        if self._finished:
            raise RuntimeError("ReplyStream.feed() after finish()")
        out: list[str] = []
        self._pending += delta
        while self._pending:
            lt = self._pending.find("<")
            if lt == -1:
                self._consume(self._pending, out)
                self._pending = ""
                break
            if lt > 0:
                self._consume(self._pending[:lt], out)
                self._pending = self._pending[lt:]
            lowered = self._pending.lower()
            tags = _TAGS[self._state]
            tag = next((t for t in tags if lowered.startswith(t)), None)
            if tag is not None:
                self._pending = self._pending[len(tag) :]
                self._on_tag(tag)
            elif any(t.startswith(lowered) for t in tags):
                break  # a tag may be split across deltas: wait for more text
            else:
                self._consume("<", out)
                self._pending = self._pending[1:]
        return "".join(out)

    def finish(self, *, include_untagged: bool = True) -> str:
        """The text still to show; ``include_untagged=False`` treats untagged text as narration."""
        if self._finished:
            return ""
        self._finished = True
        # A tag prefix left at the very end is a tag cut off by the end of the output: not text.
        self._pending = ""
        self._held_whitespace = ""
        if self._saw_reply or not include_untagged:
            return ""
        text = "".join(self._untagged).strip()
        if text and self._emitted_any:
            return "\n\n" + text
        return text

    def _on_tag(self, tag: str) -> None:
        if tag == REPLY_OPEN:
            self._state = "reply"
            self._saw_reply = True
            self._segment_started = False
            self._held_whitespace = ""
        elif tag == REPLY_CLOSE:
            # A stray </reply> outside a reply is dropped like any other tag.
            self._state = "outside"
            self._held_whitespace = ""
        elif tag == THINKING_OPEN:
            self._after_thinking = self._state
            self._state = "thinking"
        elif self._state == "thinking":  # THINKING_CLOSE
            self._state = self._after_thinking
            self._after_thinking = "outside"
        else:  # a stray </thinking>: what came before it was thinking
            self._untagged.clear()

    def _consume(self, text: str, out: list[str]) -> None:
        if self._state == "outside":
            self._untagged.append(text)
        elif self._state == "reply":
            self._emit(text, out)

    def _emit(self, text: str, out: list[str]) -> None:
        if not self._segment_started:
            text = text.lstrip()
            if not text:
                return
            self._segment_started = True
            if self._emitted_any:
                out.append("\n\n")
        else:
            text = self._held_whitespace + text
            self._held_whitespace = ""
        body = text.rstrip()
        # Trailing whitespace is only shown once more reply text follows it.
        self._held_whitespace = text[len(body) :]
        if body:
            out.append(body)
            self._emitted_any = True


def extract_reply(text: str, *, include_untagged: bool = True) -> str:
    """The customer-visible part of a whole model text (see the module docstring for the rules)."""
    stream = ReplyStream()
    return stream.feed(text) + stream.finish(include_untagged=include_untagged)


def message_text(message: dict[str, Any]) -> str:
    """All text blocks of a Converse message, raw (thinking included), one per line."""
    return "\n".join(
        block["text"]
        for block in message.get("content") or []
        if isinstance(block, dict) and isinstance(block.get("text"), str)
    )


def visible_text(message: dict[str, Any]) -> str:
    """What the customer sees of a stored assistant message.

    In a message that calls a tool, untagged text is the model narrating its way to the call
    ("Okay, got it. <thinking>…"), so only ``<reply>`` text shows there.
    """
    content = message.get("content") or []
    calls_tool = any(isinstance(block, dict) and "toolUse" in block for block in content)
    return extract_reply(message_text(message), include_untagged=not calls_tool)
