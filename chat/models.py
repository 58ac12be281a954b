"""Conversations as the model saw them.

``Message.content`` holds the raw Converse content blocks (including the model's
``<thinking>`` text, tool calls and tool results) so a conversation can be replayed to the
model exactly and audited later; what the customer sees is derived from it on display.
"""

import uuid

from django.conf import settings
from django.db import models

from orders.models import Customer


class ConversationStatus(models.TextChoices):
    WITH_BOT = "with_bot", "With the assistant"
    WAITING_FOR_AGENT = "waiting_for_agent", "Waiting for a support agent"
    WITH_AGENT = "with_agent", "With a support agent"
    RESOLVED = "resolved", "Resolved"


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    # The customer whose data the assistant may read in this conversation, fixed at start.
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="conversations")
    status = models.CharField(
        max_length=32, choices=ConversationStatus.choices, default=ConversationStatus.WITH_BOT
    )
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The seq of the newest message; bumped under a row lock so seqs never repeat or skip.
    last_seq = models.PositiveIntegerField(default=0)
    # When the conversation first went to a person; stays set after it is resolved.
    escalated_at = models.DateTimeField(null=True, blank=True)
    # The support agent holding the conversation while it is "with_agent".
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="conversations_held",
    )

    class Meta:
        ordering = ["-updated_at"]
        permissions = [
            ("reply_conversation", "Can join a conversation and reply to the customer"),
            ("view_dashboard", "Can view the support dashboard"),
            ("export_conversations", "Can export conversations"),
        ]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=ConversationStatus.values),
                name="conversation_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.id}"


class TurnState(models.TextChoices):
    RUNNING = "running"
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class Turn(models.Model):
    """One customer message and everything the assistant did to answer it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Written only by ``chat.live.writes`` too, from the conversation row it updated.
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="turns", db_constraint=False
    )
    state = models.CharField(max_length=32, choices=TurnState.choices, default=TurnState.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    # When the turn's loop last made progress; a turn "running" long past the turn deadline
    # since then was killed by a restart.
    active_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=32, blank=True)
    error_kind = models.CharField(max_length=32, blank=True)
    client_message_id = models.CharField(max_length=100, blank=True, default="")
    # The process running the turn ("host:pid:start id", ``chat.live.leases``) and until when
    # its claim holds; past that, or once that process is gone, the turn is dead.
    owner = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_message_id"],
                condition=~models.Q(client_message_id=""),
                name="turn_client_message_id_unique",
            ),
            models.CheckConstraint(
                condition=models.Q(state__in=TurnState.values), name="turn_state_valid"
            ),
            # One turn at a time: a message that would start a second one is refused as busy,
            # however many processes race to start it (``chat.live.turns.turn_submit``).
            models.UniqueConstraint(
                fields=["conversation"],
                condition=models.Q(state="running"),
                name="turn_one_running_per_conversation",
            ),
        ]
        indexes = [models.Index(fields=["state", "active_at"], name="turn_state_active_at")]

    def __str__(self) -> str:
        return f"Turn {self.id} ({self.state})"


class MessageRole(models.TextChoices):
    USER = "user"
    ASSISTANT = "assistant"


class MessageKind(models.TextChoices):
    CUSTOMER = "customer", "Customer text (may carry tool results too)"
    TOOL_RESULTS = "tool_results", "Tool results"
    ASSISTANT = "assistant", "Assistant"
    STAFF = "staff", "Support staff"
    NOTICE = "notice", "Notice from the app"


# Kinds that are part of the conversation the model sees; notices are for the customer only.
# Staff messages are user-role notes, so the model knows what a person told the customer.
MODEL_KINDS = (
    MessageKind.CUSTOMER,
    MessageKind.TOOL_RESULTS,
    MessageKind.ASSISTANT,
    MessageKind.STAFF,
)


# Messages and model calls (and turns, above) are written only by ``chat.live.writes``, whose
# statement updates (so locks) their conversation and turn first and inserts nothing when either
# is missing. A database foreign key would check each inserted row again at COMMIT (two checks
# per message and per model call, a third of a turn's statements), so these keys are not
# constraints in the database (``db_constraint=False``): Django's ``on_delete`` still cascades
# and clears them, and the admin still joins them.


class Message(models.Model):
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages", db_constraint=False
    )
    turn = models.ForeignKey(
        Turn,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="messages",
        db_constraint=False,
    )
    seq = models.PositiveIntegerField()
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    kind = models.CharField(max_length=16, choices=MessageKind.choices)
    content = models.JSONField(default=list)
    client_message_id = models.CharField(max_length=100, blank=True, default="")
    # Who wrote a staff message; empty for everything else.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="message_seq_unique"),
            models.UniqueConstraint(
                fields=["conversation", "client_message_id"],
                condition=~models.Q(client_message_id=""),
                name="message_client_message_id_unique",
            ),
            models.CheckConstraint(
                condition=models.Q(role__in=MessageRole.values), name="message_role_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=MessageKind.values), name="message_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind}"


class ModelCall(models.Model):
    """One request to the model: what it cost and how long it took."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="model_calls", db_constraint=False
    )
    turn = models.ForeignKey(
        Turn,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="model_calls",
        db_constraint=False,
    )
    model_id = models.CharField(max_length=200)
    stop_reason = models.CharField(max_length=64, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=200, blank=True)
    # The OpenTelemetry trace of the turn that made the call ("" with tracing off), to find it
    # in X-Ray or any other trace store.
    trace_id = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.model_id} ({self.stop_reason or self.error or 'no stop reason'})"


