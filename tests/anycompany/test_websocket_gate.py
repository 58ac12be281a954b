"""The websocket gate against the real server (daphne in its own process): exact origins, and
unknown paths refused without an error."""

import asyncio
import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from chat.live import conversations
from orders.models import Customer
from tests.chat.sockets import (
    app_server,
    conversation_path,
    database_sessions_closed,  # noqa: F401 - a fixture
    session_cookie,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("database_sessions_closed"),
]


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server") / "server.log"


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker: Any, server_log: Path) -> Iterator[int]:
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.anycompany.server_settings",
        "TEST_SERVER_LOG": str(server_log),
    }
    with django_db_blocker.unblock(), app_server(env=env) as port:
        yield port


class Log:
    """What the server logs from now on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = path.stat().st_size if path.exists() else 0

    def since(self) -> str:
        with self.path.open("rb") as file:
            file.seek(self.start)
            return file.read().decode(errors="replace")


async def handshake(port: int, path: str, *, origin: str | None, cookie: str | None = None) -> int:
    """Opens a websocket handshake and returns the HTTP status the server answered with."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    if cookie is not None:
        lines.append(f"Cookie: sessionid={cookie}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return int(status_line.split()[1])


async def alices_conversation(alice: Customer) -> tuple[str, str]:
    assert alice.user is not None
    conversation = await sync_to_async(conversations.conversation_start)(user=alice.user)
    cookie = await sync_to_async(session_cookie)(alice.user)
    return conversation_path(conversation.pk), cookie


async def test_the_sites_own_origin_is_accepted(server: int, alice: Customer) -> None:
    path, cookie = await alices_conversation(alice)
    status = await handshake(server, path, origin=f"http://127.0.0.1:{server}", cookie=cookie)
    assert status == 101


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:9999",  # another port
        "https://127.0.0.1:{port}",  # another scheme: the site is http
        "http://localhost:1",
        "http://localhost:{port}",  # an allowed host, but not the one the page came from
        "http://127.0.0.1.evil.example:{port}",
        "null",
        None,
    ],
)
async def test_any_other_origin_is_refused_with_a_warning_and_no_traceback(
    server: int, server_log: Path, alice: Customer, origin: str | None
) -> None:
    path, cookie = await alices_conversation(alice)
    log = Log(server_log)
    origin = None if origin is None else origin.format(port=server)
    assert await handshake(server, path, origin=origin, cookie=cookie) == 403
    logged = log.since()
    assert "WARNING anycompany.websocket Websocket refused: origin" in logged
    assert "Traceback" not in logged
    assert " ERROR " not in logged


@pytest.mark.parametrize("path", ["/ws/nope/", "/ws/conversations/not-a-uuid/", "/"])
@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed-in"])
async def test_an_unknown_path_is_refused_without_an_error(
    server: int, server_log: Path, alice: Customer, path: str, signed_in: bool
) -> None:
    cookie = (await alices_conversation(alice))[1] if signed_in else None
    log = Log(server_log)
    status = await handshake(server, path, origin=f"http://127.0.0.1:{server}", cookie=cookie)
    assert status == 403
    logged = log.since()
    assert "Traceback" not in logged
    assert " ERROR " not in logged


# In process: the parts of the rule the real server's settings do not vary.


async def in_process_handshake(headers: list[tuple[bytes, bytes]], path: str = "/ws/nope/") -> Any:
    from anycompany.asgi import application

    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    await communicator.disconnect()
    return connected


@override_settings(ALLOWED_HOSTS=["support.example.com"])
async def test_behind_the_load_balancer_the_https_origin_is_the_sites_own(
    alice: Customer,
) -> None:
    path, cookie = await alices_conversation(alice)
    base = [(b"host", b"support.example.com"), (b"cookie", f"sessionid={cookie}".encode())]
    https = [(b"origin", b"https://support.example.com"), (b"x-forwarded-proto", b"https")]
    assert await in_process_handshake([*base, *https], path)
    http_page = [(b"origin", b"http://support.example.com"), (b"x-forwarded-proto", b"https")]
    assert not await in_process_handshake([*base, *http_page], path)


@override_settings(
    ALLOWED_HOSTS=["internal.example.com"],
    CSRF_TRUSTED_ORIGINS=["https://support.example.com", "https://*.anycompany.example"],
)
async def test_csrf_trusted_origins_are_accepted_exactly(alice: Customer) -> None:
    path, cookie = await alices_conversation(alice)
    base = [(b"host", b"internal.example.com"), (b"cookie", f"sessionid={cookie}".encode())]
    for origin, accepted in [
        (b"https://support.example.com", True),
        (b"https://help.anycompany.example", True),
        (b"http://support.example.com", False),
        (b"https://support.example.com:8443", False),
        (b"http://help.anycompany.example", False),
    ]:
        assert await in_process_handshake([*base, (b"origin", origin)], path) is accepted, origin
