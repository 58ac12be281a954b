"""The customer's pages: their conversations, a new one, the chat itself, and the demo sign-in."""

import uuid
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from chat.live.conversations import (
    ConversationNotFound,
    conversation_get,
    conversation_list,
    conversation_start,
    events_since,
)
from chat.live.handoff import agent_name
from chat.live.limits import ConversationsLimited, conversation_start_hit
from chat.models import Feedback
from orders.selectors import (
    CustomerNotFound,
    customer_get,
    customer_list_with_order_counts,
    customer_of_user,
)
from orders.services import customer_login_ensure


def _has_customer(user: Any) -> bool:
    return customer_of_user(user_id=user.pk) is not None


@login_required
def home(request: HttpRequest) -> HttpResponse:
    if not _has_customer(request.user):
        return render(request, "chat/no_customer.html")
    conversations = conversation_list(user=request.user)
    return render(request, "chat/home.html", {"conversations": conversations})


@login_required
@require_POST
def conversation_new(request: HttpRequest) -> HttpResponse:
    if not _has_customer(request.user):
        return render(request, "chat/no_customer.html", status=403)
    try:
        conversation_start_hit(user_id=request.user.pk)
    except ConversationsLimited as refused:
        return render(request, "chat/too_many.html", {"text": refused.message}, status=429)
    conversation = conversation_start(user=request.user)
    return redirect("chat:conversation", conversation_id=conversation.pk)


@login_required
def conversation(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    if not _has_customer(request.user):
        return render(request, "chat/no_customer.html")
    try:
        found = conversation_get(user=request.user, conversation_id=conversation_id)
    except ConversationNotFound:
        raise Http404("No such conversation.") from None
    events = events_since(conversation=found, after_seq=0)
    ratings = Feedback.objects.filter(conversation=found, user_id=found.owner_id).values_list(
        "message__seq", "score", "comment"
    )
    config = {
        "websocketPath": f"/ws/conversations/{found.pk}/",
        "maxChars": settings.CHAT_MESSAGE_MAX_CHARS,
        "events": events,
        "status": found.status,
        "agentName": agent_name(found.agent) if found.agent_id else "",
        # The path for seq 0; the page puts the rated reply's seq in its place.
        "feedbackPath": reverse("chat:message_feedback", args=[found.pk, 0]),
        "feedback": {
            str(seq): {"score": score, "comment": comment} for seq, score, comment in ratings
        },
        "csrfToken": get_token(request),
        # Where the page sends the customer when the socket says the session or the
        # conversation is gone.
        "signInUrl": resolve_url(settings.LOGIN_URL)
        + "?"
        + urlencode({"next": request.path}, safe="/"),
        "conversationsUrl": reverse("chat:home"),
    }
    return render(request, "chat/conversation.html", {"conversation": found, "chat_config": config})


@require_http_methods(["GET", "POST"])
def demo_login(request: HttpRequest) -> HttpResponse:
    """Development only: sign in as any demo customer without a password."""
    if not settings.DEMO_LOGIN_ENABLED:
        raise Http404("Demo sign-in is turned off.")
    if request.method == "POST":
        try:
            customer = customer_get(customer_id=request.POST.get("customer", ""))
        except CustomerNotFound:
            raise Http404("No such customer.") from None
        try:
            user = customer_login_ensure(customer=customer)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
            return redirect("demo_login")
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chat:home")
    customers = customer_list_with_order_counts()
    return render(request, "chat/demo_login.html", {"customers": customers})
