"""The support team's websockets: the inbox, and a customer's conversation seen by an agent.

Both authorize by permission (``chat.handoff.may_reply``: active staff with
``chat.reply_conversation``), not by ownership, and hand every step to ``chat.handoff``.

``/ws/staff/inbox/`` sends {"type": "inbox", "items": [...]} (``chat.handoff.inbox_list``) on
connect and whenever a handoff changes anywhere. Client frames: {"type": "ping"}.

``/ws/staff/conversations/<uuid>/`` joins the conversation's group, so the agent sees what the
customer's tabs see (stored messages by seq, streaming deltas, "handoff" changes), and the
customer's tabs see the agent's messages. Client frames:
    {"type": "claim"} | {"type": "release"} | {"type": "resolve"}
    {"type": "reply", "text": str, "client_message_id": str}
    {"type": "resume", "after_seq": int} | {"type": "ping"}
Server frames besides the relayed events: {"type": "done", "action": str, "accepted": bool}
after a step, {"type": "replied", "client_message_id": str, "accepted": bool} after a reply, and
{"type": "error", "code", "text", "retryable": false} for a refused frame or step.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.exceptions import PermissionDenied

from chat import handoff, realtime, services
from chat.consumers import (
    CLIENT_MESSAGE_ID,
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHENTICATED,
    ChatConsumer,
    FrameError,
    _db,
    parse_frame,
    refusals_as_errors,
)

STEPS = {
    "claim": handoff.handoff_claim,
    "release": handoff.handoff_release,
    "resolve": handoff.handoff_resolve,
}


def parse_staff_frame(raw: str | None) -> dict[str, Any]:
    """One agent frame as a dict with a valid "type" (and, for a reply, text and id).

    Raises: ``FrameError``.
    """
    try:
        data = json.loads(raw) if raw is not None else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise FrameError("invalid_frame", "That request could not be read. Please reload.")
    kind = data.get("type")
    if kind in STEPS:
        return {"type": kind}
    if kind == "reply":
        text, client_message_id = data.get("text"), data.get("client_message_id")
        if not isinstance(text, str) or not text.strip():
            raise FrameError("text_required", "Please type a message before sending.")
        if len(text) > settings.CHAT_MESSAGE_MAX_CHARS:
            raise FrameError(
                "text_too_long",
                f"Please keep your message under {settings.CHAT_MESSAGE_MAX_CHARS} characters.",
            )
        if not isinstance(client_message_id, str) or not CLIENT_MESSAGE_ID.match(client_message_id):
            raise FrameError("invalid_client_message_id", "Please reload the page and try again.")
        return {"type": kind, "text": text, "client_message_id": client_message_id}
    if kind in ("resume", "ping"):
        frame = parse_frame(raw)
        return {"type": frame.type, "after_seq": frame.after_seq}
    raise FrameError("unknown_type", "That request is not supported. Please reload the page.")


class StaffConversationConsumer(ChatConsumer):
    """The customer's socket, relaying the same group, with an agent's actions instead."""

    async def load_conversation(self, user: Any, conversation_id: str) -> Any:
        # Any customer's conversation, for an agent with the reply permission.
        return await _db(handoff.staff_conversation_get)(
            agent=user, conversation_id=conversation_id
        )

    async def opened(self) -> None:
        await self.send_state()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = parse_staff_frame(text_data)
        except FrameError as error:
            await self.send_json(
                {"type": "error", "code": error.code, "text": error.text, "retryable": False}
            )
            return
        kind = frame["type"]
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "resume":
            await self.send_state()
            await self.send_stored(frame["after_seq"])
        elif kind == "reply":
            accepted = await self.step(
                handoff.handoff_reply,
                text=frame["text"],
                client_message_id=frame["client_message_id"],
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
            current = await _db(handoff.staff_conversation_get)(
                agent=self.scope["user"], conversation_id=self.conversation.pk
            )
        except (PermissionDenied, services.ConversationNotFound):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.send_json(handoff.handoff_state(current))


class StaffInboxConsumer(AsyncWebsocketConsumer):
    joined = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await _db(handoff.may_reply)(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.channel_layer.group_add(realtime.INBOX_GROUP, self.channel_name)
        await self.accept()
        self.joined = True
        realtime.websocket_opened()
        await self.send_inbox()

    async def disconnect(self, code: int) -> None:
        if self.joined:
            self.joined = False
            realtime.websocket_closed()
            await self.channel_layer.group_discard(realtime.INBOX_GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            data = json.loads(text_data) if text_data is not None else None
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("type") == "ping":
            await self.send(text_data=json.dumps({"type": "pong"}))
        elif isinstance(data, dict) and data.get("type") == "refresh":
            await self.send_inbox()
        else:
            error = {
                "type": "error",
                "code": "unknown_type",
                "text": "That request is not supported. Please reload the page.",
                "retryable": False,
            }
            await self.send(text_data=json.dumps(error))

    async def inbox_changed(self, message: dict[str, Any]) -> None:
        await self.send_inbox()

    async def send_inbox(self) -> None:
        try:
            items = await _db(handoff.inbox_list)(agent=self.scope["user"])
        except PermissionDenied:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.send(text_data=json.dumps({"type": "inbox", "items": items}))
