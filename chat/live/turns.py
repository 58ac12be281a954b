"""Conversations: loading, storing and running turns.

The consumer calls these; they load the stored history, hand it to the pure tool loop
(``chat.agent.run_turn``) and store every step as it happens, so a reload, another tab or a
restarted process always finds a history Converse accepts.

Authorization: a conversation belongs to the user who started it and is bound to that user's
customer; every public function takes the acting user and treats someone else's conversation
exactly like a missing one (``ConversationNotFound``). The tools only ever see the
conversation's customer.

Events passed to ``emit`` are plain JSON-able dicts:

- ``{"type": "message", "seq", "id", "role": "customer"|"assistant"|"staff"|"notice", "text",
  "created_at"}`` once a message the customer can see is stored (after its transaction commits);
- ``{"type": "delta", "turn", "text"}`` streaming reply text, ``{"type": "status", "turn",
  "text"}`` tool progress;
- ``{"type": "confirm", "action_id", "text"}`` a cancellation waits for the customer, and
  ``{"type": "action_resolved", "action_id", "approved"}`` once it is decided;
- ``{"type": "turn", "turn", "state": "started"}`` and ``{"type": "turn", "turn",
  "state": "ended", "outcome": "answered"|"awaiting_confirmation"|"failed", "error_kind",
  "retryable"}``; a failed turn also stores a notice with a customer-safe text;
- ``{"type": "error", "text", "retryable"}`` for a message that was not accepted.
"""

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat.agent import (
    ModelCallRecord,
    PendingConfirmation,
    ToolOutcome,
    TurnConfig,
    TurnResult,
    complete_pending,
    run_turn,
)
from chat.modelapi import ModelClient
from chat.models import (
    MODEL_KINDS,
    Conversation,
    ConversationStatus,
    Message,
    MessageKind,
    MessageRole,
    ModelCall,
    PendingAction,
    PendingActionState,
    Turn,
    TurnState,
)
from chat.prompts import system_prompt
from chat.replies import visible_text
from chat.tools import CustomerTools
from orders.models import Customer

logger = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]
User = AbstractBaseUser | AnonymousUser

KEPT_TEXT = "The customer chose to keep the order."
NOT_CONFIRMED_TEXT = "The customer did not confirm the cancellation."
INTERRUPTED_RESULT_TEXT = "The reply was interrupted before this tool finished."
INTERRUPTED_NOTICE = "This reply did not finish. Please send your message again."
BUSY_TEXT = "Please wait until the assistant has finished its reply, then send your message again."
INTERNAL_ERROR_NOTICE = "Sorry, something went wrong on our side. Please try again."
TITLE_CHARS = 80

# Failed turns the customer can simply try again.
_RETRYABLE_ERRORS = frozenset(
    {"busy", "unavailable", "deadline", "capped", "malformed", "unknown_stop", "empty"}
)


class ConversationNotFound(Exception):
    """The conversation does not exist or is not the user's: indistinguishable on purpose."""


# --- Conversations ------------------------------------------------------------------------------


def _customer_of(user: User) -> Customer | None:
    if not user.is_authenticated:
        return None
    return Customer.objects.filter(user_id=user.pk).first()


def conversation_list(*, user: User) -> list[Conversation]:
    """The user's conversations, most recently active first."""
    if not user.is_authenticated:
        return []
    return list(Conversation.objects.filter(owner_id=user.pk).order_by("-updated_at"))


def conversation_start(*, user: User) -> Conversation:
    """Starts a conversation bound to the user's customer.

    Raises: ``PermissionDenied`` when the user is not signed in as a customer (staff accounts
    without a customer have no orders to talk about).
    """
    customer = _customer_of(user)
    if customer is None or customer.user_id is None:
        raise PermissionDenied("Only customers can start a conversation.")
    return Conversation.objects.create(owner_id=customer.user_id, customer=customer)


