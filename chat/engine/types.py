"""The values and interfaces the tool loop exchanges with its callers.

``Tools`` is what the loop needs of the customer's tools (``chat.engine.registry.BoundTools`` in
the live chat, small fakes in tests); ``TurnSink`` is where it reports each step as it happens.
"""

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class ToolOutcome:
    status: Literal["success", "error"]
    content: Any  # JSON-able; sent as [{"json": content}] on success, [{"text": content}] on error


class Tools(Protocol):
    """The customer's tools; implementations are bound to the signed-in customer."""

    specs: list[dict[str, Any]]  # Converse "tools" entries ({"toolSpec": {...}})

    def needs_confirmation(self, name: str, tool_input: dict[str, Any]) -> bool: ...

    def status_text(self, name: str, tool_input: dict[str, Any]) -> str: ...

    def run(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome: ...


@dataclass(frozen=True)
class ModelCallRecord:
    model_id: str
    stop_reason: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    latency_ms: int
    error: str  # "" on success, else the error kind ("busy", "deadline", …)


class TurnSink(Protocol):
    def model_called(self, record: ModelCallRecord) -> None: ...

    def messages_appended(self, messages: list[dict[str, Any]]) -> None: ...

    def text_delta(self, text: str) -> None: ...

    def tool_started(self, name: str, tool_input: dict[str, Any], description: str) -> None: ...


@dataclass(frozen=True)
class TurnConfig:
    model_id: str
    system_prompt: str
    inference_config: dict[str, Any]
    additional_model_request_fields: dict[str, Any]
    max_model_calls: int
    deadline_seconds: float
    prompt_caching: bool = False
    # System text that differs per conversation, sent after ``system_prompt`` and its cache
    # point, so the shared part is cached once for all conversations.
    customer_context: str = ""
    guardrail: tuple[str, str] | None = None  # (identifier, version)
    # The history sent is cut to its latest turns past this estimate (0: always whole).
    context_budget_tokens: int = 0


@dataclass(frozen=True)
class PendingConfirmation:
    """The turn paused on a tool that needs the customer's yes.

    ``results`` holds the toolResult blocks of the paused assistant message in call order; the
    pending call's slot and the slots of the calls after it that have not run yet are ``None``.
    ``tool_uses`` holds that message's toolUse blocks (inputs parsed), so ``complete_pending`` can
    run the calls that waited. ``to_dict``/``from_dict`` round-trip through JSON.
    """

    tool_use_id: str
    name: str
    tool_input: dict[str, Any]
    results: list[dict[str, Any] | None]
    tool_uses: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PendingConfirmation":
        return cls(
            tool_use_id=data["tool_use_id"],
            name=data["name"],
            tool_input=data["tool_input"],
            results=list(data["results"]),
            tool_uses=list(data.get("tool_uses") or []),
        )


@dataclass(frozen=True)
class TurnResult:
    outcome: Literal["answered", "awaiting_confirmation", "failed"]
    reply: str
    stop_reason: str | None
    pending: PendingConfirmation | None = None
    error_kind: str = ""
