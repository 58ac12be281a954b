"""Ids that every log line of a request, socket or turn carries.

The ids live in a context variable, so they follow the code that runs for one request or socket:
across ``await``, into tasks it creates and into ``sync_to_async`` calls. Plain thread pools do
not copy context; submit work there as ``contextvars.copy_context().run(fn, ...)`` to keep them.

    with logcontext.bind(conversation_id=conversation.pk, turn_id=turn.pk):
        logger.info("turn started")   # the JSON line carries both ids

HTTP requests get ``request_id`` and ``user_id`` from the two middleware classes below;
websocket connections from :class:`WebsocketLogContext` in ``anycompany/asgi.py``; the chat
consumer adds ``conversation_id`` and each turn ``turn_id`` with :func:`bind_rest`
(``chat.live.observe``).
"""

import contextvars
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.log import log_response

# The ids a log line may carry, in the order they are written.
FIELDS = ("request_id", "user_id", "conversation_id", "turn_id")
REQUEST_ID_HEADER = "X-Request-ID"

# An incoming id becomes part of every log line of the request, so only short, plain ids are
# taken over; anything else is replaced by a fresh one.
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}")
# The load balancer's header, e.g. "Self=1-…;Root=1-67891233-abcdef012345678912345678;Sampled=1".
_AMZN_ROOT = re.compile(r"(?:^|;)Root=(1-[0-9a-f]{8}-[0-9a-f]{24})(?:;|$)")

_EMPTY: Mapping[str, object] = MappingProxyType({})
_ids: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "anycompany_log_ids", default=_EMPTY
)


def current() -> Mapping[str, object]:
    """The ids bound in the running context (read-only)."""
    return _ids.get()


@contextmanager
def bind(**ids: object) -> Iterator[None]:
    """Adds ids to every log record made inside the block; ``None`` values are left out.

    Raises ``TypeError`` for a name that is not one of :data:`FIELDS`, so a typo cannot
    silently produce a field that no log query looks for.
    """
    unknown = set(ids) - set(FIELDS)
    if unknown:
        raise TypeError(f"Unknown log context field(s) {sorted(unknown)}; use {FIELDS}.")
    merged = {**_ids.get(), **{name: value for name, value in ids.items() if value is not None}}
    token = _ids.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _ids.reset(token)


def bind_rest(**ids: object) -> None:
    """Adds ids for the rest of the running context, where no ``with`` block fits.

    The running context is a websocket connection's task, or a job started with
    ``contextvars.copy_context().run``: the ids end with it and never reach other connections
    or jobs. Elsewhere use :func:`bind`. Raises ``TypeError`` like :func:`bind`.
    """
    unknown = set(ids) - set(FIELDS)
    if unknown:
        raise TypeError(f"Unknown log context field(s) {sorted(unknown)}; use {FIELDS}.")
    merged = {**_ids.get(), **{name: value for name, value in ids.items() if value is not None}}
    _ids.set(MappingProxyType(merged))


def request_id_from_headers(headers: Mapping[str, str]) -> str:
    """The caller's ``X-Request-ID``, else the load balancer's trace root, else a new id.

    ``headers`` is keyed by lower-case header name.
    """
    candidate = headers.get("x-request-id", "").strip()
    if _CLIENT_ID.fullmatch(candidate):
        return candidate
    root = _AMZN_ROOT.search(headers.get("x-amzn-trace-id", ""))
    if root:
        return root.group(1)
    return uuid.uuid4().hex


# --- HTTP -------------------------------------------------------------------------------------


class RequestLogContextMiddleware:
    """Binds ``request_id`` for the whole request and echoes it in the ``X-Request-ID`` header.

    First in ``MIDDLEWARE``, so redirects, health probes and static files carry the id too.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        headers = {name.lower(): value for name, value in request.headers.items()}
        request_id = request_id_from_headers(headers)
        with bind(request_id=request_id):
            response = self.get_response(request)
            if response.status_code >= 400:
                # Django logs failed requests once the middleware have returned, outside these
                # ids; logging here first (the same line) marks the response as logged.
                with bind(user_id=_user_id(request)):
                    log_response(
                        "%s: %s",
                        response.reason_phrase,
                        request.path,
                        response=response,
                        request=request,
                    )
        response[REQUEST_ID_HEADER] = request_id
        return response


class UserLogContextMiddleware:
    """Binds ``user_id`` once ``AuthenticationMiddleware`` knows who is signed in."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with bind(user_id=_user_id(request)):
            return self.get_response(request)


def _user_id(request: HttpRequest) -> object:
    user = getattr(request, "user", None)
    return user.pk if user is not None and user.is_authenticated else None


# --- Websockets -------------------------------------------------------------------------------


def socket_ids(scope: Mapping[str, Any]) -> dict[str, object]:
    """``request_id`` and ``user_id`` for a websocket connection's ASGI scope."""
    headers = _scope_headers(scope.get("headers", ()))
    user = scope.get("user")
    user_id = user.pk if user is not None and user.is_authenticated else None
    return {"request_id": request_id_from_headers(headers), "user_id": user_id}


class WebsocketLogContext:
    """ASGI middleware: binds :func:`socket_ids` for the lifetime of each websocket connection.

    Goes inside the auth middleware (``chat.live.sessions.socket_auth_stack``) so the user is
    already known.
    """

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        with bind(**socket_ids(scope)):
            await self.app(scope, receive, send)


def _scope_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}
