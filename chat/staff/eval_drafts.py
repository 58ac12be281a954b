"""A stored conversation as a draft eval case (``manage.py evaluate``), with nothing personal.

Support leads download drafts from the conversation list in admin; a draft leaves the system
like an export does, so it takes the export permission. The draft signs in as a demo customer
(``STAND_INS``) whose orders are made to be the ones the conversation touched (under new ids),
replays what the customer typed and clicked, expects the tool calls and confirmations that
happened, and carries the model's responses as its ``recorded`` list, so ``evaluate <draft>
--model recorded`` plays the conversation again as it went. A lead then edits the expectations
into what *should* happen and runs it against models.

What is replaced: see ``chat.staff.scrub``. The ``recorded`` items have the shape
``chat.evals.recording.stored_exchanges`` reads. The conversation stops at its first hand-over
to a person (a person's replies cannot be replayed) and before a turn a restart cut short.
"""

from datetime import datetime
from typing import Any

import yaml

from chat.engine.replies import visible_text
from chat.models import (
    Conversation,
    HandoffEvent,
    Message,
    MessageKind,
    MessageRole,
    ModelCall,
    PendingAction,
    PendingActionState,
    Turn,
    TurnState,
)
from chat.staff.scrub import Scrubber
from chat.staff.transcript import pair_model_calls
from orders.demo import demo_records
from orders.models import OrderStatus
from orders.selectors import order_events_cancelled, order_list

# Demo customers a draft signs in as: the first that is not the conversation's own customer.
STAND_INS = ("890123", "901234")
_FIRST_NEW_ORDER_ID = 10001
_RECORDED_ERRORS = ("busy", "unavailable", "rejected")

HEADER = """\
# Draft eval case, drafted on {date} from a support conversation.
# The customer's name, email, phone, username and ids are replaced by the demo customer
# {stand_in}'s, order ids by new ones, other emails and phone numbers by placeholders.
# Check the free text for anything else personal (an address, a card number) before sharing.
#
# As drafted it expects what happened. Play it again as it went:
#   manage.py evaluate {{this file}} --model recorded
# then edit the expectations into what should happen, delete `recorded` if you like, and run
# it against a model (see "Evals" in the README).
"""


def _stand_in(customer_id: str) -> dict[str, str]:
    customers = {record["pk"]: record["fields"] for record in demo_records("customers")}
    chosen = next(pk for pk in STAND_INS if pk != customer_id)
    return {
        "id": chosen,
        **{k: customers[chosen][k] for k in ("name", "email", "phone", "username")},
    }


def _new_order_ids(real_ids: list[str]) -> dict[str, str]:
    taken = {record["pk"] for record in demo_records("orders")} | set(real_ids)
    mapping, candidate = {}, _FIRST_NEW_ORDER_ID
    for real in real_ids:
        while str(candidate) in taken:
            candidate += 1
        mapping[real] = str(candidate)
        taken.add(str(candidate))
    return mapping


def _reply_text(message: Message) -> str:
    """What the customer saw of a stored assistant message (the reply, no thinking)."""
    return visible_text({"role": "assistant", "content": _blocks(message)})


def _blocks(message: Message) -> list[dict[str, Any]]:
    return (
        [b for b in message.content if isinstance(b, dict)]
        if isinstance(message.content, list)
        else []
    )


def _included_turns(conversation: Conversation) -> list[Turn]:
    turns = list(Turn.objects.filter(conversation=conversation).order_by("started_at"))
    handed_over = (
        HandoffEvent.objects.filter(conversation=conversation)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    included = []
    for turn in turns:
        if turn.state == TurnState.INTERRUPTED or (handed_over and turn.started_at > handed_over):
            break
        included.append(turn)
    return included


def _order_ids_seen(messages: list[Message]) -> list[str]:
    """Order ids in tool inputs and results, in the order they first appear."""
    seen: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, str) and value.strip() and value.strip() not in seen:
            seen.append(value.strip())

    for message in messages:
        for block in _blocks(message):
            add(
                (block.get("toolUse") or {}).get("input", {}).get("order_id")
                if "toolUse" in block
                else None
            )
            for item in (block.get("toolResult") or {}).get("content") or []:
                data = item.get("json") if isinstance(item, dict) else None
                if not isinstance(data, dict):
                    continue
                for order in [data, data.get("order"), *(data.get("orders") or [])]:
                    if isinstance(order, dict) and "status" in order:
                        add(order.get("id"))
    return seen


