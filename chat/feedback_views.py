"""The customer's rating of a reply, posted by the chat page (JSON in, JSON out)."""

import json
import uuid
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from chat.feedback import feedback_give
from chat.services import ConversationNotFound

_SCORES = {"1": 1, "+1": 1, "up": 1, "-1": -1, "down": -1}


def _body(request: HttpRequest) -> dict[str, Any]:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise ValueError("The request body is not valid JSON.") from None
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
