"""A stored conversation as staff read it: what the customer saw, and what the model did.

Built from rows loaded in a handful of queries (never one per message), so the admin page
costs the same for a five-message chat and a five-hundred-message one.
"""

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chat.live.conversations import message_event
from chat.models import Conversation, Feedback, Message, MessageKind, ModelCall, PendingAction
from orders.models import OrderEvent
from orders.selectors import order_events_of_conversation


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _blocks(message: Message) -> list[dict[str, Any]]:
    content = message.content if isinstance(message.content, list) else []
    return [block for block in content if isinstance(block, dict)]


def result_text(result: dict[str, Any]) -> str:
    """A toolResult's content as one readable string (JSON parts pretty-printed)."""
    parts = []
    for item in result.get("content") or []:
        if not isinstance(item, dict):
            continue
        if "json" in item:
            parts.append(pretty_json(item["json"]))
        elif "text" in item:
            parts.append(str(item["text"]))
    return "\n".join(parts)


@dataclass
class ToolCall:
    tool_use_id: str
    name: str
    input: str
    status: str = "no result"
    result: str = ""
    action: PendingAction | None = None


@dataclass
class Entry:
    """One line of the transcript: a message, a model call or an order event."""

    kind: str  # "message", "model_call" or "order_event"
    created_at: datetime
    role: str = ""  # customer, assistant, staff, notice or tool_results
    message: Message | None = None
    text: str = ""
    # Assistant text said before a tool call, which the customer saw as status, not as a reply.
    preamble: bool = False
    raw: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    feedback: list[Feedback] = field(default_factory=list)
    model_call: ModelCall | None = None
    order_event: OrderEvent | None = None


_ROLES = {
    MessageKind.CUSTOMER: "customer",
    MessageKind.ASSISTANT: "assistant",
    MessageKind.STAFF: "staff",
    MessageKind.NOTICE: "notice",
    MessageKind.TOOL_RESULTS: "tool_results",
}


def pair_model_calls(
    messages: Iterable[Message], calls: Sequence[ModelCall]
) -> Iterator[tuple[Message, ModelCall | None]]:
    """Each message with the model call that produced it (assistant messages only).

    The loop records a call just before it stores the assistant message the call returned, in
    the same turn; a call that failed produced no message. ``messages`` may be a lazy iterator
    in seq order; ``calls`` are in creation order.
    """
    ordered = sorted(calls, key=lambda call: (call.created_at, call.pk))
    index = 0
    latest: ModelCall | None = None
    for message in messages:
        while index < len(ordered) and ordered[index].created_at <= message.created_at:
            call = ordered[index]
            latest = None if call.error else call
            index += 1
        paired = None
        if (
            message.kind == MessageKind.ASSISTANT
            and latest is not None
            and latest.turn_id == message.turn_id
        ):
            paired, latest = latest, None
        yield message, paired


def build_transcript(
    *,
    messages: Sequence[Message],
    model_calls: Sequence[ModelCall],
    actions: Sequence[PendingAction] = (),
    order_events: Sequence[OrderEvent] = (),
    feedback: Sequence[Feedback] = (),
) -> list[Entry]:
    """The transcript in the order things happened, tool results attached to their calls."""
    results: dict[str, dict[str, Any]] = {}
    for message in messages:
        for block in _blocks(message):
            result = block.get("toolResult")
            if isinstance(result, dict):
                results[str(result.get("toolUseId"))] = result
    actions_by_use = {action.tool_use_id: action for action in actions}
    feedback_by_message: dict[int, list[Feedback]] = {}
    for item in feedback:
        feedback_by_message.setdefault(item.message_id, []).append(item)

    timeline: list[tuple[datetime, int, int, Entry]] = []
    for model_call in model_calls:
        entry = Entry(kind="model_call", created_at=model_call.created_at, model_call=model_call)
        timeline.append((model_call.created_at, 0, model_call.pk, entry))
    for message in messages:
        event = message_event(message)
        calls = []
        for block in _blocks(message):
            use = block.get("toolUse")
            if not isinstance(use, dict):
                continue
            use_id = str(use.get("toolUseId"))
            call = ToolCall(
                tool_use_id=use_id,
                name=str(use.get("name", "")),
                input=pretty_json(use.get("input")),
                action=actions_by_use.get(use_id),
            )
            result = results.get(use_id)
            if result is not None:
                call.status = str(result.get("status") or "success")
                call.result = result_text(result)
            elif call.action is not None:
                call.status = f"waiting for the customer ({call.action.state})"
            calls.append(call)
        entry = Entry(
            kind="message",
            created_at=message.created_at,
            role=_ROLES.get(MessageKind(message.kind), message.kind),
            message=message,
            text=event["text"] if event else "",
            preamble=bool(event and event.get("preamble")),
            raw=pretty_json(message.content),
            tool_calls=calls,
            feedback=feedback_by_message.get(message.pk, []),
        )
        timeline.append((message.created_at, 1, message.seq, entry))
    for order_event in order_events:
        entry = Entry(
            kind="order_event", created_at=order_event.created_at, order_event=order_event
        )
        timeline.append((order_event.created_at, 2, order_event.pk, entry))
    timeline.sort(key=lambda item: item[:3])
    return [item[3] for item in timeline]


def conversation_transcript(conversation: Conversation) -> list[Entry]:
    """The transcript of one conversation, in five queries whatever its length."""
    return build_transcript(
        messages=list(Message.objects.filter(conversation_id=conversation.pk).order_by("seq")),
        model_calls=list(ModelCall.objects.filter(conversation_id=conversation.pk)),
        actions=list(
            PendingAction.objects.filter(conversation_id=conversation.pk).select_related(
                "decided_by"
            )
        ),
        order_events=order_events_of_conversation(conversation_id=conversation.pk),
        feedback=list(
            Feedback.objects.filter(conversation_id=conversation.pk).select_related("user")
        ),
    )
