"""Running the assistant's turns: a customer's message or decision in, the model's answer out.

The consumer calls ``turn_submit`` and ``action_decide`` (blocking; they run on the turn pool).
They store the customer's step, load the stored history, hand it to the engine's tool loop
(``chat.engine.loop.run_turn``) with the default tools bound to the conversation's customer
(``chat.tools.registry``), and store every step as it happens (``chat.live.storage``).

Authorization: only the conversation's owner, still linked to its customer, may act
(``chat.live.intake.admission_read``, ``chat.live.conversations.acting_customer``); the tools
only ever see that customer.

The events given to ``emit`` are listed in ``chat.live.storage``.
"""

import logging
import uuid
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction

from chat.engine.client import ModelClient
from chat.engine.loop import run_turn
from chat.engine.registry import BoundTools, ToolContext
from chat.engine.types import TurnResult
from chat.live.confirmations import pending_action_decide
from chat.live.conversations import (
    ConversationNotFound,
    User,
    acting_customer,
    confirm_event,
    resolved_event,
)
from chat.live.dbcalls import connection_release
from chat.live.engine_config import model_client, turn_config
from chat.live.handoff import HELD_ERROR, HELD_STATUSES, assistant_request_person
from chat.live.intake import BUSY_ERROR, admission_read, turn_start
from chat.live.leases import TurnClosed, held, turn_finish_durably
from chat.live.limits import BudgetExhausted, budget_spent, refusal_event
from chat.live.model_history import model_history
from chat.live.observe import ObservedSink, ObservedTools, turn_scope
from chat.live.recovery import conversation_recover, turn_dead, unanswered_turn
from chat.live.storage import (
    Emit,
    NewMessage,
    StoringSink,
    messages_emit,
    notice,
    safe_emit,
)
from chat.models import (
    Conversation,
    Message,
    MessageKind,
    MessageRole,
    PendingAction,
    PendingActionState,
    Turn,
    TurnState,
)
from chat.tools import registry
from orders.models import Customer

logger = logging.getLogger(__name__)

INTERNAL_ERROR_NOTICE = "Sorry, something went wrong on our side. Please try again."

# Failed turns the customer can simply try again.
RETRYABLE_ERRORS = frozenset(
    {"busy", "unavailable", "deadline", "capped", "malformed", "unknown_stop", "empty"}
)


def tools_for(*, conversation_id: uuid.UUID, customer: Customer, emit: Emit) -> BoundTools:
    """The default tools, acting for ``customer`` in this conversation."""
    context = ToolContext(
        customer=customer,
        conversation_id=conversation_id,
        request_person=assistant_request_person(
            conversation_id=conversation_id, customer_id=customer.pk, emit=emit
        ),
    )
    return ObservedTools(registry, context)


@turn_scope
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
    and False; the client may send it again later with the same id. So is a message once the
    customer's daily token budget is spent (``chat.live.limits``), with that limit's event.
    A dead running turn is closed first (``chat.live.recovery``).

    If a cancellation is waiting for the customer, a typed yes/no (``typed_decision``) decides it
    here; any other text leaves the order alone. Either way the decision's tool result and the
    text go into the same user message, so roles keep alternating.

    While a person holds the conversation (``chat.live.handoff.HELD_STATUSES``) the message is
    only stored and shown; no turn runs until the agent hands the conversation back.

    ``client`` replaces the configured model (``chat.live.engine_config.model_client()``).

    Raises: ``ConversationNotFound`` when the conversation is not the user's; ``ValueError``
    without a ``client_message_id``.
    """
    if not user.is_authenticated or conversation.owner_id != user.pk:
        raise ConversationNotFound
    if not client_message_id:
        raise ValueError("A client_message_id is required: it makes resending safe.")
    if not text.strip():
        safe_emit(
            emit,
            {"type": "error", "text": "Please type a message before sending.", "retryable": False},
        )
        return False
    if len(text) > settings.CHAT_MESSAGE_MAX_CHARS:
        limit = settings.CHAT_MESSAGE_MAX_CHARS
        safe_emit(
            emit,
            {
                "type": "error",
                "text": f"Please keep your message under {limit} characters.",
                "retryable": False,
            },
        )
        return False
    read = partial(admission_read, conversation=conversation, user=user)
    admission = read(client_message_id=client_message_id)
    if admission.running is not None and turn_dead(admission.running):
        conversation_recover(conversation.pk, emit)
        admission = read(client_message_id=client_message_id)
    # A message whose turn died unanswered is answered when sent again; any other is a repeat.
    if admission.accepted and unanswered_turn(conversation.pk, client_message_id) is None:
        return False
    if not admission.held:
        # No model runs while a person holds the conversation: the budget is moot then.
        if budget_spent(admission.tokens_today):
            safe_emit(emit, refusal_event(BudgetExhausted()))
            return False
        if admission.running is not None:
            safe_emit(emit, BUSY_ERROR)
            return False
    customer = admission.customer
    tools = tools_for(conversation_id=conversation.pk, customer=customer, emit=emit)
    started = turn_start(
        admission=admission,
        conversation_id=conversation.pk,
        user=user,
        text=text,
        client_message_id=client_message_id,
        tools=tools,
        emit=emit,
    )
    if started is None:
        return False
    if started.turn is None:
        messages_emit(emit, started.stored)
        return True
    _announce_and_run(
        conversation_id=conversation.pk,
        customer=customer,
        tools=tools,
        turn=started.turn,
        stored=started.stored,
        resolved=started.resolved,
        emit=emit,
        client=client,
    )
    return True


@turn_scope
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
    (``chat.live.confirmations.KEPT_TEXT``). A second decision on the same action (double click,
    second tab) returns False and changes nothing. While a person holds the conversation
    (``HELD_STATUSES``) nothing is decided: an "error" event says so and it returns False.

    Raises: ``ConversationNotFound`` when the conversation is not the user's.
    """
    customer = acting_customer(conversation, user)
    try:
        key = action_id if isinstance(action_id, uuid.UUID) else uuid.UUID(str(action_id))
    except ValueError:
        return False
    tools = tools_for(conversation_id=conversation.pk, customer=customer, emit=emit)
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().only("status").get(pk=conversation.pk)
        if locked.status in HELD_STATUSES:  # a person has it: no decision, no model call
            safe_emit(emit, HELD_ERROR)
            return False
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
            sink = StoringSink(conversation_id=conversation.pk, turn=turn, emit=emit)
            answer = pending_action_decide(
                action, decision=approve, user=user, tools=tools, sink=sink
            )
            stored = sink.step(
                messages=[
                    NewMessage(MessageRole.USER, MessageKind.TOOL_RESULTS, answer["content"])
                ],
                turn_end=(TurnState.RUNNING, turn.outcome, turn.error_kind),
                while_running=False,
            )
    if decided is not None:
        # Tell this tab again, so a button left over from a lost event goes away.
        safe_emit(emit, resolved_event(decided))
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
    tools: BoundTools,
    turn: Turn,
    stored: list[Message],
    resolved: PendingAction | None,
    emit: Emit,
    client: ModelClient | None,
) -> None:
    # After the customer's message or decision is committed: tell the tabs, then run the model.
    if resolved is not None:
        safe_emit(emit, resolved_event(resolved))
    messages_emit(emit, stored)
    safe_emit(emit, {"type": "turn", "turn": str(turn.pk), "state": "started"})
    _run(
        conversation_id=conversation_id,
        customer=customer,
        tools=tools,
        turn=turn,
        emit=emit,
        client=client,
    )


