"""Whether an open socket may still act for its user, and closing it the moment it may not.

A websocket authenticates once, at the handshake, and may stay open for hours; the session
behind it can end meanwhile. So every socket (the customer's chat, the staff inbox and
conversation sockets, through ``SessionBound``):

- re-reads its session and user before every action (``session_check``: the session still
  exists and has not expired, it still signs in this user, the password has not changed since,
  the account is active). That is one statement, never cached: a cache of even a second would
  let an action through after signing out. Only the decoding and the HMAC are skipped while
  both rows are exactly the ones the socket last verified. A customer's message or decision
  makes its limit checks, and then runs its turn, in the same trip to a worker thread
  (``checked_run``);
- joins its user's group (``user_group``), through which signing out (``user_logged_out``),
  deactivation or deletion (``post_save``/``post_delete`` on the user) close it at once, and a
  change of groups or permissions makes it check again (``connect_signals``);
- closes itself when its session expires, at the expiry the session store records (read when
  the socket binds and whenever that timer fires, since a session's expiry only moves later).

Closing uses ``CLOSE_SESSION_ENDED`` (4401), which the pages answer with "sign in again", or
``CLOSE_FORBIDDEN`` (4403) when a staff socket's user is no longer allowed its page.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib import auth
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete
from django.http import HttpRequest
from django.utils import timezone

from chat.live.dbcalls import short_query
from chat.live.sessions import SessionCheck, Verified, session_check

logger = logging.getLogger(__name__)

CLOSE_SESSION_ENDED = 4401
CLOSE_FORBIDDEN = 4403
SESSION_ENDED = "session.ended"
ACCESS_CHANGED = "access.changed"
# Expiry is checked again at least this often, for session stores that do not say when.
EXPIRY_RECHECK_SECONDS = 300.0


@dataclass(frozen=True)
class Checked:
    """What ``SessionBound.checked_run`` did: ``code`` closes the socket; ``ran`` says whether the
    job ran (and returned ``result``)."""

    code: int | None
    expires_at: datetime | None
    ran: bool = False
    result: Any = None


def user_group(user_id: object) -> str:
    return f"user.{user_id}"


class SessionBound:
    """Mixin for a Channels websocket consumer that also uses ``chat.live.livelink.LiveLink``.

    Call ``session_bind`` once the socket is accepted, ``session_unbind`` when it disconnects,
    and ``still_allowed`` before every action. Subclasses add their own rule in
    ``refusal_for``.
    """

    scope: dict[str, Any]
    live_join: Callable[..., Any]
    close: Callable[..., Any]
    _bound_user_id: object = None
    _session_key: str | None = None
    _verified: Verified | None = None
    _expiry_timer: asyncio.TimerHandle | None = None
    _closing = False

    async def session_bind(self) -> bool:
        """Binds the accepted socket to its session; False (and closed) if it is already over."""
        session = self.scope.get("session")
        self._session_key = getattr(session, "session_key", None)
        self._bound_user_id = self.scope["user"].pk
        await self.live_join(user_group(self._bound_user_id))
        return await self.still_allowed()

    def session_unbind(self) -> None:
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None

    def refusal_for(self, check: SessionCheck) -> int | None:
        """A close code when the (valid) session's user may no longer use this socket. Blocking."""
        return None

    def _refusal(self, then: Callable[[], Any] | None) -> tuple[int | None, datetime | None, Any]:
        check = session_check(self._session_key, self._bound_user_id, verified=self._verified)
        # Set from a worker thread: only ever to a pair that passed the full check.
        self._verified = check.verified
        if check.user is None:
            return CLOSE_SESSION_ENDED, None, None
        code = self.refusal_for(check)
        return code, check.expires_at, None if code is not None or then is None else then()

    async def still_allowed(self) -> bool:
        """Whether the socket may still act; if not, closes it with the code that says why."""
        if self._closing:
            return False
        code, expires_at, _ = await short_query(self._refusal)(None)
        return await self.checked_settle(code, expires_at)

    def checked_run(
        self, job: Callable[..., Any], refusal: Callable[[], Any], *, emit: Callable[..., None]
    ) -> Checked:
        """The socket's check, then ``refusal`` (the action's limits: an event saying why it
        is refused, or None), then ``job(emit=emit)`` if both let it through. Blocking: on the
        thread that runs the job, so an action costs one trip off the event loop, not two.
        Settle the outcome on the loop (``checked_settle``)."""
        if self._closing:
            return Checked(None, None)
        code, expires_at, refused = self._refusal(refusal)
        if code is not None:
            return Checked(code, expires_at)
        if refused is not None:
            emit(refused)
            return Checked(None, expires_at)
        return Checked(None, expires_at, ran=True, result=job(emit=emit))

    async def checked_settle(self, code: int | None, expires_at: datetime | None) -> bool:
        """Closes the socket if the check refused it (``code``); else keeps its expiry timer."""
        if code is not None:
            await self.close_for(code)
            return False
        # The timer is set when the socket binds and again when it fires (``_expiry_due``).
        if self._expiry_timer is None and not self._closing:
            self._schedule_expiry(expires_at)
        return True

    async def close_for(self, code: int) -> None:
        if not self._closing:
            self._closing = True
            self.session_unbind()
            logger.info("Socket closed: access ended (%s)", code, extra={"close_code": code})
            await self.close(code=code)

    def _schedule_expiry(self, expires_at: datetime | None) -> None:
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        delay = EXPIRY_RECHECK_SECONDS
        if expires_at is not None:
            delay = min(delay, max((expires_at - timezone.now()).total_seconds(), 0.0) + 0.5)
        loop = asyncio.get_running_loop()
        self._expiry_timer = loop.call_later(delay, lambda: loop.create_task(self._expiry_due()))

    async def _expiry_due(self) -> None:
        self._expiry_timer = None
        if not self._closing:
            await self.still_allowed()

    async def session_ended(self, message: dict[str, Any]) -> None:
        """Sent to the user's group when a session of theirs ends (without a key: all of them)."""
        if message.get("session_key") in (None, self._session_key):
            await self.close_for(CLOSE_SESSION_ENDED)

    async def access_changed(self, message: dict[str, Any]) -> None:
        """Sent to the user's group when their account, groups or permissions changed."""
        await self.still_allowed()