def conversation_key(conversation_id: uuid.UUID | str) -> uuid.UUID:
    """The conversation id as a UUID; a malformed one is as missing as an unknown one.

    Raises: ``ConversationNotFound``.
    """
    if isinstance(conversation_id, uuid.UUID):
        return conversation_id
    try:
        return uuid.UUID(str(conversation_id))
    except ValueError:
        raise ConversationNotFound from None


def conversation_get(*, user: User, conversation_id: uuid.UUID | str) -> Conversation:
    """One of the user's conversations.

    Raises: ``ConversationNotFound`` when it is missing, not the user's, or the id is malformed.
    """
    if not user.is_authenticated:
        raise ConversationNotFound
    try:
        return Conversation.objects.select_related("customer").get(
            pk=conversation_key(conversation_id), owner_id=user.pk
        )
    except Conversation.DoesNotExist:
        raise ConversationNotFound from None


def _acting_customer(conversation: Conversation, user: User) -> Customer:
    """The conversation's customer, if ``user`` may still act for it."""
    if not user.is_authenticated or conversation.owner_id != user.pk:
        raise ConversationNotFound
    customer = Customer.objects.filter(pk=conversation.customer_id, user_id=user.pk).first()
    if customer is None:
        # The sign-in account was unlinked from the customer since the conversation started.
        raise ConversationNotFound
    return customer


# --- What the customer sees ---------------------------------------------------------------------


def _texts(content: list[Any]) -> str:
    return "\n".join(
        block["text"]
        for block in content
        if isinstance(block, dict) and isinstance(block.get("text"), str)
    ).strip()


_DISPLAY_ROLES = {
    MessageKind.CUSTOMER: "customer",
    MessageKind.ASSISTANT: "assistant",
    MessageKind.STAFF: "staff",
    MessageKind.NOTICE: "notice",
}


# A support agent's message as the model reads it: a user-role note naming the agent, so the
# assistant knows what a person told the customer when it takes over again.
_STAFF_NOTE = re.compile(r"^\[Support agent(?: (?P<name>[^\]\n]{1,150}))?\]: ")


def staff_note(name: str, text: str) -> str:
    """The stored text of a support agent's message to the customer."""
    name = " ".join(name.replace("]", " ").split())
    return f"[Support agent {name}]: {text}" if name else f"[Support agent]: {text}"


def staff_note_parts(text: str) -> tuple[str, str]:
    """The agent's name and the message of a stored ``staff_note``."""
    match = _STAFF_NOTE.match(text)
    if match is None:
        return "", text
    return match.group("name") or "", text[match.end() :]


def message_event(message: Message) -> dict[str, Any] | None:
    """The "message" event for a stored message, or None when the customer sees nothing of it.

    Assistant messages show only their reply text (never thinking or tool calls); tool results
    show nothing. Staff messages carry the agent's first name as "name".
    """
    role = _DISPLAY_ROLES.get(MessageKind(message.kind))
    if role is None:
        return None
    content = message.content if isinstance(message.content, list) else []
    if message.kind == MessageKind.ASSISTANT:
        text = visible_text({"role": "assistant", "content": content})
    else:
        text = _texts(content)
    name = None
    if message.kind == MessageKind.STAFF:
        name, text = staff_note_parts(text)
    if not text:
        return None
    event = {
        "type": "message",
        "seq": message.seq,
        "id": str(message.pk),
        "role": role,
        "text": text,
        "created_at": message.created_at.isoformat(),
    }
    if name is not None:
        event["name"] = name
    return event


def conversation_messages_for_display(
    *, conversation: Conversation, after_seq: int = 0
) -> list[dict[str, Any]]:
    """The stored messages after ``after_seq`` as the customer saw them, as "message" events."""
    messages = Message.objects.filter(conversation_id=conversation.pk, seq__gt=after_seq).order_by(
        "seq"
    )
    return [event for event in (message_event(m) for m in messages) if event is not None]