class DailyUsage(models.Model):
    """A customer's model tokens on one day (the server's local date), added as each call's usage
    is stored (``chat.live.writes``), so the daily budget reads one row instead of summing the
    customer's calls."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    tokens = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "day"], name="daily_usage_one_row_a_day")
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} on {self.day}: {self.tokens} tokens"


class PendingActionState(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"
    # The customer wrote about something else instead of deciding.
    EXPIRED = "expired"


class PendingAction(models.Model):
    """A tool call that waits for the customer's yes in the app before it runs."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="actions")
    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="actions")
    tool_use_id = models.CharField(max_length=100)
    tool_name = models.CharField(max_length=64)
    tool_input = models.JSONField(default=dict)
    # The toolResult blocks of the same assistant message, in order; the pending one's slot (and
    # those of the calls waiting behind it) are null until the customer decides.
    results = models.JSONField(default=list)
    # That message's toolUse blocks, so the calls waiting behind this one can run afterwards.
    tool_uses = models.JSONField(default=list)
    summary = models.CharField(max_length=300)
    state = models.CharField(
        max_length=16, choices=PendingActionState.choices, default=PendingActionState.PENDING
    )
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["created_at"]
        constraints = [
            # Roles must alternate: the model waits on one decision at a time.
            models.UniqueConstraint(
                fields=["conversation"],
                condition=models.Q(state="pending"),
                name="pending_action_one_open_per_conversation",
            ),
            models.CheckConstraint(
                condition=models.Q(state__in=PendingActionState.values),
                name="pending_action_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.summary} ({self.state})"


class FeedbackScore(models.IntegerChoices):
    UP = 1, "Helpful"
    DOWN = -1, "Not helpful"


FEEDBACK_COMMENT_MAX_CHARS = 1000


class Feedback(models.Model):
    """A customer's thumbs up or down on an assistant reply; one per person and reply."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="feedback"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    score = models.SmallIntegerField(choices=FeedbackScore.choices)
    comment = models.TextField(max_length=FEEDBACK_COMMENT_MAX_CHARS, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], name="feedback_one_per_user"),
            models.CheckConstraint(
                condition=models.Q(score__in=FeedbackScore.values), name="feedback_score_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_score_display()} on #{self.message_id}"


class HandoffEvent(models.Model):
    """One change of who answers a conversation (assistant, waiting, a person): who and when."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="handoff_events"
    )
    from_state = models.CharField(max_length=32, choices=ConversationStatus.choices)
    to_state = models.CharField(max_length=32, choices=ConversationStatus.choices)
    # Empty when the assistant asked for a person on the customer's behalf.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.from_state} → {self.to_state}"
