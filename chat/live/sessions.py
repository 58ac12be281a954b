"""A socket's session and user, found at the handshake (``socket_auth_stack``) and read again
before every action (``session_check``), as a request would find them.

The answer (Django's own ``auth.get_user`` rules, ``SECRET_KEY_FALLBACKS`` included) is a
function of two rows: the session's and its user's. With database sessions on PostgreSQL both
are read in one statement on every check, and when both are exactly the ones the same socket
last found valid (``Verified``), the signed session data is not decoded and the password's HMAC
not computed again. A socket never moves its session to a new key: only an HTTP response can
hand the browser one (``_key_kept``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from typing import Any

from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.db import connection
from django.http import HttpRequest
from django.utils import timezone


@dataclass(frozen=True)
class Verified:
    """A session row's data and its user's row that passed the full check together."""

    session_data: str
    user_row: tuple[Any, ...]


@dataclass(frozen=True)
class SessionCheck:
    """A socket's session read afresh: its user (None once it no longer signs anyone in), the
    session as a request (for rules written for requests), when it expires, and what was found
    valid (for the next check's shortcut)."""

    user: AbstractBaseUser | None
    request: HttpRequest
    expires_at: datetime | None
    verified: Verified | None = None


def session_check(
    session_key: str | None, user_id: object, *, verified: Verified | None = None
) -> SessionCheck:
    """Reads the session ``session_key`` and its user again, as a request would. Blocking.

    ``user`` is None when the session is gone or expired, signs in someone other than
    ``user_id``, was made before a password change, or the account is inactive (Django's own
    ``auth.get_user`` rules, which HTTP requests follow too).

    Those rules are a function of the session's row and the user's row alone. So with database
    sessions on PostgreSQL both rows are read in one statement, every time, and when they are
    exactly the ``verified`` ones of this socket's previous check, the signed session data is not
    decoded and the password's HMAC not computed again: any change to either row (signing out,
    a new password, deactivation, a rewritten session) gets the full check.
    """
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    if (
        session_key
        and connection.vendor == "postgresql"
        and issubclass(store_class, DatabaseSessionStore)
    ):
        return _row_check(store_class, session_key, user_id, verified)
    store = _key_kept(store_class)(session_key)
    user = session_user(store)
    valid = user.is_authenticated and user.pk == user_id
    return _checked(store, user if valid else None, _expiry(store) if valid else None, None)


class SocketAuthMiddleware(AuthMiddleware):
    """Channels' ``AuthMiddleware`` with Django's own rules for the handshake's user.

    Channels compares the session's auth hash with ``SECRET_KEY`` alone and flushes the session
    when they differ. After a key rotation, every socket opened with a session signed under a
    key of ``SECRET_KEY_FALLBACKS`` would then sign its customer out, which the fallbacks exist
    to prevent. ``auth.get_user`` accepts those sessions, as every HTTP request does; the
    socket's store keeps its key (``_key_kept``).
    """

    async def resolve_scope(self, scope: dict[str, Any]) -> None:
        session = scope["session"]
        store: SessionBase = session._wrapped
        # Nothing has read the store yet (Channels only made it): the same key, never moved.
        session._wrapped = store = _key_kept(type(store))(store.session_key)
        scope["user"]._wrapped = await database_sync_to_async(session_user)(store)


def socket_auth_stack(inner: Any) -> CookieMiddleware:
    """Channels' ``AuthMiddlewareStack`` with ``SocketAuthMiddleware``."""
    return CookieMiddleware(SessionMiddleware(SocketAuthMiddleware(inner)))


def session_user(store: Any) -> AbstractBaseUser | AnonymousUser:
    """The user ``store`` signs in, by Django's rules (at the handshake and in each check).
    Blocking."""
    if not store.session_key:
        return AnonymousUser()
    user: AbstractBaseUser | AnonymousUser = auth.get_user(_request(store))
    return user


def _request(store: Any) -> HttpRequest:
    request = HttpRequest()
    request.session = store
    return request


def _checked(
    store: Any, user: Any, expires_at: datetime | None, verified: Verified | None
) -> SessionCheck:
    request = _request(store)
    request.user = user or AnonymousUser()
    return SessionCheck(
        user=user if isinstance(user, AbstractBaseUser) else None,
        request=request,
        expires_at=expires_at,
        verified=verified if isinstance(user, AbstractBaseUser) else None,
    )


def _expiry(store: Any) -> datetime | None:
    # Database-backed stores keep the exact expiry in a column; the others do not say.
    model = getattr(store, "model", None)
    if model is None or not store.session_key:
        return None
    expires: datetime | None = (
        model.objects.filter(session_key=store.session_key)
        .values_list("expire_date", flat=True)
        .first()
    )
    return expires


def _row_check(
    store_class: type[DatabaseSessionStore],
    session_key: str,
    user_id: object,
    verified: Verified | None,
) -> SessionCheck:
    sql, attnames = _session_sql(store_class)
    with connection.cursor() as cursor:
        params: dict[str, Any] = {"key": session_key, "user": user_id, "now": timezone.now()}
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:  # signed out, flushed or expired
        return _checked(store_class(session_key), None, None, None)
    session_data, expires_at, user_row = row[0], row[1], tuple(row[2:])
    store = _read_store(store_class)(session_key, session_data)
    if verified == Verified(session_data, user_row):
        known = auth.get_user_model().from_db(connection.alias, attnames, user_row)
        return _checked(store, known, expires_at, verified)
    user = session_user(store)
    if not (user.is_authenticated and user.pk == user_id):
        return _checked(store, None, None, None)
    # The row as the check read it (through the ORM, perhaps a moment after the statement):
    # a user changed in between never matches it, so the next check is a full one again.
    found = tuple(getattr(user, name) for name in attnames)
    return _checked(store, user, expires_at, Verified(session_data, found))


@functools.cache
def _session_sql(store_class: type[DatabaseSessionStore]) -> tuple[str, tuple[str, ...]]:
    session = store_class.get_model_class()._meta
    user = auth.get_user_model()._meta
    quote = connection.ops.quote_name

    def column(meta: Any, name: str) -> str:
        return quote(meta.get_field(name).column)

    fields = user.concrete_fields
    sql = f"""
        SELECT s.{column(session, "session_data")}, s.{column(session, "expire_date")},
            {", ".join(f"u.{column(user, f.name)}" for f in fields)}
        FROM {quote(session.db_table)} s
        LEFT JOIN {quote(user.db_table)} u ON u.{column(user, user.pk.name)} = %(user)s
        WHERE s.{column(session, "session_key")} = %(key)s
            AND s.{column(session, "expire_date")} > %(now)s
    """  # noqa: S608 - names come from the models' metadata; every value is a parameter
    return sql, tuple(f.attname for f in fields)


@functools.cache
def _key_kept(store_class: type[Any]) -> type[Any]:
    class KeyKept(store_class):
        """The session store, never given a new key by a check.

        After a ``SECRET_KEY`` rotation, ``auth.get_user`` accepts a session signed with a key of
        ``SECRET_KEY_FALLBACKS`` and moves it to a new session key. Only an HTTP response can
        hand the browser that key (its cookie), so a socket's check keeps the old one: the next
        page load moves it, as for every other session.
        """

        # Signed with a salt named after the class: this subclass must use its parent's.
        key_salt = store_class().key_salt

        def cycle_key(self) -> None:
            pass

    return KeyKept


@functools.cache
def _read_store(store_class: type[DatabaseSessionStore]) -> Callable[[str, str], Any]:
    class ReadStore(_key_kept(store_class)):  # type: ignore[misc]
        """The session store, holding the data of the row already read rather than reading it
        again (writes, such as the flush after a failed check, still go to the database)."""

        def __init__(self, session_key: str, session_data: str) -> None:
            super().__init__(session_key)
            self.session_data = session_data

        def load(self) -> dict[str, Any]:
            return self.decode(self.session_data)

    return ReadStore