def _confirm_event(action: PendingAction) -> dict[str, Any]:
    return {"type": "confirm", "action_id": str(action.pk), "text": action.summary}


def events_since(*, conversation: Conversation, after_seq: int) -> list[dict[str, Any]]:
    """The "message" events of the stored messages after ``after_seq``, in seq order.

    While a cancellation waits for the customer, its "confirm" event comes last, so a reloaded
    page shows the question again (clients recognise a repeat by its ``action_id``).
    """
    events = conversation_messages_for_display(conversation=conversation, after_seq=after_seq)
    action = PendingAction.objects.filter(
        conversation_id=conversation.pk, state=PendingActionState.PENDING
    ).first()
    if action is not None:
        events.append(_confirm_event(action))
    return events


# --- Storing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NewMessage:
    role: str
    kind: str
    content: list[dict[str, Any]]
    client_message_id: str = ""
    author_id: int | None = None


def _append(conversation_id: uuid.UUID, turn: Turn | None, new: list[_NewMessage]) -> list[Message]:
    """Stores messages with the next seqs of the conversation.

    The conversation row is locked for the rest of the caller's transaction, so concurrent
    writers take turns and seqs never repeat or skip (SQLite ignores the lock but serialises
    writers itself).
    """
    with transaction.atomic():
        conversation = (
            Conversation.objects.select_for_update().only("pk", "last_seq").get(pk=conversation_id)
        )
        seq = conversation.last_seq
        stored = []
        for item in new:
            seq += 1
            stored.append(
                Message.objects.create(
                    conversation_id=conversation_id,
                    turn=turn,
                    seq=seq,
                    role=item.role,
                    kind=item.kind,
                    content=item.content,
                    client_message_id=item.client_message_id,
                    author_id=item.author_id,
                )
            )
        Conversation.objects.filter(pk=conversation_id).update(
            last_seq=seq, updated_at=timezone.now()
        )
    return stored


def _message_kind(message: dict[str, Any]) -> str:
    if message["role"] == MessageRole.ASSISTANT:
        return MessageKind.ASSISTANT
    if _texts(message.get("content") or []):
        return MessageKind.CUSTOMER
    return MessageKind.TOOL_RESULTS


def _history(conversation_id: uuid.UUID) -> list[dict[str, Any]]:
    """The conversation as the model sees it (notices left out; ``repair`` merges staff notes
    into the customer's messages around them, so roles keep alternating)."""
    rows = Message.objects.filter(conversation_id=conversation_id, kind__in=MODEL_KINDS).order_by(
        "seq"
    )
    return [
        {
            "role": row.role,
            "content": _unforged(row.content) if row.kind == MessageKind.CUSTOMER else row.content,
        }
        for row in rows
    ]