def _first_statuses(messages: list[Message]) -> dict[str, str]:
    """Each order's status as a lookup tool first reported it in the conversation."""
    names = {
        b["toolUse"]["toolUseId"]: b["toolUse"].get("name")
        for m in messages
        for b in _blocks(m)
        if "toolUse" in b
    }
    statuses: dict[str, str] = {}
    for message in messages:
        for block in _blocks(message):
            result = block.get("toolResult") or {}
            if names.get(result.get("toolUseId")) == "cancel_order":
                continue  # reports the status after the cancel
            for item in result.get("content") or []:
                data = item.get("json") if isinstance(item, dict) else None
                if isinstance(data, dict):
                    for order in [data, *(data.get("orders") or [])]:
                        if isinstance(order, dict) and "status" in order and "id" in order:
                            statuses.setdefault(str(order["id"]), str(order["status"]))
    return statuses


def _orders(
    conversation: Conversation, messages: list[Message], ids: dict[str, str]
) -> list[dict[str, Any]]:
    statuses = _first_statuses(messages)
    asked = set(
        PendingAction.objects.filter(conversation=conversation).values_list(
            "tool_input__order_id", flat=True
        )
    )
    own = {order.pk: order for order in order_list(customer=conversation.customer)}
    orders = []
    for real_id, new_id in ids.items():  # in the order the conversation first mentioned them
        order = own.get(real_id)
        if order is None:
            continue  # another customer's, or no such order: not found in the replay either
        # The status before the conversation changed anything; a cancel it asked about was
        # possible, so the order was Processing then.
        status = statuses.get(real_id) or str(
            OrderStatus.PROCESSING if real_id in asked else order.status
        )
        orders.append(
            {
                "id": new_id,
                "product": order.product,
                "quantity": order.quantity,
                "price": f"{order.unit_price:.2f}",
                "status": status,
            }
        )
    return orders


def _answer(turn: Turn, action: PendingAction | None, messages: list[Message]) -> str | None:
    """ "approve"/"decline" when the customer clicked the button in this turn, else None."""
    if action is None or action.state not in (
        PendingActionState.APPROVED,
        PendingActionState.DECLINED,
    ):
        return None
    for message in messages:
        if (
            message.turn_id == turn.pk
            and message.kind == MessageKind.TOOL_RESULTS
            and any(
                (b.get("toolResult") or {}).get("toolUseId") == action.tool_use_id
                for b in _blocks(message)
            )
        ):
            return "approve" if action.state == PendingActionState.APPROVED else "decline"
    return None


def _turn(turn: Turn, messages: list[Message], scrub: Scrubber) -> dict[str, Any] | None:
    own = [m for m in messages if m.turn_id == turn.pk]
    said = next((m for m in own if m.kind == MessageKind.CUSTOMER), None)
    if said is None:
        return None
    text = "\n".join(b["text"] for b in _blocks(said) if isinstance(b.get("text"), str))
    calls = [
        {"name": b["toolUse"]["name"], "input": scrub.value(b["toolUse"].get("input") or {})}
        for m in own
        if m.role == MessageRole.ASSISTANT
        for b in _blocks(m)
        if "toolUse" in b
    ]
    action = PendingAction.objects.filter(turn=turn).order_by("created_at").first()
    expect: dict[str, Any] = {"tools": calls, "confirmation": action is not None}
    if turn.outcome == "failed":
        expect["outcome"] = "failed"
    drafted: dict[str, Any] = {"say": scrub.text(text)}
    answer = _answer(turn, action, messages)
    if answer:
        drafted["answer"] = answer
    drafted["expect"] = expect
    replies = [_reply_text(m) for m in own if m.kind == MessageKind.ASSISTANT]
    replies = [r for r in replies if r]
    if replies:
        drafted["note"] = "The assistant replied: " + scrub.text("\n".join(replies))
    return drafted


