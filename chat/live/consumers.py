"""The customer's chat websocket: authenticate, check frames, hand turns on, relay events.

Client frames are JSON objects, one JSON Schema per type (``chat.live.frames``). Server frames
are the chat's events (``chat.live.storage``), several sent together as one
{"type": "events", "events": [...]} frame (``chat.live.relay``), plus
    {"type": "error", "code": str, "text": str, "retryable": bool}   # a refused frame
    {"type": "submitted", "client_message_id": str, "accepted": bool}  # turn over, or a repeat
    {"type": "decided", "action_id": str, "accepted": bool}  # likewise after a decision
    {"type": "handoff_requested", "accepted": bool}  # False: a person was already asked
    {"type": "pong"}
and ``chat.live.handoff``'s {"type": "handoff", "status", "agent_name", …} when a person joins or
leaves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.core.exceptions import PermissionDenied

from anycompany import logcontext
from chat.live import limits, realtime, sweep
from chat.live.access import CLOSE_FORBIDDEN, CLOSE_SESSION_ENDED, Checked, SessionBound
from chat.live.conversations import ConversationNotFound, conversation_get
from chat.live.dbcalls import short_query
from chat.live.frames import (
    NOT_AN_OBJECT,
    NOT_JSON,
    NOT_TEXT,
    TOO_DEEP,
    UNKNOWN_TYPE,
    FrameError,
    FrameType,
    after_seq_parse,
    customer_frame_types,
    frame_parse,
    frame_size_limit,
    nesting_depth_over,
    too_long,
)
from chat.live.handoff import HandoffRefused, conversation_held, handoff_request, turn_running
from chat.live.livelink import LiveLink
from chat.live.relay import StoredRelay
from chat.live.turns import action_decide, turn_submit

logger = logging.getLogger(__name__)

# Refusals are sent after the handshake is accepted: refused before it, daphne answers HTTP 403
# and the browser only ever sees 1006, never the code its page explains.
CLOSE_UNAUTHENTICATED = CLOSE_SESSION_ENDED
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY = 4429
HANDOFF_POLL_SECONDS = 0.25


class JsonFrameConsumer(AsyncJsonWebsocketConsumer):
    """A JSON socket that answers a frame it cannot read with an "error" frame and stays open."""

    not_text: FrameError = NOT_TEXT
    not_json: FrameError = NOT_JSON
    too_deep: FrameError = TOO_DEEP

    def frame_limit(self) -> tuple[int, FrameError] | None:
        """The longest text frame decoded, and the error for a longer one (None: no limit)."""
        return None

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch first closes the old database connections of its shared sync
        # thread: a thread hop before every frame and every event. These sockets never query on
        # that thread. Their queries run through ``short_query``, which replaces an aged or
        # broken connection in its own worker thread and hands it back after the call; the auth
        # middleware's read uses ``database_sync_to_async``, which does the same around itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def send_json(self, content: Any, close: bool = False) -> None:
        if isinstance(content, dict) and content.get("type") == "error" and content.get("code"):
            # Every refusal of a frame (unreadable, too long, over a limit) is one line: its code.
            logger.info("Frame refused: %s", content["code"], extra={"refused": content["code"]})
        await super().send_json(content, close)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        limit = self.frame_limit()
        if text_data is None:
            await self.send_json(self.not_text.event())
        elif limit is not None and len(text_data) > limit[0]:
            await self.send_json(limit[1].event())
        else:
            try:
                content = await self.decode_json(text_data)
            except ValueError:
                await self.send_json(self.not_json.event())
                return
            except RecursionError:
                await self.send_json(self.too_deep.event())
                return
            if nesting_depth_over(content):
                await self.send_json(self.too_deep.event())
                return
            await self.receive_json(content)


async def refuse_with(consumer: AsyncJsonWebsocketConsumer, code: int) -> None:
    """Accepts the handshake, then closes with ``code``, so the page learns why."""
    await consumer.accept()
    await consumer.close(code=code)


class ChatConsumer(StoredRelay, SessionBound, LiveLink, JsonFrameConsumer):
    conversation: Any
    group: str
    # The highest seq of a stored message this socket has sent; None until the client says
    # where it is, so live messages before that are left to the resume.
    sent_seq: int | None

    async def connect(self) -> None:
        self.counted = False
        self.sent_seq = None
        self.hidden_seqs: set[int] = set()
        self.send_lock = asyncio.Lock()
        self.handoff_tasks: set[asyncio.Task[None]] = set()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await refuse_with(self, CLOSE_UNAUTHENTICATED)
            return
        if not await connect_allowed(user):
            await refuse_with(self, CLOSE_TOO_MANY)
            return
        try:
            self.conversation = await self.load_conversation(
                user, self.scope["url_route"]["kwargs"]["conversation_id"]
            )
        except ConversationNotFound:
            await refuse_with(self, CLOSE_NOT_FOUND)
            return
        except PermissionDenied:
            await refuse_with(self, CLOSE_FORBIDDEN)
            return
        # For the rest of this connection's task: its log lines and its turns carry the id.
        logcontext.bind_rest(conversation_id=self.conversation.pk)
        self.group = realtime.group_name(self.conversation.pk)
        # Announced before any read of the stored messages (this connect's or the page's
        # resume), so a turn of another tab that the read misses is sent to this one.
        await self.live_join(self.group, announce=True)
        await self.accept()
        self.counted = True
        realtime.websocket_opened()
        if not await self.session_bind():
            return
        logger.info("Socket opened")
        sweep.sweeper_ensure(self.channel_layer)
        await self.opened()
        try:
            after_seq = query_after_seq(self.scope)
        except FrameError as error:
            await self.send_json(error.event())
            return
        if after_seq is not None:
            await self.send_stored(after_seq)

    async def load_conversation(self, user: Any, conversation_id: str) -> Any:
        """The customer's own conversation; someone else's is as missing as a missing one."""
        return await short_query(conversation_get)(user=user, conversation_id=conversation_id)

    async def opened(self) -> None:
        """Hook for what a socket sends first, before the stored messages."""

    async def disconnect(self, code: int) -> None:
        if getattr(self, "counted", False):
            self.counted = False
            realtime.websocket_closed()
            logger.info("Socket closed (%s)", code, extra={"close_code": code})
        self.session_unbind()
        await self.live_leave()

    # --- Frames ---------------------------------------------------------------------------------

    def frame_limit(self) -> tuple[int, FrameError] | None:
        max_chars = settings.CHAT_MESSAGE_MAX_CHARS
        return frame_size_limit(max_chars), too_long(max_chars)

    def frame_types(self) -> dict[str, FrameType]:
        return customer_frame_types(settings.CHAT_MESSAGE_MAX_CHARS)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        try:
            frame = frame_parse(
                content,
                self.frame_types(),
                not_an_object=NOT_AN_OBJECT,
                unknown_type=UNKNOWN_TYPE,
            )
        except FrameError as error:
            await self.send_json(error.event())
            return
        await self.handle_frame(frame)

    async def handle_frame(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "send":
            self.start_send(frame["text"], frame["client_message_id"])
        elif kind == "decide":
            self.start_decide(frame["action_id"].lower(), frame["approve"])
        elif not await self.still_allowed():
            return
        elif kind == "resume":
            if await self.limit_allows(limits.resume_hit):
                await self.send_stored(int(frame.get("after_seq", 0)))
        elif kind == "handoff":
            # Waits for a running turn: in a task, so this socket keeps relaying the turn.
            task = asyncio.create_task(self.start_handoff())
            self.handoff_tasks.add(task)
            task.add_done_callback(self.handoff_tasks.discard)

    # --- Turns ----------------------------------------------------------------------------------

    async def limit_allows(self, hit: Callable[..., None]) -> bool:
        """Counts one attempt against ``hit``'s limit; over it, an "error" frame says why."""
        try:
            await short_query(hit)(user_id=self.scope["user"].pk)
        except limits.LimitExceeded as refused:
            await self.send_json(limits.refusal_event(refused))
            return False
        return True

    def limits_refusal(self, *, budget: bool) -> dict[str, Any] | None:
        """The "error" event of the limit a message or decision now would go over, if any.
        Blocking.

        A message's daily token budget is checked by its turn, in the turn's first read
        (``chat.live.intake``); ``budget`` checks it here (a decision on a confirmation).
        """
        user_id = self.scope["user"].pk
        try:
            # No model runs while a person has the conversation: the token budget is moot.
            if budget and not conversation_held(conversation_id=self.conversation.pk):
                limits.turn_allowed(user_id=user_id, customer_id=self.conversation.customer_id)
            else:
                limits.rate_limit_hit(user_id=user_id)
        except limits.LimitExceeded as refused:
            return limits.refusal_event(refused)
        return None

    def start_checked(
        self, job: Callable[..., Any], *, budget: bool, reply: Callable[[Any], dict[str, Any]]
    ) -> None:
        """Runs ``job`` as a turn once the socket's check and the customer's limits pass, all
        on the turn's thread; ``reply`` makes this socket's last word from what it returned."""

        async def settled(checked: Checked | None) -> dict[str, Any] | None:
            if checked is None:  # the turn raised: its "error" event says so
                return reply(None) if self.counted else None
            allowed = await self.checked_settle(checked.code, checked.expires_at)
            if not (allowed and checked.ran and self.counted):
                return None  # closed, or refused by a limit (its "error" event said why)
            return reply(checked.result)

        realtime.start_turn(
            partial(self.checked_run, job, partial(self.limits_refusal, budget=budget)),
            layer=self.channel_layer,
            group=self.group,
            socket=self,
            reply=settled,
        )

    def start_send(self, text: str, client_message_id: str) -> None:
        self.start_checked(
            partial(
                turn_submit,
                conversation=self.conversation,
                user=self.scope["user"],
                text=text,
                client_message_id=client_message_id,
            ),
            budget=False,
            reply=lambda accepted: {
                "type": "submitted",
                "client_message_id": client_message_id,
                "accepted": bool(accepted),
            },
        )

    def start_decide(self, action_id: str, approve: bool) -> None:
        self.start_checked(
            partial(
                action_decide,
                conversation=self.conversation,
                user=self.scope["user"],
                action_id=action_id,
                approve=approve,
            ),
            budget=True,
            reply=lambda accepted: {
                "type": "decided",
                "action_id": action_id,
                "accepted": bool(accepted),
            },
        )

    async def start_handoff(self) -> None:
        # A person takes over once the assistant's turn has ended, never in the middle of it.
        # Polled: the turn may run in another process, and its end is in the database.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.CHAT_TURN_DEADLINE_SECONDS + 10
        for _ in iter(lambda: loop.time() < deadline, False):
            if not await short_query(turn_running)(conversation_id=self.conversation.pk):
                break
            await asyncio.sleep(HANDOFF_POLL_SECONDS)
        if not await self.still_allowed():
            return
        requested = await realtime.run_step(
            partial(
                refusals_as_errors,
                handoff_request,
                conversation=self.conversation,
                user=self.scope["user"],
                reason="",
            ),
            layer=self.channel_layer,
            group=self.group,
            socket=self,
        )
        if not self.counted:
            return
        await self.send_stored()
        await self.send_json({"type": "handoff_requested", "accepted": bool(requested)})

    # --- Relaying -------------------------------------------------------------------------------

    async def live_resumed(self) -> None:
        # Messages sent while the layer was away are lost; the database has every one.
        await self.send_stored()

    def relayed(self, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("type") == "handoff":
            # Which staff account holds the conversation is none of the customer's business.
            return {key: value for key, value in event.items() if key != "agent_id"}
        return event


async def connect_allowed(user: Any) -> bool:
    """Counts a socket connection of ``user`` (``CHAT_CONNECTS_PER_MINUTE``)."""
    return not await short_query(limits.over_limit)(limits.connect_hit, user_id=user.pk)


def refusals_as_errors(job: Any, /, *, emit: Any, **kwargs: Any) -> Any:
    """Runs a handoff step; a refusal becomes an "error" event for the socket that asked."""
    try:
        return job(emit=emit, **kwargs)
    except HandoffRefused as refused:
        code, text = refused.code, refused.text
    except PermissionDenied:
        code, text = "forbidden", "You are not allowed to do that."
    except ConversationNotFound:
        code, text = "not_found", "This conversation is not available."
    except ValueError as invalid:
        code, text = "invalid", str(invalid)
    emit({"type": "error", "code": code, "text": text, "retryable": False})
    return None


def query_after_seq(scope: dict[str, Any]) -> int | None:
    """The handshake's ``?after_seq=`` (None when absent).

    Raises: ``FrameError`` when it is not a seq.
    """
    values = parse_qs(scope.get("query_string", b"").decode("latin1")).get("after_seq")
    return after_seq_parse(values[-1]) if values else None
