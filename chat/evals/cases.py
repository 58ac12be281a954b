"""Eval cases: what a customer says, and what must (and must not) happen.

One case per YAML (or JSON) file; the file name without its extension is the case's name. The
format is documented in the README ("Evals") and enforced by ``CASE_SCHEMA``: a misspelt key or a
wrong type is reported with the file, the place in the file and what was expected, and nothing
runs until every file is valid.
"""

import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.validators import Draft202012Validator

from chat.models import ConversationStatus
from orders.demo import DemoOrder
from orders.models import OrderStatus

CASE_SUFFIXES = (".yaml", ".yml", ".json")

_TEXTS = {"type": "array", "items": {"type": "string", "minLength": 1}}
_CALL = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "input": {
            "type": "object",
            "additionalProperties": {
                "anyOf": [
                    {"type": ["string", "boolean"]},
                    {
                        "type": "object",
                        "required": ["matches"],
                        "additionalProperties": False,
                        "properties": {"matches": {"type": "string"}},
                    },
                ]
            },
        },
    },
}
# A bare name stands for the tool called with any input.
_CALL_OR_NAME = {"anyOf": [{"type": "string", "minLength": 1}, _CALL]}
_EXPECT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "tools": {"type": "array", "items": _CALL_OR_NAME},
        "tools_include": {"type": "array", "items": _CALL_OR_NAME},
        "tools_exclude": {"type": "array", "items": _CALL_OR_NAME},
        "confirmation": {"type": "boolean"},
        "reply_contains": _TEXTS,
        "reply_not_contains": _TEXTS,
        "reply_matches": _TEXTS,
        "outcome": {"enum": ["answered", "awaiting_confirmation", "failed", "held"]},
    },
}
CASE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["customer", "turns"],
    "additionalProperties": False,
    "properties": {
        "description": {"type": "string"},
        "customer": {"type": "string", "minLength": 1},
        "orders": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "product", "quantity", "price", "status"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string", "pattern": r"^[\w-]{1,32}$"},
                    "product": {"type": "string", "minLength": 1, "maxLength": 200},
                    "quantity": {"type": "integer", "minimum": 1},
                    "price": {"type": ["string", "number"], "pattern": r"^\d+(\.\d{1,2})?$"},
                    "status": {"enum": OrderStatus.values},
                },
            },
        },
        "turns": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["say"],
                "additionalProperties": False,
                "properties": {
                    "say": {"type": "string", "minLength": 1},
                    "answer": {"enum": ["approve", "decline"]},
                    "expect": _EXPECT,
                    "note": {"type": "string"},
                },
            },
        },
        "final": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "orders": {"type": "object", "additionalProperties": {"enum": OrderStatus.values}},
                "conversation": {"enum": ConversationStatus.values},
            },
        },
        "recorded": {"type": "array", "items": {"type": "object"}},
    },
}


class CaseError(Exception):
    """One or more case files are unusable; ``str()`` lists every problem, one per line."""


@dataclass(frozen=True)
class ToolCallPattern:
    """A tool call a case expects: the name, and the arguments that matter (None: any)."""

    name: str
    input: dict[str, Any] | None = None

    def matches(self, name: str, tool_input: Any) -> bool:
        if name != self.name:
            return False
        if self.input is None:
            return True
        if not isinstance(tool_input, dict):
            return False
        return all(_value_matches(want, tool_input.get(key)) for key, want in self.input.items())

    def __str__(self) -> str:
        if self.input is None:
            return f"{self.name}(…)"
        args = ", ".join(
            f"{key}~/{want['matches']}/" if isinstance(want, dict) else f"{key}={want!r}"
            for key, want in self.input.items()
        )
        return f"{self.name}({args})"


