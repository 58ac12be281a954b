"""Replacing a real customer's details with a demo customer's, everywhere in a conversation.

The same replacement applies to what the customer typed, the model's text and tool calls, and
the tool results, so a drafted case stays consistent with itself: the demo customer's email in
the customer's message is the one the model passes to ``get_user`` and the one the throwaway
database knows. Besides the customer's own name (and its parts), email, phone (in any
formatting), username and customer id, every other email address and phone number is replaced
by a placeholder, and order ids by new ones.
"""

import re
from collections.abc import Callable
from typing import Any

_EMAIL = re.compile(r"[^\s@<>\"'(),;:\[\]]+@[^\s@<>\"'(),;:\[\]]+\.[^\s@<>\"'(),;:.!?\[\]]+")
_PHONE_LIKE = re.compile(r"\+?\d[\d\s().-]{8,}\d")
_NAME_PART_MIN_CHARS = 2


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _word(value: str) -> str:
    return rf"(?<!\w){re.escape(value)}(?!\w)"


class Scrubber:
    """Replaces one real customer's details by a stand-in's, and order ids by new ones.

    ``real`` and ``stand_in`` are mappings with ``id``, ``name``, ``email``, ``phone`` and
    ``username``; ``order_ids`` maps real order ids to the ids the draft uses.
    """

    def __init__(
        self, *, real: dict[str, str], stand_in: dict[str, str], order_ids: dict[str, str]
    ) -> None:
        self.real, self.stand_in = real, stand_in
        self.other_emails: dict[str, str] = {}
        self.other_phones: dict[str, str] = {}
        literal: dict[str, str] = {}
        real_parts = real["name"].split()
        stand_in_parts = stand_in["name"].split()
        for index, part in enumerate(real_parts):
            if len(part) >= _NAME_PART_MIN_CHARS:
                # First name to first name; every later part to the stand-in's last name.
                literal[part.casefold()] = stand_in_parts[0 if index == 0 else -1]
        literal[real["name"].casefold()] = stand_in["name"]
        literal[real["username"].casefold()] = stand_in["username"]
        literal[real["id"].casefold()] = stand_in["id"]
        for old, new in order_ids.items():
            literal[old.casefold()] = new
        self._literal = literal
        # Longest first, so "Mary Major" is replaced as a whole before "Mary" alone.
        alternatives = sorted(literal, key=len, reverse=True)
        self._literal_pattern = re.compile(
            "|".join(_word(value) for value in alternatives), re.IGNORECASE
        )

    def _email(self, match: re.Match[str]) -> str:
        found = match.group(0)
        if found.casefold() == self.real["email"].casefold():
            return self.stand_in["email"]
        key = found.casefold()
        if key not in self.other_emails:
            self.other_emails[key] = f"someone-{len(self.other_emails) + 1}@example.com"
        return self.other_emails[key]

    def _phone(self, match: re.Match[str]) -> str:
        found = match.group(0)
        digits, own = _digits(found), _digits(self.real["phone"])
        if own and digits in (own, "1" + own):
            return self.stand_in["phone"]
        if len(digits) not in (10, 11):
            return found  # a long number that is not a phone number
        if digits not in self.other_phones:
            self.other_phones[digits] = f"555-010-{len(self.other_phones) + 1:04d}"
        return self.other_phones[digits]

    def text(self, text: str) -> str:
        """``text`` with every known detail replaced."""
        text = _EMAIL.sub(self._email, text)
        text = self._literal_pattern.sub(lambda m: self._literal[m.group(0).casefold()], text)
        return _PHONE_LIKE.sub(self._phone, text)

    def value(self, value: Any) -> Any:
        """A JSON value with every string in it scrubbed (keys are the app's own, left as is)."""
        return _walk(value, self.text)


def _walk(value: Any, change: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {key: _walk(item, change) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, change) for item in value]
    return value
