"""The chat websocket: authenticate, validate frames, hand turns to the chat service, relay events.

Client frames (JSON objects):
    {"type": "send", "text": str, "client_message_id": str}
    {"type": "decide", "action_id": str, "approve": bool}
    {"type": "resume", "after_seq": int}        # the last seq the client has shown
    {"type": "handoff"}                         # "Talk to a person"
    {"type": "ping"}
Server frames are the chat service's events (see ``chat.services``) plus
    {"type": "error", "code": str, "text": str, "retryable": bool}   # a refused frame
    {"type": "submitted", "client_message_id": str, "accepted": bool}  # turn over, or a repeat
    {"type": "decided", "action_id": str, "accepted": bool}  # likewise after a decision
    {"type": "handoff_requested", "accepted": bool}  # False: a person was already asked
    {"type": "pong"}
and ``chat.handoff``'s {"type": "handoff", "status", "agent_name", …} when a person joins or leaves.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.exceptions import PermissionDenied

from chat import handoff, limits, realtime, services

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
FRAME_TYPES = ("send", "decide", "resume", "handoff", "ping")
CLIENT_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def _db(func: Any) -> Any:
    # Short queries run on the loop's default pool, not the shared thread_sensitive thread.
    return database_sync_to_async(func, thread_sensitive=False)


class FrameError(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass(frozen=True)
class Frame:
    type: str
    text: str = ""
    client_message_id: str = ""
    action_id: str = ""
    approve: bool = False
    after_seq: int = 0


def _frame_size_limit() -> int:
    # Enough for the longest allowed text with every character escaped, plus the other keys.
    return settings.CHAT_MESSAGE_MAX_CHARS * 12 + 1024


def _too_long() -> FrameError:
    limit = settings.CHAT_MESSAGE_MAX_CHARS
    return FrameError(
        "text_too_long", f"Your message is too long. Please keep it under {limit} characters."
    )


def parse_frame(raw: str | None) -> Frame:
    """Turns one client text frame into a ``Frame``.

    Raises: ``FrameError`` with a code and a message the customer can act on.
    """
    if raw is None:
        raise FrameError(
            "invalid_frame", "This chat only understands text messages. Please reload the page."
        )
    if len(raw) > _frame_size_limit():
        raise _too_long()
    try:
        data = json.loads(raw)
    except ValueError:
        raise FrameError(
            "invalid_json", "That message could not be read. Please reload the page and try again."
        ) from None
    if not isinstance(data, dict):
        raise FrameError(
            "invalid_frame", "That message could not be read. Please reload the page and try again."
        )
    kind = data.get("type")
    if kind not in FRAME_TYPES:
        raise FrameError(
            "unknown_type", "That request is not supported. Please reload the page and try again."
        )
    if kind == "send":
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise FrameError("text_required", "Please type a message before sending.")
        if len(text) > settings.CHAT_MESSAGE_MAX_CHARS:
            raise _too_long()
        client_message_id = data.get("client_message_id")
        if not isinstance(client_message_id, str) or not CLIENT_MESSAGE_ID.match(client_message_id):
            raise FrameError(
                "invalid_client_message_id",
                "Your message was missing its id. Please reload the page and send it again.",
            )
        return Frame(type=kind, text=text, client_message_id=client_message_id)
    if kind == "decide":
        action_id = data.get("action_id")
        try:
            action_id = str(uuid.UUID(action_id)) if isinstance(action_id, str) else None
        except ValueError:
            action_id = None
        if action_id is None:
            raise FrameError(
                "invalid_action_id", "That confirmation is no longer valid. Please reload the page."
            )
        approve = data.get("approve")
        if not isinstance(approve, bool):
            raise FrameError(
                "invalid_approve", "Please answer the confirmation with one of its buttons."
            )
        return Frame(type=kind, action_id=action_id, approve=approve)
    if kind == "resume":
        after_seq = data.get("after_seq", 0)
        if not isinstance(after_seq, int) or isinstance(after_seq, bool) or after_seq < 0:
            raise FrameError(
                "invalid_after_seq",
                "The conversation could not be resumed. Please reload the page.",
            )
        return Frame(type=kind, after_seq=after_seq)
    return Frame(type=kind)


class ChatConsumer(AsyncWebsocketConsumer):
    conversation: Any
    group: str
    # The highest seq of a stored message this socket has sent; None until the client says
    # where it is, so live wakes before that are left to the resume.
    sent_seq: int | None

    async def connect(self) -> None:
        self.counted = False
        self.sent_seq = None
        self.send_lock = asyncio.Lock()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        try:
            self.conversation = await self.load_conversation(
                user, self.scope["url_route"]["kwargs"]["conversation_id"]
            )
        except services.ConversationNotFound:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        except PermissionDenied:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = realtime.group_name(self.conversation.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self.counted = True
        realtime.websocket_opened()
        await self.opened()
        after_seq = _query_int(self.scope, "after_seq")
        if after_seq is not None:
            await self.send_stored(after_seq)

    async def load_conversation(self, user: Any, conversation_id: str) -> Any:
        """The customer's own conversation; someone else's is as missing as a missing one."""
        return await _db(services.conversation_get)(user=user, conversation_id=conversation_id)

    async def opened(self) -> None:
        """Hook for what a socket sends first, before the stored messages."""

    async def disconnect(self, code: int) -> None:
        if getattr(self, "counted", False):
            self.counted = False
            realtime.websocket_closed()
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = parse_frame(text_data)
        except FrameError as error:
            await self.send_json(
                {"type": "error", "code": error.code, "text": error.text, "retryable": False}
            )
            return
        if frame.type == "ping":
            await self.send_json({"type": "pong"})
        elif frame.type == "resume":
            await self.send_stored(frame.after_seq)
        elif frame.type == "send":
            await self.start_send(frame)
        elif frame.type == "decide":
            await self.start_decide(frame)
        elif frame.type == "handoff":
            await self.start_handoff()

    # --- Turns --------------------------------------------------------------------------------

    async def limits_allow(self) -> bool:
        try:
            if await _db(handoff.conversation_held)(conversation_id=self.conversation.pk):
                # No model runs while a person has the conversation: the token budget is moot.
                await _db(limits.rate_limit_hit)(user_id=self.scope["user"].pk)
            else:
                await _db(limits.turn_allowed)(
                    user_id=self.scope["user"].pk, customer_id=self.conversation.customer_id
                )
        except limits.LimitExceeded as refused:
            await self.send_json(
                {
                    "type": "error",
                    "code": refused.code,
                    "text": refused.message,
                    "retryable": refused.retryable,
                }
            )
            return False
        return True

    async def start_send(self, frame: Frame) -> None:
        if not await self.limits_allow():
            return
        client_message_id = frame.client_message_id

        async def reply(accepted: object) -> None:
            if not self.counted:
                return
            # The wakes of this turn may have been dropped by the layer; the database has it all.
            await self.send_stored()
            await self.send_json(
                {
                    "type": "submitted",
                    "client_message_id": client_message_id,
                    "accepted": bool(accepted),
                }
            )

        realtime.start_turn(
            partial(
                services.turn_submit,
                conversation=self.conversation,
                user=self.scope["user"],
                text=frame.text,
                client_message_id=client_message_id,
            ),
            layer=self.channel_layer,
            group=self.group,
            channel=self.channel_name,
            on_done=reply,
        )

    async def start_decide(self, frame: Frame) -> None:
        if not await self.limits_allow():
            return

        async def reply(accepted: object) -> None:
            if not self.counted:
                return
            await self.send_stored()
            await self.send_json(
                {"type": "decided", "action_id": frame.action_id, "accepted": bool(accepted)}
            )

        realtime.start_turn(
            partial(
                services.action_decide,
                conversation=self.conversation,
                user=self.scope["user"],
                action_id=frame.action_id,
                approve=frame.approve,
            ),
            layer=self.channel_layer,
            group=self.group,
            channel=self.channel_name,
            on_done=reply,
        )

    async def start_handoff(self) -> None:
        requested = await realtime.run_step(
            partial(
                refusals_as_errors,
                handoff.handoff_request,
                conversation=self.conversation,
                user=self.scope["user"],
                reason="",
            ),
            layer=self.channel_layer,
            group=self.group,
            channel=self.channel_name,
        )
        if not self.counted:
            return
        await self.send_stored()
        await self.send_json({"type": "handoff_requested", "accepted": bool(requested)})

    # --- Relaying -----------------------------------------------------------------------------

    async def send_stored(self, after_seq: int | None = None) -> None:
        """Sends stored messages from the database after ``after_seq`` (a resume), or else after
        the last one this socket sent. Calls take turns, so no message is sent twice."""
        async with self.send_lock:
            if after_seq is None:
                if self.sent_seq is None:
                    return  # the client has not said where it is yet; its resume will
                after_seq = self.sent_seq
            events = await _db(services.events_since)(
                conversation=self.conversation, after_seq=after_seq
            )
            for event in events:
                await self.send_json(event)
            seqs = [event["seq"] for event in events if isinstance(event.get("seq"), int)]
            self.sent_seq = max(
                [after_seq, *seqs, *([] if self.sent_seq is None else [self.sent_seq])]
            )

    async def chat_wake(self, message: dict[str, Any]) -> None:
        if self.sent_seq is not None and message["seq"] > self.sent_seq:
            await self.send_stored()

    async def chat_event(self, message: dict[str, Any]) -> None:
        event = message["event"]
        if event.get("type") == "handoff":
            # Which staff account holds the conversation is none of the customer's business.
            event = {key: value for key, value in event.items() if key != "agent_id"}
        await self.send_json(event)

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content))


def refusals_as_errors(job: Any, /, *, emit: Any, **kwargs: Any) -> Any:
    """Runs a handoff step; a refusal becomes an "error" event for the socket that asked."""
    try:
        return job(emit=emit, **kwargs)
    except handoff.HandoffRefused as refused:
        code, text = refused.code, refused.text
    except PermissionDenied:
        code, text = "forbidden", "You are not allowed to do that."
    except services.ConversationNotFound:
        code, text = "not_found", "This conversation is not available."
    except ValueError as invalid:
        code, text = "invalid", str(invalid)
    emit({"type": "error", "code": code, "text": text, "retryable": False})
    return None


def _query_int(scope: dict[str, Any], name: str) -> int | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin1")).get(name)
    if not values or not values[-1].isdigit():
        return None
    return int(values[-1])
