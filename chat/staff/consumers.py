"""The support team's websockets: the inbox, and a customer's conversation seen by an agent.

Both authorize by permission (``chat.staff.handoff.may_reply``: active staff with
``chat.reply_conversation``), not by ownership, and hand every step to ``chat.staff.handoff``.

``/ws/staff/inbox/`` sends {"type": "inbox", "items": [...]} (``chat.staff.handoff.inbox_list``)
on connect and whenever a handoff changes anywhere. Client frames: {"type": "ping"},
{"type": "refresh"}.

``/ws/staff/conversations/<uuid>/`` joins the conversation's group, so the agent sees what the
customer's tabs see (stored messages by seq, streaming deltas, "handoff" changes), and the
customer's tabs see the agent's messages. Client frames (one JSON Schema each, as for the
customer's socket, ``chat.live.frames``):
    {"type": "claim"} | {"type": "release"} | {"type": "resolve"}
    {"type": "reply", "text": str, "client_message_id": str}
    {"type": "resume", "after_seq": int} | {"type": "ping"}
Server frames besides the relayed events: {"type": "done", "action": str, "accepted": bool}
after a step, {"type": "replied", "client_message_id": str, "accepted": bool} after a reply, and
{"type": "error", "code", "text", "retryable": false} for a refused frame or step.
"""

from __future__ import annotations

import functools
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied

from chat.live import realtime
from chat.live.consumers import (
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHENTICATED,
    ChatConsumer,
    JsonFrameConsumer,
    refusals_as_errors,
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
from chat.live.livelink import LiveLink
from chat.staff.handoff import (
    handoff_claim,
    handoff_release,
    handoff_reply,
    handoff_resolve,
    inbox_list,
    may_reply,
    staff_conversation_get,
)

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


class StaffConversationConsumer(ChatConsumer):
    """The customer's socket, relaying the same group, with an agent's actions instead."""

    not_text = not_json = too_deep = UNREADABLE

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
        elif kind == "resume":
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
            channel=self.channel_name,
        )
        await self.send_stored()
        return result

    async def chat_event(self, message: dict[str, Any]) -> None:
        # Unfiltered: the page needs "agent_id" to know whether this agent holds it.
        await self.send_json(message["event"])

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


class StaffInboxConsumer(LiveLink, JsonFrameConsumer):
    joined = False
    not_text = not_json = too_deep = UNSUPPORTED

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await short_query(may_reply)(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.live_join(realtime.INBOX_GROUP)
        await self.accept()
        self.joined = True
        realtime.websocket_opened()
        await self.send_inbox()

    async def disconnect(self, code: int) -> None:
        if self.joined:
            self.joined = False
            realtime.websocket_closed()
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
        else:
            await self.send_inbox()

    async def inbox_changed(self, message: dict[str, Any]) -> None:
        await self.send_inbox()

    async def send_inbox(self) -> None:
        try:
            items = await short_query(inbox_list)(agent=self.scope["user"])
        except PermissionDenied:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.send_json({"type": "inbox", "items": items})
