"""Customers rate the assistant's replies: a thumbs up or down, with an optional comment.

Staff read the ratings in the transcripts, the conversation list and the dashboard; the chat
page posts them here (``message_feedback``: JSON in, JSON out).
"""

import json
import uuid
from typing import Any

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from chat.live.conversations import ConversationNotFound, User, conversation_get, message_event
from chat.live.frames import UNSTORABLE, nesting_depth_over
from chat.models import FEEDBACK_COMMENT_MAX_CHARS, Feedback, FeedbackScore, Message, MessageKind

_SCORES = {"1": 1, "+1": 1, "up": 1, "-1": -1, "down": -1}


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
    messages with visible text, not tool calls, the preamble before one, or notices).

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
    if UNSTORABLE.search(comment):
        raise ValueError(
            "Your comment contains a character we can't store (an invisible control character "
            "or a broken emoji). Please remove it and try again."
        )
    message = Message.objects.filter(conversation_id=conversation.pk, seq=seq).first()
    event = message_event(message) if message is not None else None
    if (
        message is None
        or message.kind != MessageKind.ASSISTANT
        or event is None
        or event.get("preamble")
    ):
        raise ValueError("Only the assistant's replies can be rated.")
    with transaction.atomic():
        feedback, _ = Feedback.objects.update_or_create(
            message=message,
            user_id=conversation.owner_id,
            defaults={"conversation": conversation, "score": score, "comment": comment},
        )
    return feedback


def _body(request: HttpRequest) -> dict[str, Any]:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ValueError("The request body is not valid JSON.") from None
        if nesting_depth_over(data):
            raise ValueError("The request body is nested too deeply.")
        if not isinstance(data, dict):
            raise ValueError("The request body must be a JSON object.")
        return data
    return request.POST.dict()


@require_POST
def message_feedback(request: HttpRequest, conversation_id: uuid.UUID, seq: int) -> JsonResponse:
    """POST ``{"score": 1 | -1, "comment": "…"}`` (JSON or form fields); CSRF-protected."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "Please sign in again."}, status=401)
    try:
        data = _body(request)
        score = _SCORES.get(str(data.get("score", "")).strip().lower())
        if score is None:
            raise ValueError("Choose thumbs up or thumbs down.")
        comment = data.get("comment") or ""
        if not isinstance(comment, str):
            raise ValueError("The comment must be text.")
        feedback = feedback_give(
            user=request.user,
            conversation_id=conversation_id,
            seq=seq,
            score=score,
            comment=comment,
        )
    except ConversationNotFound:
        return JsonResponse({"error": "No such conversation."}, status=404)
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    return JsonResponse({"seq": seq, "score": feedback.score, "comment": feedback.comment})
