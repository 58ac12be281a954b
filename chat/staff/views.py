"""The support team's pages: the inbox of customers waiting for a person, and one conversation."""

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from chat import handoff, services


def support_agent_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in, and ``chat.handoff.may_reply`` (active staff with chat.reply_conversation)."""

    @login_required
    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not handoff.may_reply(request.user):
            raise PermissionDenied("Only support agents can open the inbox.")
        return view(request, *args, **kwargs)

    return checked


@support_agent_required
def inbox(request: HttpRequest) -> HttpResponse:
    config = {"websocketPath": "/ws/staff/inbox/", "items": handoff.inbox_list(agent=request.user)}
    return render(request, "chat/inbox.html", {"inbox_config": config})


@support_agent_required
def conversation(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    try:
        found = handoff.staff_conversation_get(agent=request.user, conversation_id=conversation_id)
    except services.ConversationNotFound:
        raise Http404("No such conversation.") from None
    config = {
        "websocketPath": f"/ws/staff/conversations/{found.pk}/",
        "maxChars": settings.CHAT_MESSAGE_MAX_CHARS,
        "me": request.user.pk,
        "state": handoff.handoff_state(found),
        "events": services.events_since(conversation=found, after_seq=0),
    }
    return render(
        request, "chat/staff_conversation.html", {"conversation": found, "staff_config": config}
    )