def _recorded(turns: list[Turn], messages: list[Message], scrub: Scrubber) -> list[dict[str, Any]]:
    calls = list(ModelCall.objects.filter(turn__in=turns).order_by("created_at", "pk"))
    produced = {
        call.pk: message for message, call in pair_model_calls(messages, calls) if call is not None
    }
    recorded: list[dict[str, Any]] = []
    for call in calls:
        if call.error:
            recorded.append(
                {"error": call.error if call.error in _RECORDED_ERRORS else "unavailable"}
            )
            continue
        message = produced.get(call.pk)
        recorded.append(
            {
                "stop_reason": call.stop_reason or "end_turn",
                "content": scrub.value(message.content) if message is not None else [],
                "usage": {
                    "inputTokens": call.input_tokens,
                    "outputTokens": call.output_tokens,
                    "totalTokens": call.input_tokens + call.output_tokens,
                    "cacheReadInputTokens": call.cache_read_tokens,
                    "cacheWriteInputTokens": call.cache_write_tokens,
                },
                "latency_ms": call.latency_ms,
            }
        )
    return recorded


def conversation_draft(conversation: Conversation, *, now: datetime) -> str:
    """The draft case (YAML text) for ``conversation``; see the module docstring.

    Authorization is the caller's: the draft holds no personal data, but only support leads
    may make one (the admin action requires ``chat.export_conversations``).
    """
    customer = conversation.customer
    turns = _included_turns(conversation)
    messages = list(
        Message.objects.filter(conversation=conversation, turn__in=turns).order_by("seq")
    )
    own_orders = [order.pk for order in order_list(customer=customer)]
    seen = _order_ids_seen(messages)
    ids = _new_order_ids(seen + [pk for pk in own_orders if pk not in seen])
    stand_in = _stand_in(customer.pk)
    scrub = Scrubber(
        real={
            "id": customer.pk,
            "name": customer.name,
            "email": customer.email,
            "phone": customer.phone,
            "username": customer.username,
        },
        stand_in=stand_in,
        order_ids=ids,
    )
    drafted_turns = [t for t in (_turn(turn, messages, scrub) for turn in turns) if t is not None]
    orders = _orders(conversation, messages, {k: v for k, v in ids.items() if k in seen})
    cancelled = {
        ids[pk]
        for pk in order_events_cancelled()
        .filter(conversation_id=conversation.pk, order_id__in=list(ids))
        .values_list("order_id", flat=True)
    }
    final: dict[str, Any] = {
        "orders": {
            o["id"]: str(OrderStatus.CANCELLED) if o["id"] in cancelled else o["status"]
            for o in orders
        }
    }
    if conversation.escalated_at is not None and any(
        c["name"] == "request_human_agent" for t in drafted_turns for c in t["expect"]["tools"]
    ):
        final["conversation"] = "waiting_for_agent"
    case = {
        "description": f"Drafted from a conversation of {len(drafted_turns)} turn(s).",
        "customer": stand_in["id"],
        "orders": orders,
        "turns": drafted_turns,
        "final": final,
        "recorded": _recorded(turns, messages, scrub),
    }
    header = HEADER.format(date=now.date().isoformat(), stand_in=stand_in["name"])
    return header + yaml.dump(case, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


class _Dumper(yaml.SafeDumper):
    """Multi-line text as YAML block literals, so thinking and replies stay readable."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)
