"""The support team's websockets: the inbox, and a customer's conversation seen by an agent.

Both authorize by permission (``chat.staff.handoff.may_reply``: active staff with
``chat.reply_conversation``), not by ownership, and hand every step to ``chat.staff.handoff``.

``/ws/staff/inbox/`` sends {"type": "inbox", "items": [...]} (``chat.staff.handoff.inbox_list``)
on connect and whenever a handoff changes anywhere. Client frames: {"type": "ping"},
{"type": "refresh"}.

``/ws/staff/conversations/<uuid>/`` joins the conversation's group, so the agent sees what the
customer's tabs see (stored messages by seq, streaming deltas, "handoff" changes), and the
customer's tabs see the agent's messages; several events sent together are one
{"type": "events", "events": [...]} frame, as on the customer's socket. Client frames (one
JSON Schema each, as for the customer's socket, ``chat.live.frames``):
    {"type": "claim"} | {"type": "release"} | {"type": "resolve"}
    {"type": "reply", "text": str, "client_message_id": str}
    {"type": "resume", "after_seq": int} | {"type": "ping"}
Server frames besides the relayed events: {"type": "done", "action": str, "accepted": bool}
after a step, {"type": "replied", "client_message_id": str, "accepted": bool} after a reply, and
{"type": "error", "code", "text", "retryable": false} for a refused frame or step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from chat.live import emitter, realtime
from chat.live.access import SessionBound
from chat.live.consumers import (
    CLOSE_FORBIDDEN,
    CLOSE_TOO_MANY,
    CLOSE_UNAUTHENTICATED,
    ChatConsumer,
    JsonFrameConsumer,
    connect_allowed,
    refusals_as_errors,
    refuse_with,
    short_query,
)
from chat.live.conversations import ConversationNotFound
from chat.live.frames import (
    AFTER_SEQ,
    AFTER_SEQ_INVALID,
    CLIENT_MESSAGE_ID,
    FrameError,
    FrameType,
    frame_parse,
    frame_size_limit,
    message_text,
)
from chat.live.handoff import handoff_state
from chat.live.limits import resume_hit
from chat.live.livelink import LiveLink
from chat.live.sessions import SessionCheck
from chat.staff.handoff import (
    handoff_claim,
    handoff_release,
    handoff_reply,
    handoff_resolve,
    inbox_list,
    may_reply,
    staff_conversation_get,
)

SessionRule = Callable[[HttpRequest], bool]

STEPS = {"claim": handoff_claim, "release": handoff_release, "resolve": handoff_resolve}

UNREADABLE = FrameError("invalid_frame", "That request could not be read. Please reload.")
UNSUPPORTED = FrameError("unknown_type", "That request is not supported. Please reload the page.")


def staff_too_long(max_chars: int) -> FrameError:
    return FrameError("text_too_long", f"Please keep your message under {max_chars} characters.")


@functools.cache
def staff_frame_types(max_chars: int) -> dict[str, FrameType]:
    """The frames of an agent's conversation socket, for replies of at most ``max_chars``."""
    return {
        **{step: FrameType() for step in STEPS},
        "reply": FrameType(
            properties={"text": message_text(max_chars), "client_message_id": CLIENT_MESSAGE_ID},
            required=("text", "client_message_id"),
            errors={
                "text": FrameError("text_required", "Please type a message before sending."),
                "text.maxLength": staff_too_long(max_chars),
                "text.not": FrameError(
                    "invalid_characters",
                    "This message contains a character that can't be stored (a control "
                    "character or a broken emoji). Please remove it and send again.",
                ),
                "client_message_id": FrameError(
                    "invalid_client_message_id", "Please reload the page and try again."
                ),
            },
        ),
        "resume": FrameType(
            properties={"after_seq": AFTER_SEQ}, errors={"after_seq": AFTER_SEQ_INVALID}
        ),
        "ping": FrameType(),
    }


def staff_refusal(check: SessionCheck, session_allowed: SessionRule | None) -> int | None:
    """4403 unless the session's user may answer customers and, where the site has a rule for
    staff sessions (``anycompany.signin.staff_session_allowed``), the session keeps it. Blocking."""
    if not may_reply(check.user):
        return CLOSE_FORBIDDEN
    if session_allowed is not None and not session_allowed(check.request):
        return CLOSE_FORBIDDEN
    return None


