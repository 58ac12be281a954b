"""The assistant's tools: one ``Tool`` object per tool, kept in a ``ToolRegistry``.

A tool holds everything about itself in one place: its name, description and input schema
(which make its Converse spec and its line in the system prompt), the code that runs it, the
status line the customer sees while it runs, and whether it needs the customer's confirmation
(and the question the app then asks). Adding a tool is one new ``Tool`` registered with the
registry the live chat uses (``chat.tools.registry``); the prompt and the ``toolConfig`` follow.

Tools never choose whose data they read: the live chat binds the registry to a ``ToolContext``
(the signed-in customer, the conversation, a way to ask for a person) with ``bind``, and every
call gets that context. The result, ``BoundTools``, is what the tool loop calls
(``chat.engine.types.Tools``).
"""

import copy
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from chat.engine.types import ToolOutcome

UNKNOWN_TOOL_TEXT = "There is no tool called {name}."


class ToolRefused(Exception):
    """A tool could not do what was asked; ``text`` tells the model why (an error result)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass(frozen=True)
class ToolContext:
    """Who the tools act for, filled by the live chat from the signed-in session.

    ``customer`` is the conversation's customer (an ``orders.models.Customer``; the engine never
    looks inside it). ``request_person(reason)`` asks the support team to join the conversation;
    it returns False when a person was already asked, and raises ``ToolRefused`` when the
    conversation cannot be handed over now.
    """

    customer: Any
    conversation_id: uuid.UUID
    request_person: Callable[[str], bool]


class Tool:
    """One tool the model can call. Subclasses set the attributes and implement ``run``.

    ``run`` reads and writes through ``orders.selectors`` / ``orders.services`` (or the
    context), scoped to ``context.customer``; a domain error becomes an error ``ToolOutcome`` or a
    ``ToolRefused``, never an exception the model would read. A tool whose
    ``needs_confirmation`` says yes pauses the turn; after the customer's yes the live chat calls
    ``run_confirmed``. When it says no, ``run`` answers at once and must not do what needed the
    yes (the answer is an error saying why).
    """

    name: str
    description: str  # what the model reads, in the toolConfig and the system prompt
    input_schema: dict[str, Any]  # JSON Schema of the input object
    status: str = "Working on it…"  # what the customer sees while it runs
    prompt_notes: str = ""  # extra instructions for the model, after the tool's line

    def run(self, context: ToolContext, tool_input: dict[str, Any]) -> ToolOutcome:
        raise NotImplementedError

    def status_text(self, context: ToolContext, tool_input: dict[str, Any]) -> str:
        return self.status

    def needs_confirmation(self, context: ToolContext, tool_input: dict[str, Any]) -> bool:
        return False

    def confirmation_text(self, context: ToolContext, tool_input: dict[str, Any]) -> str:
        return f"Allow {self.name}?"

    def run_confirmed(self, context: ToolContext, tool_input: dict[str, Any]) -> ToolOutcome:
        return self.run(context, tool_input)

    def spec(self) -> dict[str, Any]:
        """The Converse ``toolSpec`` entry (a fresh copy: callers may annotate it)."""
        return {
            "toolSpec": {
                "name": self.name,
                "description": self.description,
                "inputSchema": {"json": copy.deepcopy(self.input_schema)},
            }
        }


class ToolRegistry:
    """The tools offered to the model, in the order they are offered."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._bound_specs: list[dict[str, Any]] | None = None
        for tool in tools:
            self.register(tool)

    def register[T: Tool](self, tool: T) -> T:
        """Adds ``tool``; returns it.

        Raises: ``ValueError`` for a name Converse would refuse, a name already registered, or an
        input schema that is not a valid JSON Schema for an object.
        """
        name = getattr(tool, "name", "")
        if not isinstance(name, str) or not name or len(name) > 64 or not _is_tool_name(name):
            raise ValueError(
                f"Tool name {name!r} must be 1-64 letters, digits, underscores or hyphens."
            )
        if name in self._tools:
            raise ValueError(f"A tool called {name!r} is registered already.")
        if not getattr(tool, "description", ""):
            raise ValueError(f"Tool {name!r} needs a description for the model.")
        schema = getattr(tool, "input_schema", None)
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise ValueError(f"Tool {name!r} needs an input schema of type 'object'.")
        try:
            validator_for(schema).check_schema(schema)
        except SchemaError as error:
            raise ValueError(
                f"Tool {name!r} has an invalid input schema: {error.message}"
            ) from None
        self._tools[name] = tool
        self._bound_specs = None
        return tool

    def unregister(self, name: str) -> None:
        """Removes the tool called ``name``.

        Raises: ``KeyError`` when there is none.
        """
        del self._tools[name]
        self._bound_specs = None

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        return list(self._tools)

    def specs(self) -> list[dict[str, Any]]:
        """The Converse ``toolConfig.tools`` entries, fresh copies."""
        return [tool.spec() for tool in self._tools.values()]

    def bind(self, context: ToolContext) -> "BoundTools":
        """The tools as the loop calls them, every call acting for ``context``."""
        return BoundTools(self, context)

    def bound_specs(self) -> list[dict[str, Any]]:
        """The specs every ``BoundTools`` offers: copied once per set of tools, not per turn,
        and shared, so they are never changed (``specs()`` gives copies to change)."""
        if self._bound_specs is None:
            self._bound_specs = self.specs()
        return self._bound_specs


def _is_tool_name(name: str) -> bool:
    return all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in name)


class BoundTools:
    """A registry bound to one conversation's ``ToolContext`` (``chat.engine.types.Tools``).

    The specs are taken when binding, so a turn offers the same tools from start to end.
    """

    def __init__(self, registry: ToolRegistry, context: ToolContext) -> None:
        self.registry = registry
        self.context = context
        self.specs: list[dict[str, Any]] = registry.bound_specs()

    def needs_confirmation(self, name: str, tool_input: dict[str, Any]) -> bool:
        tool = self.registry.get(name)
        return tool is not None and tool.needs_confirmation(self.context, tool_input)

    def status_text(self, name: str, tool_input: dict[str, Any]) -> str:
        tool = self.registry.get(name)
        return tool.status_text(self.context, tool_input) if tool is not None else Tool.status

    def confirmation_text(self, name: str, tool_input: dict[str, Any]) -> str:
        """The question the app asks before running a call that needs confirmation."""
        tool = self.registry.get(name)
        if tool is None:
            return f"Allow {name}?"
        return tool.confirmation_text(self.context, tool_input)

    def run(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome:
        return self._outcome(name, tool_input, confirmed=False)

    def run_confirmed(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome:
        """Runs a call the customer approved in the app."""
        return self._outcome(name, tool_input, confirmed=True)

    def _outcome(self, name: str, tool_input: dict[str, Any], *, confirmed: bool) -> ToolOutcome:
        tool = self.registry.get(name)
        if tool is None:
            return ToolOutcome("error", UNKNOWN_TOOL_TEXT.format(name=name))
        try:
            if confirmed:
                return tool.run_confirmed(self.context, tool_input)
            return tool.run(self.context, tool_input)
        except ToolRefused as refused:
            return ToolOutcome("error", refused.text)
