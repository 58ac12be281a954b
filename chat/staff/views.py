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

from chat.live.conversations import ConversationNotFound, events_since
from chat.live.handoff import handoff_state
from chat.staff.handoff import inbox_list, may_reply, staff_conversation_get


def support_agent_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in, and ``chat.staff.handoff.may_reply`` (active staff with the reply permission)."""

    @login_required
    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not may_reply(request.user):
            raise PermissionDenied("Only support agents can open the inbox.")
        return view(request, *args, **kwargs)

    return checked


@support_agent_required
def inbox(request: HttpRequest) -> HttpResponse:
    config = {"websocketPath": "/ws/staff/inbox/", "items": inbox_list(agent=request.user)}
    return render(request, "chat/inbox.html", {"inbox_config": config})


@support_agent_required
def conversation(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    try:
        found = staff_conversation_get(agent=request.user, conversation_id=conversation_id)
    except ConversationNotFound:
        raise Http404("No such conversation.") from None
    config = {
        "websocketPath": f"/ws/staff/conversations/{found.pk}/",
        "maxChars": settings.CHAT_MESSAGE_MAX_CHARS,
        "me": request.user.pk,
        "state": handoff_state(found),
        "events": events_since(conversation=found, after_seq=0),
    }
    return render(
        request, "chat/staff_conversation.html", {"conversation": found, "staff_config": config}
    )