def _value_matches(want: Any, got: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(got, str) and re.fullmatch(want["matches"], got) is not None
    return bool(want == got)


@dataclass(frozen=True)
class Expect:
    tools: tuple[ToolCallPattern, ...] | None = None  # exactly these calls, in any order
    tools_include: tuple[ToolCallPattern, ...] = ()
    tools_exclude: tuple[ToolCallPattern, ...] = ()
    confirmation: bool | None = None
    reply_contains: tuple[str, ...] = ()
    reply_not_contains: tuple[str, ...] = ()
    reply_matches: tuple[str, ...] = ()
    outcome: str | None = None


@dataclass(frozen=True)
class Turn:
    say: str
    answer: Literal["approve", "decline"] | None = None
    expect: Expect = field(default_factory=Expect)


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    customer: str
    turns: tuple[Turn, ...]
    description: str = ""
    orders: tuple[DemoOrder, ...] | None = None  # the customer's orders are exactly these
    final_orders: dict[str, str] = field(default_factory=dict)
    final_conversation: str | None = None
    recorded: tuple[dict[str, Any], ...] | None = None  # responses of the conversation it came from


_VALIDATOR = Draft202012Validator(CASE_SCHEMA)


def _where(error: ValidationError) -> str:
    where = ""
    for part in error.absolute_path:
        where += f"[{part}]" if isinstance(part, int) else f".{part}" if where else str(part)
    return where or "the file"


def _explain(error: ValidationError) -> str:
    message = error.message
    if error.validator == "type" and isinstance(error.instance, int | float):
        message += ' (write ids and other numbers that are text in quotes, e.g. "012345")'
    return f"{_where(error)}: {message}"


def _patterns(items: list[Any]) -> tuple[ToolCallPattern, ...]:
    return tuple(
        ToolCallPattern(item) if isinstance(item, str) else ToolCallPattern(**item)
        for item in items
    )


def _semantic_problems(data: dict[str, Any], known_tools: set[str]) -> list[str]:
    problems = []
    for index, turn in enumerate(data["turns"]):
        expect = turn.get("expect") or {}
        for key in ("tools", "tools_include", "tools_exclude"):
            for number, item in enumerate(expect.get(key) or []):
                name = item if isinstance(item, str) else item["name"]
                if known_tools and name not in known_tools:
                    problems.append(
                        f"turns[{index}].expect.{key}[{number}]: unknown tool {name!r} "
                        f"(the tools are {', '.join(sorted(known_tools))})"
                    )
                for value in (item.get("input") or {}).values() if isinstance(item, dict) else ():
                    if isinstance(value, dict):
                        problems.extend(_regex_problem(value["matches"], f"turns[{index}]"))
        for pattern in expect.get("reply_matches") or []:
            problems.extend(_regex_problem(pattern, f"turns[{index}].expect.reply_matches"))
    for key in (data.get("final") or {}).get("orders") or {}:
        if not isinstance(key, str):
            problems.append(f"final.orders: order id {key!r} must be quoted text")
    return problems


def _regex_problem(pattern: str, where: str) -> list[str]:
    try:
        re.compile(pattern)
    except re.error as error:
        return [f"{where}: {pattern!r} is not a valid regular expression ({error})"]
    return []


def case_from_data(
    data: Any, *, name: str, path: Path, known_tools: set[str] | None = None
) -> Case:
    """A ``Case`` from parsed YAML/JSON. Raises ``CaseError`` naming every problem."""
    if not isinstance(data, dict):
        raise CaseError(f"{path}: a case is a mapping with at least 'customer' and 'turns'")
    errors = sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        shown = [best_match([e]) for e in errors]
        raise CaseError("\n".join(f"{path}: {_explain(e)}" for e in shown if e is not None))
    problems = _semantic_problems(data, known_tools or set())
    if problems:
        raise CaseError("\n".join(f"{path}: {problem}" for problem in problems))
    final = data.get("final") or {}
    return Case(
        name=name,
        path=path,
        customer=data["customer"],
        description=data.get("description", ""),
        orders=None
        if "orders" not in data
        else tuple(
            DemoOrder(
                id=o["id"],
                product=o["product"],
                quantity=o["quantity"],
                price=Decimal(str(o["price"])),
                status=o["status"],
            )
            for o in data["orders"]
        ),
        turns=tuple(
            Turn(
                say=t["say"],
                answer=t.get("answer"),
                expect=Expect(
                    tools=None if "tools" not in e else _patterns(e["tools"]),
                    tools_include=_patterns(e.get("tools_include") or []),
                    tools_exclude=_patterns(e.get("tools_exclude") or []),
                    confirmation=e.get("confirmation"),
                    reply_contains=tuple(e.get("reply_contains") or ()),
                    reply_not_contains=tuple(e.get("reply_not_contains") or ()),
                    reply_matches=tuple(e.get("reply_matches") or ()),
                    outcome=e.get("outcome"),
                ),
            )
            for t in data["turns"]
            for e in [t.get("expect") or {}]
        ),
        final_orders=dict(final.get("orders") or {}),
        final_conversation=final.get("conversation"),
        recorded=None if "recorded" not in data else tuple(data["recorded"]),
    )


def parse_case_text(text: str, *, path: Path) -> Any:
    """The parsed content of a case file. Raises ``CaseError`` for YAML/JSON that does not parse."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise CaseError(f"{path}: not valid YAML{where}: {problem}") from None


def _shown(path: Path) -> Path:
    # Errors and reports name files the way the person typed them, or relative to here.
    try:
        return path.relative_to(Path.cwd()) if path.is_absolute() else path
    except ValueError:
        return path


def case_files(paths: list[Path]) -> list[Path]:
    """The case files among ``paths``: files as given, directories' case files (not recursive)."""
    paths = [_shown(path) for path in paths]
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix in CASE_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise CaseError(f"{path}: no such file or directory")
    return found


def load_cases(paths: list[Path], *, known_tools: set[str] | None = None) -> list[Case]:
    """Every case in ``paths``, in order. Raises ``CaseError`` listing every problem found."""
    cases: list[Case] = []
    problems: list[str] = []
    seen: dict[str, Path] = {}
    files = case_files(paths)
    if not files:
        raise CaseError(
            f"No case files ({', '.join(CASE_SUFFIXES)}) in {', '.join(map(str, paths))}"
        )
    for path in files:
        try:
            data = parse_case_text(path.read_text(encoding="utf-8"), path=path)
            case = case_from_data(data, name=path.stem, path=path, known_tools=known_tools)
        except (CaseError, OSError, UnicodeDecodeError) as error:
            problems.append(str(error))
            continue
        if case.name in seen:
            problems.append(f"{path}: a case named {case.name!r} is already in {seen[case.name]}")
            continue
        seen[case.name] = path
        cases.append(case)
    if problems:
        raise CaseError("\n".join(problems))
    return cases