def _unforged(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # A customer who types "[Support agent Sam]: ..." must not pass for staff with the model.
    return [
        {"text": f"[Customer]: {block['text']}"}
        if "text" in block and _STAFF_NOTE.match(block["text"])
        else block
        for block in content
    ]


def _safe_emit(emit: Emit, event: dict[str, Any]) -> None:
    # Live events are best effort: the stored history is the truth and a lost event must not
    # end a turn half-stored.
    try:
        emit(event)
    except Exception:
        logger.exception("Could not emit a %s event", event.get("type"))


def _emit_messages(emit: Emit, messages: list[Message]) -> None:
    for message in messages:
        event = message_event(message)
        if event is not None:
            _safe_emit(emit, event)


class _StoringSink:
    """The loop's ``TurnSink``: stores each step in its own transaction, then tells the tabs."""

    def __init__(self, *, conversation_id: uuid.UUID, turn: Turn, emit: Emit) -> None:
        self.conversation_id = conversation_id
        self.turn = turn
        self.emit = emit

    def model_called(self, record: ModelCallRecord) -> None:
        ModelCall.objects.create(
            conversation_id=self.conversation_id,
            turn=self.turn,
            model_id=record.model_id[:200],
            stop_reason=(record.stop_reason or "")[:64],
            input_tokens=max(0, record.input_tokens),
            output_tokens=max(0, record.output_tokens),
            cache_read_tokens=max(0, record.cache_read_tokens),
            cache_write_tokens=max(0, record.cache_write_tokens),
            latency_ms=max(0, record.latency_ms),
            error=record.error[:200],
        )
        _touch(self.turn)

    def messages_appended(self, messages: list[dict[str, Any]]) -> None:
        # An assistant toolUse message and its results are stored together or not at all.
        with transaction.atomic():
            stored = _append(
                self.conversation_id,
                self.turn,
                [
                    _NewMessage(role=m["role"], kind=_message_kind(m), content=m["content"])
                    for m in messages
                ],
            )
            _touch(self.turn)
        _emit_messages(self.emit, stored)

    def text_delta(self, text: str) -> None:
        _safe_emit(self.emit, {"type": "delta", "turn": str(self.turn.pk), "text": text})

    def tool_started(self, name: str, tool_input: dict[str, Any], description: str) -> None:
        _safe_emit(self.emit, {"type": "status", "turn": str(self.turn.pk), "text": description})


def _touch(turn: Turn) -> None:
    Turn.objects.filter(pk=turn.pk).update(active_at=timezone.now())


# --- Running turns ------------------------------------------------------------------------------


def turn_config(customer: Customer) -> TurnConfig:
    """The loop's settings for a conversation with ``customer``, from the Django settings."""
    bedrock = settings.CHAT_MODEL == "bedrock"
    guardrail = None
    if settings.BEDROCK_GUARDRAIL_ID:
        guardrail = (settings.BEDROCK_GUARDRAIL_ID, settings.BEDROCK_GUARDRAIL_VERSION)
    return TurnConfig(
        model_id=settings.BEDROCK_MODEL_ID if bedrock else "demo",
        system_prompt=system_prompt(customer),
        inference_config={
            "temperature": settings.BEDROCK_TEMPERATURE,
            "maxTokens": settings.BEDROCK_MAX_TOKENS,
        },
        additional_model_request_fields={"top_k": settings.BEDROCK_TOP_K}
        if settings.BEDROCK_TOP_K
        else {},
        max_model_calls=settings.CHAT_MAX_MODEL_CALLS_PER_TURN,
        deadline_seconds=settings.CHAT_TURN_DEADLINE_SECONDS,
        prompt_caching=settings.BEDROCK_PROMPT_CACHING and bedrock,
        guardrail=guardrail if bedrock else None,
        stream=True,
    )


def _turn_started(turn: Turn, emit: Emit) -> None:
    _safe_emit(emit, {"type": "turn", "turn": str(turn.pk), "state": "started"})


def _run(
    *,
    conversation_id: uuid.UUID,
    customer: Customer,
    tools: CustomerTools,
    turn: Turn,
    emit: Emit,
    client: ModelClient | None,
) -> None:
    """Runs the loop on the stored history and stores how the turn ended."""
    # Imported here: chat.bedrock is the only boto3 importer, and a demo deployment never needs it.
    from chat.bedrock import get_model_client

    sink = _StoringSink(conversation_id=conversation_id, turn=turn, emit=emit)
    try:
        result = run_turn(
            client=client or get_model_client(),
            history=_history(conversation_id),
            tools=tools,
            config=turn_config(customer),
            sink=sink,
        )
    except Exception:
        # A bug, not a model failure (those arrive as a failed TurnResult): end the turn so the
        # conversation does not stay blocked, and tell the customer in plain words.
        logger.exception("Turn %s failed unexpectedly", turn.pk)
        result = TurnResult(
            outcome="failed", reply=INTERNAL_ERROR_NOTICE, stop_reason=None, error_kind="internal"
        )
    _finish(conversation_id=conversation_id, turn=turn, result=result, tools=tools, emit=emit)


def _finish(
    *, conversation_id: uuid.UUID, turn: Turn, result: TurnResult, tools: CustomerTools, emit: Emit
) -> None:
    action: PendingAction | None = None
    notices: list[Message] = []
    with transaction.atomic():
        if result.outcome == "awaiting_confirmation" and result.pending is not None:
            pending = result.pending
            action = PendingAction.objects.create(
                conversation_id=conversation_id,
                turn=turn,
                tool_use_id=pending.tool_use_id,
                tool_name=pending.name,
                tool_input=pending.tool_input,
                results=pending.results,
                tool_uses=pending.tool_uses,
                summary=tools.confirmation_text(pending.name, pending.tool_input)[:300],
            )
            turn.state = TurnState.AWAITING_CONFIRMATION
        elif result.outcome == "answered":
            turn.state = TurnState.COMPLETED
            turn.ended_at = timezone.now()
        else:
            turn.state = TurnState.FAILED
            turn.ended_at = timezone.now()
            notices = _append(
                conversation_id,
                turn,
                [_NewMessage(MessageRole.ASSISTANT, MessageKind.NOTICE, [{"text": result.reply}])],
            )
        turn.outcome = result.outcome
        turn.error_kind = result.error_kind[:32]
        turn.active_at = timezone.now()
        turn.save(update_fields=["state", "ended_at", "outcome", "error_kind", "active_at"])
    _emit_messages(emit, notices)
    if action is not None:
        _safe_emit(emit, _confirm_event(action))
    ended: dict[str, Any] = {
        "type": "turn",
        "turn": str(turn.pk),
        "state": "ended",
        "outcome": result.outcome,
    }
    if result.outcome == "failed":
        ended["error_kind"] = result.error_kind
        ended["retryable"] = result.error_kind in _RETRYABLE_ERRORS
    _safe_emit(emit, ended)


# --- Confirmations ------------------------------------------------------------------------------

_WORDS = re.compile(r"[^\w\s']+")
YES_ANSWERS = frozenset(
    {
        "yes", "y", "yes please", "yep", "yeah", "sure", "ok", "okay", "confirm", "confirmed",
        "yes confirm", "please do", "go ahead", "do it", "cancel it", "yes cancel it",
        "yes please cancel it", "please cancel it", "yes cancel",
    }
)  # fmt: skip
NO_ANSWERS = frozenset(
    {
        "no", "n", "nope", "no thanks", "no thank you", "keep it", "no keep it", "don't", "dont",
        "do not", "don't cancel", "dont cancel", "do not cancel", "don't cancel it",
        "dont cancel it", "do not cancel it", "no don't", "no dont", "no don't cancel it",
        "no dont cancel it", "never mind", "nevermind",
    }
)  # fmt: skip


def typed_decision(text: str) -> bool | None:
    """A typed answer to a pending confirmation: True for yes, False for no, None otherwise.

    Deliberately simple: only short, unambiguous answers count; anything else is a new message
    and the pending cancellation is not carried out.
    """
    normalized = " ".join(_WORDS.sub(" ", text.casefold().replace("’", "'")).split())
    if normalized in YES_ANSWERS:
        return True
    if normalized in NO_ANSWERS:
        return False
    return None


def _pending_of(action: PendingAction) -> PendingConfirmation:
    return PendingConfirmation(
        tool_use_id=action.tool_use_id,
        name=action.tool_name,
        tool_input=dict(action.tool_input),
        results=list(action.results),
        tool_uses=list(action.tool_uses),
    )


def _decide(
    action: PendingAction,
    *,
    decision: bool | None,
    user: User,
    tools: CustomerTools,
    sink: _StoringSink,
) -> dict[str, Any]:
    """Records the decision, runs an approved call, and returns the user message with all results.

    The caller holds the transaction and the action's row lock, so the call runs at most once.
    """
    if decision is True:
        outcome = tools.run_confirmed(action.tool_name, action.tool_input)
        action.state = PendingActionState.APPROVED
    elif decision is False:
        outcome = ToolOutcome("error", KEPT_TEXT)
        action.state = PendingActionState.DECLINED
    else:
        outcome = ToolOutcome("error", NOT_CONFIRMED_TEXT)
        action.state = PendingActionState.EXPIRED
    action.decided_at = timezone.now()
    action.decided_by_id = user.pk
    action.save(update_fields=["state", "decided_at", "decided_by"])
    return complete_pending(_pending_of(action), outcome, tools, sink=sink)


def _resolved_event(action: PendingAction) -> dict[str, Any]:
    return {
        "type": "action_resolved",
        "action_id": str(action.pk),
        "approved": action.state == PendingActionState.APPROVED,
    }


# --- Public turn API ----------------------------------------------------------------------------

# While a person holds the conversation, customer messages are stored for them and no turn runs.
HELD_STATUSES = (ConversationStatus.WAITING_FOR_AGENT, ConversationStatus.WITH_AGENT)


def _accepted_before(conversation_id: uuid.UUID, client_message_id: str) -> bool:
    # A turn for a message the assistant answered; a message alone while a person held it.
    return (
        Turn.objects.filter(
            conversation_id=conversation_id, client_message_id=client_message_id
        ).exists()
        or Message.objects.filter(
            conversation_id=conversation_id, client_message_id=client_message_id
        ).exists()
    )


def turn_submit(
    *,
    conversation: Conversation,
    user: User,
    text: str,
    client_message_id: str,
    emit: Emit,
    client: ModelClient | None = None,
) -> bool:
    """Stores the customer's message and runs the assistant's turn. Blocking.

    Idempotent on ``client_message_id``: a message already accepted returns False and starts
    nothing (a unique constraint decides, so concurrent resends cannot both get in). While
    another turn of the conversation is running the message is refused with an "error" event
    and False; the client may send it again later with the same id.

    If a cancellation is waiting for the customer, a typed yes/no (``typed_decision``) decides it
    here; any other text leaves the order alone. Either way the decision's tool result and the
    text go into the same user message, so roles keep alternating.

    While a person holds the conversation (``HELD_STATUSES``, see ``chat.handoff``) the message
    is only stored and shown; no turn runs until the agent hands the conversation back.

    ``client`` replaces the configured model (``chat.bedrock.get_model_client()``).

    Raises: ``ConversationNotFound`` when the conversation is not the user's; ``ValueError``
    without a ``client_message_id``.
    """
    customer = _acting_customer(conversation, user)
    if not client_message_id:
        raise ValueError("A client_message_id is required: it makes resending safe.")
    if not text.strip():
        _safe_emit(
            emit,
            {"type": "error", "text": "Please type a message before sending.", "retryable": False},
        )
        return False
    if len(text) > settings.CHAT_MESSAGE_MAX_CHARS:
        limit = settings.CHAT_MESSAGE_MAX_CHARS
        _safe_emit(
            emit,
            {
                "type": "error",
                "text": f"Please keep your message under {limit} characters.",
                "retryable": False,
            },
        )
        return False
    if _accepted_before(conversation.pk, client_message_id):
        return False

    tools = CustomerTools(customer=customer, conversation_id=conversation.pk, emit=emit)
    for stale in _stale_turns(conversation_id=conversation.pk):
        _recover_turn(stale.pk)

    resolved: PendingAction | None = None
    try:
        held: list[Message] = []
        with transaction.atomic():
            locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
            if locked.status in HELD_STATUSES:
                # A person has the conversation: they read the message, the model stays silent.
                held = _append(
                    locked.pk,
                    None,
                    [
                        _NewMessage(
                            MessageRole.USER,
                            MessageKind.CUSTOMER,
                            [{"text": text}],
                            client_message_id,
                        )
                    ],
                )
            else:
                if Turn.objects.filter(conversation_id=locked.pk, state=TurnState.RUNNING).exists():
                    _safe_emit(emit, {"type": "error", "text": BUSY_TEXT, "retryable": True})
                    return False
                # Created first: a resend hits the unique constraint before anything else happens.
                turn = Turn.objects.create(
                    conversation_id=locked.pk,
                    client_message_id=client_message_id,
                    active_at=timezone.now(),
                )
                sink = _StoringSink(conversation_id=locked.pk, turn=turn, emit=emit)
                content: list[dict[str, Any]] = []
                action = (
                    PendingAction.objects.select_for_update()
                    .filter(conversation_id=locked.pk, state=PendingActionState.PENDING)
                    .first()
                )
                if action is not None:
                    answer = _decide(
                        action, decision=typed_decision(text), user=user, tools=tools, sink=sink
                    )
                    content.extend(answer["content"])
                    Turn.objects.filter(pk=action.turn_id).update(
                        state=TurnState.COMPLETED, ended_at=timezone.now()
                    )
                    resolved = action
                content.append({"text": text})
                stored = _append(
                    locked.pk,
                    turn,
                    [
                        _NewMessage(
                            MessageRole.USER, MessageKind.CUSTOMER, content, client_message_id
                        )
                    ],
                )
                if not locked.title:
                    title = " ".join(text.split())
                    Conversation.objects.filter(pk=locked.pk).update(
                        title=title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1] + "…"
                    )
    except IntegrityError:
        if _accepted_before(conversation.pk, client_message_id):
            return False
        raise

    if held:
        _emit_messages(emit, held)
        return True
    _announce_and_run(
        conversation_id=conversation.pk,
        customer=customer,
        tools=tools,
        turn=turn,
        stored=stored,
        resolved=resolved,
        emit=emit,
        client=client,
    )
    return True


