"""ASGI entry point: HTTP through Django, websockets through Channels under /ws/."""

import os
from typing import Any, cast

from django.core.asgi import get_asgi_application

from anycompany import telemetry

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anycompany.settings")
# Before Django builds its handler: the Django instrumentation adds a middleware.
telemetry.configure()
# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from anycompany.dbpool import database_pool_check  # noqa: E402
from anycompany.logcontext import WebsocketLogContext  # noqa: E402
from anycompany.websocket import OriginGate, refuse  # noqa: E402
from chat.live.sessions import socket_auth_stack  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402

# Fails the start-up, naming the setting, when the pool exceeds what the database allows.
database_pool_check()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": OriginGate(
            socket_auth_stack(
                WebsocketLogContext(
                    # Last, any other path: refused, instead of the router's error (HTTP 500).
                    # (cast: Django types re_path for views; Channels routes ASGI apps with it.)
                    URLRouter([*websocket_urlpatterns, re_path(r"", cast(Any, refuse))])
                )
            )
        ),
    }
)