def _run(
    *,
    conversation_id: uuid.UUID,
    customer: Customer,
    tools: BoundTools,
    turn: Turn,
    emit: Emit,
    client: ModelClient | None,
) -> None:
    """Runs the loop on the stored history, its lease renewed, and stores how the turn ended
    (retrying on a fresh connection, so a database restart does not leave it "running").

    The turn's last message is written with its end (``StoringSink``); when that write fails,
    the turn fails as it does when any other step's write fails.
    """
    storing = StoringSink(conversation_id=conversation_id, turn=turn, emit=emit)
    sink = ObservedSink(storing, turn.pk)
    finished = False
    with held(turn.pk):
        try:
            config = turn_config(customer=customer, tools=registry)
            history = model_history(conversation_id, budget_tokens=config.context_budget_tokens)
            # No connection held while the model runs: turn workers share the pool.
            connection_release()
            result = run_turn(
                client=sink.client(client or model_client()),
                history=history.messages,
                earlier_orders=history.earlier_orders,
                tools=tools,
                config=config,
                sink=sink,
            )
            if storing.held:
                _finish(turn=turn, result=result, tools=tools, sink=storing, emit=emit)
                finished = True
        except TurnClosed:
            return  # recovery closed it while this process was cut off from the database
        except Exception:
            # A bug or a lost database, not a model failure (those arrive as a failed
            # TurnResult): end the turn so the conversation does not stay blocked, and tell the
            # customer in plain words. An answer that could not be stored is dropped.
            logger.exception("Turn %s failed unexpectedly", turn.pk)
            result = TurnResult("failed", INTERNAL_ERROR_NOTICE, None, error_kind="internal")
            storing.held = []
        if not finished:
            finish = partial(
                _finish, turn=turn, result=result, tools=tools, sink=storing, emit=emit
            )
            turn_finish_durably(finish, turn.pk)
    sink.turn_ended(result)


def _finish(
    *, turn: Turn, result: TurnResult, tools: BoundTools, sink: StoringSink, emit: Emit
) -> None:
    action: PendingAction | None = None
    notices: list[NewMessage] = []
    if result.outcome == "awaiting_confirmation" and result.pending is not None:
        state = TurnState.AWAITING_CONFIRMATION
    elif result.outcome == "answered":
        state = TurnState.COMPLETED
    else:
        state = TurnState.FAILED
        notices = [notice(result.reply)]
    end = (state, result.outcome, result.error_kind)
    if state == TurnState.AWAITING_CONFIRMATION and result.pending is not None:
        pending = result.pending
        with transaction.atomic():
            action = PendingAction.objects.create(
                conversation_id=turn.conversation_id,
                turn=turn,
                tool_use_id=pending.tool_use_id,
                tool_name=pending.name,
                tool_input=pending.tool_input,
                results=pending.results,
                tool_uses=pending.tool_uses,
                summary=tools.confirmation_text(pending.name, pending.tool_input)[:300],
            )
            stored = sink.step(messages=notices, turn_end=end)
    else:
        # The turn's last message, its end, its last model call's usage and its notice: one
        # statement.
        stored = sink.step(messages=notices, turn_end=end)
    messages_emit(emit, stored)
    if action is not None:
        safe_emit(emit, confirm_event(action))
    ended: dict[str, Any] = {
        "type": "turn",
        "turn": str(turn.pk),
        "state": "ended",
        "outcome": result.outcome,
    }
    if sink.last_seq is not None:
        ended["last_seq"] = sink.last_seq
    if result.outcome == "failed":
        ended["error_kind"] = result.error_kind
        ended["retryable"] = result.error_kind in RETRYABLE_ERRORS
    safe_emit(emit, ended)