def action_decide(
    *,
    conversation: Conversation,
    user: User,
    action_id: uuid.UUID | str,
    approve: bool,
    emit: Emit,
    client: ModelClient | None = None,
) -> bool:
    """The customer's click on a confirmation: runs the action at most once, then resumes. Blocking.

    Approving runs the call (e.g. ``orders.services.order_cancel``) in the same transaction that
    records the decision and stores its result; declining gives the model an error result
    (``KEPT_TEXT``). A second decision on the same action (double click, second tab) returns
    False and changes nothing.

    Raises: ``ConversationNotFound`` when the conversation is not the user's.
    """
    customer = _acting_customer(conversation, user)
    try:
        key = action_id if isinstance(action_id, uuid.UUID) else uuid.UUID(str(action_id))
    except ValueError:
        return False
    tools = CustomerTools(customer=customer, conversation_id=conversation.pk, emit=emit)
    with transaction.atomic():
        Conversation.objects.select_for_update().only("pk").get(pk=conversation.pk)
        action = (
            PendingAction.objects.select_for_update()
            .select_related("turn")
            .filter(pk=key, conversation_id=conversation.pk)
            .first()
        )
        if action is None:
            return False
        if action.state != PendingActionState.PENDING:
            decided = action
        else:
            decided = None
            turn = action.turn
            sink = _StoringSink(conversation_id=conversation.pk, turn=turn, emit=emit)
            answer = _decide(action, decision=approve, user=user, tools=tools, sink=sink)
            stored = _append(
                conversation.pk,
                turn,
                [_NewMessage(MessageRole.USER, MessageKind.TOOL_RESULTS, answer["content"])],
            )
            turn.state = TurnState.RUNNING
            turn.active_at = timezone.now()
            turn.save(update_fields=["state", "active_at"])
    if decided is not None:
        # Tell this tab again, so a button left over from a lost event goes away.
        _safe_emit(emit, _resolved_event(decided))
        return False
    _announce_and_run(
        conversation_id=conversation.pk,
        customer=customer,
        tools=tools,
        turn=turn,
        stored=stored,
        resolved=action,
        emit=emit,
        client=client,
    )
    return True


