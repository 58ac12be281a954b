"""The gate in front of every websocket: the exact Origin, and a clean refusal where none fits.

A browser sends the page's origin with every handshake, and sends the site's cookies with it
whatever page opened the socket; so the Origin is what stops another site's page from using a
signed-in customer's session (cross-site websocket hijacking). The rule is Django's own for
form posts (CSRF): the Origin must be exactly this site's (the scheme the request came in on,
with ``X-Forwarded-Proto`` per ``SECURE_PROXY_SSL_HEADER`` behind the load balancer, and a
``Host`` that ``ALLOWED_HOSTS`` accepts, port included) or one of ``CSRF_TRUSTED_ORIGINS``.

A refused handshake is closed before it is accepted, which daphne answers with HTTP 403.
"""

import logging
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
ASGIApp = Any


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _own_origin(scope: Scope) -> str | None:
    host = _header(scope, b"host")
    if not host:
        return None
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, allowed_hosts):
        return None
    secure = scope.get("scheme") == "wss"
    if settings.SECURE_PROXY_SSL_HEADER:
        meta_name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        name = meta_name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        forwarded = _header(scope, name)
        if forwarded is not None:
            secure = forwarded.split(",", 1)[0].strip() == secure_value
    return f"{'https' if secure else 'http'}://{host.lower()}"


def origin_allowed(scope: Scope) -> bool:
    """Whether the handshake's Origin is exactly this site's or a trusted one (see above)."""
    origin = _header(scope, b"origin")
    if origin is None:
        return False
    if origin == _own_origin(scope) or origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    # CSRF_TRUSTED_ORIGINS may name every subdomain, as https://*.example.com.
    return any(
        is_same_domain(parsed.netloc, trusted.netloc.lstrip("*"))
        for trusted in map(urlsplit, settings.CSRF_TRUSTED_ORIGINS)
        if trusted.netloc.startswith("*") and trusted.scheme == parsed.scheme
    )


async def refuse(scope: Scope, receive: Any, send: Any) -> None:
    """Closes the handshake before accepting it: daphne answers HTTP 403."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close"})


class OriginGate:
    """Lets a handshake through to ``application`` only from an allowed origin."""

    def __init__(self, application: ASGIApp) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if origin_allowed(scope):
            await self.application(scope, receive, send)
            return
        # Deliberate and expected (another site's page, a script): one line, no traceback.
        origin = _header(scope, b"origin")
        logger.warning(
            "Websocket refused: origin %s is not this site's (path %r)",
            "missing" if origin is None else repr(origin[:200]),
            scope.get("path", "")[:200],
        )
        await refuse(scope, receive, send)
