"""Customers rate the assistant's replies: a thumbs up or down, with an optional comment."""

import uuid

from django.db import transaction

from chat.models import FEEDBACK_COMMENT_MAX_CHARS, Feedback, FeedbackScore, Message, MessageKind
from chat.services import User, conversation_get, message_event


def feedback_give(
    *,
    user: User,
    conversation_id: uuid.UUID | str,
    seq: int,
    score: int,
    comment: str = "",
) -> Feedback:
    """Records the user's rating of one assistant reply; rating it again replaces the rating.

    Only the owner of the conversation may rate, and only replies they were shown (assistant
    messages with visible text, not tool calls or notices).

    Raises: ``ConversationNotFound`` when the conversation is missing or not the user's;
    ``ValueError`` (with a message for the customer) for a bad score, a comment over
    ``FEEDBACK_COMMENT_MAX_CHARS``, or a message that is not one of the assistant's replies.
    """
    conversation = conversation_get(user=user, conversation_id=conversation_id)
    if score not in FeedbackScore.values:
        raise ValueError("Choose thumbs up or thumbs down.")
    comment = comment.strip()
    if len(comment) > FEEDBACK_COMMENT_MAX_CHARS:
        raise ValueError(f"Please keep your comment under {FEEDBACK_COMMENT_MAX_CHARS} characters.")
    message = Message.objects.filter(conversation_id=conversation.pk, seq=seq).first()
    if message is None or message.kind != MessageKind.ASSISTANT or message_event(message) is None:
        raise ValueError("Only the assistant's replies can be rated.")
    with transaction.atomic():
        feedback, _ = Feedback.objects.update_or_create(
            message=message,
            user_id=conversation.owner_id,
            defaults={"conversation": conversation, "score": score, "comment": comment},
        )
    return feedback