def _announce_and_run(
    *,
    conversation_id: uuid.UUID,
    customer: Customer,
    tools: CustomerTools,
    turn: Turn,
    stored: list[Message],
    resolved: PendingAction | None,
    emit: Emit,
    client: ModelClient | None,
) -> None:
    # After the customer's message or decision is committed: tell the tabs, then run the model.
    if resolved is not None:
        _safe_emit(emit, _resolved_event(resolved))
    _emit_messages(emit, stored)
    _turn_started(turn, emit)
    _run(
        conversation_id=conversation_id,
        customer=customer,
        tools=tools,
        turn=turn,
        emit=emit,
        client=client,
    )


# --- Recovery -----------------------------------------------------------------------------------


def stale_after() -> timedelta:
    """How long a running turn can go without progress before it is certainly dead.

    A live turn stores a step at least every model call, and one call cannot outlast the turn
    deadline plus every attempt's read timeout.
    """
    seconds = (
        settings.CHAT_TURN_DEADLINE_SECONDS
        + settings.BEDROCK_READ_TIMEOUT * settings.BEDROCK_MAX_ATTEMPTS
    )
    return timedelta(seconds=seconds)


def _stale_turns(
    *, conversation_id: uuid.UUID | None = None, older_than: timedelta | None = None
) -> list[Turn]:
    cutoff = timezone.now() - (stale_after() if older_than is None else older_than)
    turns = Turn.objects.filter(state=TurnState.RUNNING, active_at__lte=cutoff)
    if conversation_id is not None:
        turns = turns.filter(conversation_id=conversation_id)
    return list(turns.only("pk"))