# --- Telling a user's sockets ---------------------------------------------------------------------

_pending: set[asyncio.Task[Any]] = set()


def tell_user(user_id: object, message: dict[str, Any]) -> None:
    """Sends ``message`` to the user's sockets once the current transaction commits.

    Best effort: with the channel layer away, every socket still re-checks before it acts.
    """
    transaction.on_commit(lambda: _send(user_group(user_id), message))


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    try:
        if loop is None:
            async_to_sync(layer.group_send)(group, message)
        else:
            task = loop.create_task(layer.group_send(group, message))
            _pending.add(task)
            task.add_done_callback(_pending.discard)
    except Exception:
        logger.warning(
            "Could not tell %s that its access changed: channel layer unavailable", group
        )


def _logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is None or request is None:
        return
    tell_user(user.pk, {"type": SESSION_ENDED, "session_key": request.session.session_key})


def _user_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    if created:
        return
    if not instance.is_active:
        tell_user(instance.pk, {"type": SESSION_ENDED})
    else:
        # Staff flag, password (the session hash) or anything else: let each socket re-check.
        tell_user(instance.pk, {"type": ACCESS_CHANGED})


def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    tell_user(instance.pk, {"type": SESSION_ENDED})


def _memberships_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[Any] | None, **kwargs: Any
) -> None:
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    model = get_user_model_class()
    if isinstance(instance, model):
        user_ids: list[Any] = [instance.pk]
    elif isinstance(instance, Group):
        # A group's permissions, or (from the group's side) its members, changed.
        user_ids = list(instance.user_set.values_list("pk", flat=True))
        if pk_set and sender is model.groups.through:
            user_ids += list(pk_set)
    else:
        return
    for user_id in set(user_ids):
        tell_user(user_id, {"type": ACCESS_CHANGED})


def _group_deleted(sender: Any, instance: Group, **kwargs: Any) -> None:
    for user_id in instance.user_set.values_list("pk", flat=True):
        tell_user(user_id, {"type": ACCESS_CHANGED})


def get_user_model_class() -> Any:
    return auth.get_user_model()


def connect_signals() -> None:
    """Wires the signals above (called once, from the app's ``ready``)."""
    user_model = get_user_model_class()
    user_logged_out.connect(_logged_out, dispatch_uid="chat.access.logged_out")
    post_save.connect(_user_saved, sender=user_model, dispatch_uid="chat.access.user_saved")
    post_delete.connect(_user_deleted, sender=user_model, dispatch_uid="chat.access.user_deleted")
    for through in (
        user_model.groups.through,
        user_model.user_permissions.through,
        Group.permissions.through,
    ):
        m2m_changed.connect(
            _memberships_changed, sender=through, dispatch_uid=f"chat.access.m2m.{through}"
        )
    pre_delete.connect(_group_deleted, sender=Group, dispatch_uid="chat.access.group_deleted")