class StaffConversationConsumer(ChatConsumer):
    """The customer's socket, relaying the same group, with an agent's actions instead.

    The agent's access is checked again before every action and every event relayed, so the
    customer's messages stop the moment the agent is signed out or loses the permission.
    """

    not_text = not_json = too_deep = UNREADABLE

    def __init__(self, *args: Any, session_allowed: SessionRule | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # The site's rule for staff sessions, given by the routing (``as_asgi(session_allowed=…)``).
        self.session_allowed = session_allowed

    def refusal_for(self, check: SessionCheck) -> int | None:
        return staff_refusal(check, self.session_allowed)

    async def load_conversation(self, user: Any, conversation_id: str) -> Any:
        # Any customer's conversation, for an agent with the reply permission.
        return await short_query(staff_conversation_get)(
            agent=user, conversation_id=conversation_id
        )

    async def opened(self) -> None:
        await self.send_state()

    def frame_limit(self) -> tuple[int, FrameError] | None:
        max_chars = settings.CHAT_MESSAGE_MAX_CHARS
        return frame_size_limit(max_chars), staff_too_long(max_chars)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        try:
            frame = frame_parse(
                content,
                staff_frame_types(settings.CHAT_MESSAGE_MAX_CHARS),
                not_an_object=UNREADABLE,
                unknown_type=UNSUPPORTED,
            )
        except FrameError as error:
            await self.send_json(error.event())
            return
        kind = frame["type"]
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif not await self.still_allowed():
            return
        elif kind == "resume":
            if await self.limit_allows(resume_hit):
                await self.send_state()
                await self.send_stored(int(frame.get("after_seq", 0)))
        elif kind == "reply":
            accepted = await self.step(
                handoff_reply, text=frame["text"], client_message_id=frame["client_message_id"]
            )
            await self.send_json(
                {
                    "type": "replied",
                    "client_message_id": frame["client_message_id"],
                    "accepted": bool(accepted),
                }
            )
        else:
            accepted = await self.step(STEPS[kind])
            await self.send_json({"type": "done", "action": kind, "accepted": bool(accepted)})

    async def step(self, job: Any, **kwargs: Any) -> Any:
        result = await realtime.run_step(
            partial(
                refusals_as_errors,
                job,
                conversation_id=self.conversation.pk,
                agent=self.scope["user"],
                **kwargs,
            ),
            layer=self.channel_layer,
            group=self.group,
            socket=self,
        )
        await self.send_stored()
        return result

    async def chat_events(self, message: dict[str, Any]) -> None:
        if await self.still_allowed():
            await super().chat_events(message)

    def relayed(self, event: dict[str, Any]) -> dict[str, Any]:
        # Unfiltered: the page needs "agent_id" to know whether this agent holds it.
        return event

    async def send_state(self) -> None:
        try:
            current = await short_query(staff_conversation_get)(
                agent=self.scope["user"], conversation_id=self.conversation.pk
            )
        except (PermissionDenied, ConversationNotFound):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.send_json(handoff_state(current))


INBOX_FRAME_TYPES = {"ping": FrameType(), "refresh": FrameType()}


class StaffInboxConsumer(SessionBound, LiveLink, JsonFrameConsumer):
    joined = False
    not_text = not_json = too_deep = UNSUPPORTED

    def __init__(self, *args: Any, session_allowed: SessionRule | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.session_allowed = session_allowed

    def refusal_for(self, check: SessionCheck) -> int | None:
        return staff_refusal(check, self.session_allowed)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await refuse_with(self, CLOSE_UNAUTHENTICATED)
            return
        if not await connect_allowed(user):
            await refuse_with(self, CLOSE_TOO_MANY)
            return
        if not await short_query(may_reply)(user):
            await refuse_with(self, CLOSE_FORBIDDEN)
            return
        await self.live_join(emitter.INBOX_GROUP)
        await self.accept()
        self.joined = True
        realtime.websocket_opened()
        if not await self.session_bind():
            return
        await self.send_inbox()

    async def disconnect(self, code: int) -> None:
        if self.joined:
            self.joined = False
            realtime.websocket_closed()
        self.session_unbind()
        await self.live_leave()

    async def live_resumed(self) -> None:
        await self.send_inbox()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        try:
            frame = frame_parse(
                content, INBOX_FRAME_TYPES, not_an_object=UNSUPPORTED, unknown_type=UNSUPPORTED
            )
        except FrameError as error:
            await self.send_json(error.event())
            return
        if frame["type"] == "ping":
            await self.send_json({"type": "pong"})
        elif await self.still_allowed():
            await self.send_inbox()

    async def inbox_changed(self, message: dict[str, Any]) -> None:
        if await self.still_allowed():
            await self.send_inbox()

    async def send_inbox(self) -> None:
        try:
            items = await short_query(inbox_list)(agent=self.scope["user"])
        except PermissionDenied:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.send_json({"type": "inbox", "items": items})
