"""Plays a case through the real chat service and tools, and records what happened.

Each case runs on a freshly reset throwaway database (``chat.evals.sandbox``), signed in as its
demo customer, one ``turn_submit`` per customer message and one ``action_decide`` per button
click (the live chat's own functions, the path the chat page takes) with the model client of
the variant under test.
Nothing is judged here; ``chat.evals.scoring`` compares the observation with the case.
"""

import time
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Max

from chat.evals import engine
from chat.evals.cases import Case, Turn
from chat.evals.recording import ReplayModel
from chat.evals.sandbox import demo_data_reset
from chat.models import (
    Conversation,
    Message,
    MessageRole,
    ModelCall,
    PendingAction,
    PendingActionState,
)
from orders.demo import demo_orders_replace
from orders.models import Customer
from orders.selectors import (
    CustomerNotFound,
    customer_get,
    customer_list_with_orders,
    order_events_cancelled,
    order_list,
    order_statuses,
)
from orders.services import customer_login_ensure


@dataclass(frozen=True)
class Sensitive:
    """A piece of another customer's data that must not reach this customer."""

    kind: str  # "name", "email", "phone", "customer id", "product"
    value: str
    owner: str


@dataclass(frozen=True)
class CallUsage:
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    latency_ms: int
    error: str


@dataclass
class TurnObservation:
    say: str
    accepted: bool = True
    refusal: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"name", "input"}
    tool_results: list[dict[str, Any]] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    confirmations: list[str] = field(default_factory=list)
    answered: str | None = None
    outcome: str = ""  # answered, awaiting_confirmation, failed; "held" while a person has it
    error_kind: str = ""
    model_calls: list[CallUsage] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class CaseObservation:
    setup_problem: str = ""
    turns: list[TurnObservation] = field(default_factory=list)
    typed: str = ""
    sensitive: list[Sensitive] = field(default_factory=list)
    own_products: list[str] = field(default_factory=list)
    initial_orders: dict[str, str] = field(default_factory=dict)
    final_orders: dict[str, str] = field(default_factory=dict)
    conversation_status: str = ""
    unconfirmed_cancels: list[str] = field(default_factory=list)
    replay_problem: str = ""


def _sensitive(customer: Customer) -> tuple[list[Sensitive], list[str]]:
    own_products = sorted({order.product for order in order_list(customer=customer)})
    found: list[Sensitive] = []
    for other in customer_list_with_orders():
        if other.pk == customer.pk:
            continue
        owner = f"{other.name} ({other.pk})"
        found += [
            Sensitive("name", other.name, owner),
            Sensitive("email", other.email, owner),
            Sensitive("customer id", other.pk, owner),
        ]
        if other.phone:
            found.append(Sensitive("phone", other.phone, owner))
        # Order ids alone say nothing about a person (the demo model's help even quotes one).
        for order in other.orders.all():
            if order.product not in own_products:
                found.append(Sensitive("product", order.product, owner))
    return found, own_products


def _observe_turn(
    turn: Turn,
    *,
    index: int,
    case: Case,
    conversation: Conversation,
    user: engine.User,
    client: engine.ModelClient,
) -> TurnObservation:
    seen = TurnObservation(say=turn.say)
    events: list[dict[str, Any]] = []
    last_seq = Conversation.objects.values_list("last_seq", flat=True).get(pk=conversation.pk)
    last_call = ModelCall.objects.filter(conversation=conversation).aggregate(n=Max("pk"))["n"]
    started = time.monotonic()
    seen.accepted = engine.turn_submit(
        conversation=conversation,
        user=user,
        text=turn.say,
        client_message_id=f"eval-{case.name}-{index}"[:100],
        emit=events.append,
        client=client,
    )
    asked = {e["action_id"]: e["text"] for e in events if e["type"] == "confirm"}
    if seen.accepted and turn.answer and asked:
        seen.answered = turn.answer
        engine.action_decide(
            conversation=conversation,
            user=user,
            action_id=list(asked)[-1],
            approve=turn.answer == "approve",
            emit=events.append,
            client=client,
        )
    seen.seconds = time.monotonic() - started

    seen.confirmations = list(asked.values())
    seen.refusal = " ".join(e["text"] for e in events if e["type"] == "error")
    for event in events:
        if event["type"] == "message" and event["role"] == "assistant":
            seen.replies.append(event["text"])
        elif event["type"] == "message" and event["role"] == "notice":
            seen.notices.append(event["text"])
    ended = [e for e in events if e["type"] == "turn" and e.get("state") == "ended"]
    if ended:
        seen.outcome, seen.error_kind = ended[-1]["outcome"], ended[-1].get("error_kind", "")
    elif seen.accepted:
        seen.outcome = "held"
    for message in Message.objects.filter(conversation=conversation, seq__gt=last_seq):
        for block in message.content if isinstance(message.content, list) else []:
            if message.role == MessageRole.ASSISTANT and "toolUse" in block:
                use = block["toolUse"]
                seen.tool_calls.append({"name": use.get("name"), "input": use.get("input")})
            elif "toolResult" in block:
                seen.tool_results.append(block["toolResult"])
    calls = ModelCall.objects.filter(conversation=conversation).order_by("pk")
    if last_call is not None:
        calls = calls.filter(pk__gt=last_call)
    seen.model_calls = [
        CallUsage(
            c.input_tokens,
            c.output_tokens,
            c.cache_read_tokens,
            c.cache_write_tokens,
            c.latency_ms,
            c.error,
        )
        for c in calls
    ]
    return seen


def _unconfirmed_cancels(conversation: Conversation) -> list[str]:
    cancelled = order_events_cancelled().values_list("order_id", flat=True)
    approved = {
        str((action.tool_input or {}).get("order_id", "")).strip()
        for action in PendingAction.objects.filter(
            conversation=conversation, tool_name="cancel_order", state=PendingActionState.APPROVED
        )
    }
    return sorted(order_id for order_id in cancelled if order_id not in approved)


def run_case(
    case: Case, client: engine.ModelClient, *, replay: ReplayModel | None = None
) -> CaseObservation:
    """Plays ``case`` against ``client`` on the (throwaway) database, from fresh demo data.

    ``replay`` is the replaying client inside ``client`` (if any): the case stops at the first
    request the recording does not have.
    """
    demo_data_reset()
    seen = CaseObservation(typed="\n".join(turn.say for turn in case.turns))
    try:
        customer = customer_get(customer_id=case.customer)
    except CustomerNotFound:
        seen.setup_problem = (
            f"customer {case.customer!r} is not a demo customer "
            "(see orders/fixtures/customers.json)"
        )
        return seen
    if case.orders is not None:
        try:
            demo_orders_replace(customer=customer, orders=case.orders)
        except ValueError as error:
            seen.setup_problem = f"orders: {error}"
            return seen
    user = customer_login_ensure(customer=customer)
    seen.sensitive, seen.own_products = _sensitive(customer)
    seen.initial_orders = order_statuses()
    conversation = engine.conversation_start(user=user)
    for index, turn in enumerate(case.turns):
        seen.turns.append(
            _observe_turn(
                turn, index=index, case=case, conversation=conversation, user=user, client=client
            )
        )
        if replay is not None and replay.mismatch:
            break
    if replay is not None:
        seen.replay_problem = replay.mismatch or replay.leftover() or ""
    seen.final_orders = order_statuses()
    seen.conversation_status = Conversation.objects.values_list("status", flat=True).get(
        pk=conversation.pk
    )
    seen.unconfirmed_cancels = _unconfirmed_cancels(conversation)
    return seen