def _recover_turn(turn_id: uuid.UUID) -> bool:
    with transaction.atomic():
        turn = Turn.objects.select_for_update().filter(pk=turn_id, state=TurnState.RUNNING).first()
        if turn is None:
            return False
        Conversation.objects.select_for_update().only("pk").get(pk=turn.conversation_id)
        repairs: list[_NewMessage] = []
        last = (
            Message.objects.filter(conversation_id=turn.conversation_id, kind__in=MODEL_KINDS)
            .order_by("-seq")
            .first()
        )
        if last is not None and last.role == MessageRole.ASSISTANT:
            calls = [
                b["toolUse"]["toolUseId"]
                for b in last.content
                if isinstance(b, dict) and "toolUse" in b
            ]
            if calls:
                results = [
                    {
                        "toolResult": {
                            "toolUseId": call,
                            "content": [{"text": INTERRUPTED_RESULT_TEXT}],
                            "status": "error",
                        }
                    }
                    for call in calls
                ]
                repairs.append(_NewMessage(MessageRole.USER, MessageKind.TOOL_RESULTS, results))
        repairs.append(
            _NewMessage(MessageRole.ASSISTANT, MessageKind.NOTICE, [{"text": INTERRUPTED_NOTICE}])
        )
        _append(turn.conversation_id, turn, repairs)
        turn.state = TurnState.INTERRUPTED
        turn.outcome = "failed"
        turn.error_kind = "interrupted"
        turn.ended_at = timezone.now()
        turn.save(update_fields=["state", "outcome", "error_kind", "ended_at"])
    logger.warning("Recovered turn %s left running by a restart", turn_id)
    return True


def turns_recover_interrupted(*, older_than: timedelta | None = None) -> int:
    """Closes turns a restart left "running"; returns how many.

    Only turns without progress for ``older_than`` (default ``stale_after()``) count, so turns
    still running in other processes during a rolling deploy are left alone; pass
    ``timedelta(0)`` when nothing else can be running. Each gets error results for a tool call
    left without them, the state "interrupted", and a notice asking the customer to send their
    message again.
    """
    return sum(_recover_turn(turn.pk) for turn in _stale_turns(older_than=older_than))
