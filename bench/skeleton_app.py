"""A turn's skeleton and nothing else, served by daphne: what the stack costs before our code.

``bench/stack_floor.py`` serves this module with the same server as production (daphne,
``DEBUG=False``), Channels with channels-redis on a real Redis (the project's layer settings),
Django's database sessions on PostgreSQL through Django's own connection pool, and the same
websocket middleware (``AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(...)))``).
None of the app's packages is imported: the numbers are the framework's alone.

A socket's query string sets the shape of every exchange on it. For each frame it receives:

- Channels' own dispatch hops to its shared thread to close old database connections, as it
  does for every message of every consumer (``cleanup=0`` leaves that out);
- ``hops`` trips to a worker thread (``sync_to_async(thread_sensitive=False)``, as the app's
  database calls make); with ``session=1`` the first reads the session and its user through
  Django, as the app's per-message session check does;
- ``sends`` group sends through the channel layer, to a group the socket is not in unless
  ``member=1`` (the app's layer leaves a turn's own socket out, so with one tab open its group
  send writes nothing);
- ``frames`` JSON frames back, the last one marked ``"last": true``; with ``bursts=B`` they come
  from the last hop's worker thread, in B wake-ups of the event loop, as a turn's events do.

Configured from the environment: ``FLOOR_PG_PORT``, ``FLOOR_REDIS_URL``, ``SECRET_KEY``.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

import django
from django.conf import settings


def _required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise RuntimeError(f"{name} must be set (bench/stack_floor.py sets it).")
    return value


settings.configure(
    DEBUG=False,
    SECRET_KEY=_required("SECRET_KEY"),
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    INSTALLED_APPS=[
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "django.contrib.sessions",
    ],
    USE_TZ=True,
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": "127.0.0.1",
            "PORT": _required("FLOOR_PG_PORT"),
            "NAME": "floor",
            "USER": "postgres",
            "CONN_MAX_AGE": 0,
            # The app's pool settings (DATABASE_POOL_SIZE 10): a connection goes back to the
            # pool when Django closes it.
            "OPTIONS": {
                "connect_timeout": 5,
                "pool": {"min_size": 2, "max_size": 10, "timeout": 10.0, "max_lifetime": 600},
            },
        }
    },
    # The app's channel layer settings, on channels-redis's own layer class.
    CHANNEL_LAYERS={
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": _required("FLOOR_REDIS_URL"),
                        "max_connections": 1000,
                        "socket_timeout": 15,
                        "socket_connect_timeout": 5,
                        "health_check_interval": 30,
                    }
                ],
                "capacity": 1000,
                "expiry": 60,
                "group_expiry": 86400,
            },
        }
    },
)
django.setup()

from asgiref.sync import sync_to_async  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.consumer import get_handler_name  # noqa: E402
from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib import auth  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.db import close_old_connections, connection  # noqa: E402
from django.http import HttpRequest  # noqa: E402
from django.urls import path  # noqa: E402

USERNAME = "floor"
# Between a turn's bursts of events; idle time, no CPU.
BURST_GAP_SECONDS = 0.0005


def _nothing() -> None:
    return None


def session_read(session_key: str | None) -> bool:
    """The session and its user read afresh, as a request reads them (two queries), the
    connection given back to the pool afterwards."""
    close_old_connections()
    try:
        request = HttpRequest()
        request.session = SessionStore(session_key)
        return bool(auth.get_user(request).is_authenticated)
    finally:
        connection.close()


def _flag(query: dict[str, list[str]], name: str, default: int = 0) -> int:
    return int(query.get(name, [str(default)])[-1])


class Skeleton(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        self.hops = _flag(query, "hops")
        self.sends = _flag(query, "sends")
        self.frames = max(1, _flag(query, "frames", 1))
        self.bursts = _flag(query, "bursts")
        self.session = bool(_flag(query, "session"))
        self.cleanup = bool(_flag(query, "cleanup", 1))
        self.group = f"floor.{uuid.uuid4().hex}"
        if _flag(query, "member"):
            await self.channel_layer.group_add(self.group, self.channel_name)
        session = self.scope.get("session")
        self.session_key = getattr(session, "session_key", None)
        await self.accept()

    async def dispatch(self, message: dict[str, Any]) -> None:
        if getattr(self, "cleanup", True):
            await super().dispatch(message)
        else:
            # Channels' dispatch without its ``aclose_old_connections`` before every message (a
            # hop to the shared thread-sensitive thread), to show what that hop costs.
            await getattr(self, get_handler_name(message))(message)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        number = content.get("n")
        frames = [
            {
                "type": "event",
                "n": number,
                "text": "Order 24601 (Wireless Headphones, quantity 1) is Shipped.",
                "last": index == self.frames - 1,
            }
            for index in range(self.frames)
        ]
        for hop in range(self.hops):
            if hop == 0 and self.session:
                if not await sync_to_async(session_read, thread_sensitive=False)(self.session_key):
                    await self.close(code=4401)
                    return
            elif hop == self.hops - 1 and self.bursts:
                await self.frames_from_thread(frames)
                frames = []
            else:
                await sync_to_async(_nothing, thread_sensitive=False)()
        for _ in range(self.sends):
            await self.channel_layer.group_send(self.group, {"type": "floor.event", "n": number})
        for frame in frames:
            await self.send_json(frame)

    async def frames_from_thread(self, frames: list[dict[str, Any]]) -> None:
        """A hop whose worker thread hands ``frames`` to the event loop in ``bursts`` wake-ups
        (``call_soon_threadsafe``), as a turn's events reach its socket while the turn runs."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue()
        size = -(-len(frames) // self.bursts)

        def job() -> None:
            for start in range(0, len(frames), size):
                if start:
                    # The turn's work between its events (a query, a model call) waits
                    # without the GIL; each burst so wakes the loop on its own.
                    time.sleep(BURST_GAP_SECONDS)
                loop.call_soon_threadsafe(queue.put_nowait, frames[start : start + size])
            loop.call_soon_threadsafe(queue.put_nowait, None)

        worker = asyncio.ensure_future(sync_to_async(job, thread_sensitive=False)())
        while (burst := await queue.get()) is not None:
            for frame in burst:
                await self.send_json(frame)
        await worker

    async def floor_event(self, message: dict[str, Any]) -> None:
        """A group message delivered back (``member=1``): dropped, as the app drops its own."""


async def _http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Any HTTP request: 200, so the bench's readiness probe sees the server up."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


application = ProtocolTypeRouter(
    {
        "http": _http,
        "websocket": URLRouter(
            [
                # The production stack: Origin check, then the session and user at the handshake.
                path(
                    "ws/floor/",
                    AllowedHostsOriginValidator(AuthMiddlewareStack(Skeleton.as_asgi())),
                ),
                # No middleware: what the session and user lookup at the handshake cost.
                path("ws/bare/", Skeleton.as_asgi()),
            ]
        ),
    }
)


def prepare() -> None:
    """Creates the tables, a user and a signed-in session; prints the session key."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    user = User.objects.create_user(USERNAME, password=uuid.uuid4().hex)
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    print(store.session_key)
