"""Helpers for websocket tests: a signed-in socket through the real ASGI stack, and waiting."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket as socket_module
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

ORIGIN = b"http://testserver"
Event = dict[str, Any]


def frame_events(text: str | bytes) -> list[Event]:
    """The events of one websocket frame: several sent together come as an "events" frame."""
    frame = json.loads(text)
    return frame["events"] if frame.get("type") == "events" else [frame]


def application() -> Any:
    # Imported late: the origin check reads ALLOWED_HOSTS when the module loads, and the test
    # environment adds "testserver" to it only once the session has started.
    from anycompany.asgi import application as asgi_application

    return asgi_application


def session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


class Socket:
    """A ``WebsocketCommunicator`` that keeps every event it received, for assertions.

    Reads one event at a time, whether it came alone or with others in one frame; ``frames``
    counts the frames.
    """

    def __init__(self, path: str, *, cookie: str | None = None, origin: bytes = ORIGIN) -> None:
        headers = [(b"origin", origin), (b"host", b"testserver")]
        if cookie:
            headers.append((b"cookie", f"sessionid={cookie}".encode()))
        self.communicator = WebsocketCommunicator(application(), path, headers=headers)
        self.events: list[Event] = []
        self.frames = 0
        # Events of a frame already read that ``receive`` has yet to return.
        self.pending: deque[Event] = deque()
        self.connected = False
        self.close_code: int | None = None

    async def connect(self, within: float = 10) -> Socket:
        connected, code = await self.communicator.connect(timeout=within)
        self.connected = bool(connected)
        self.close_code = None if connected else code
        return self

    async def send(self, frame: Any) -> None:
        await self.communicator.send_to(
            text_data=frame if isinstance(frame, str) else json.dumps(frame)
        )

    async def receive(self, within: float = 10) -> Event:
        if not self.pending:
            self.pending.extend(frame_events(await self.communicator.receive_from(timeout=within)))
            self.frames += 1
        event = self.pending.popleft()
        self.events.append(event)
        return event

    async def receive_until(self, predicate: Callable[[Event], bool], within: float = 20) -> Event:
        deadline = time.monotonic() + within
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching event in {within} s; got {self.events[-10:]}")
            event = await self.receive(within=remaining)
            if predicate(event):
                return event

    async def seen(self, predicate: Callable[[Event], bool], within: float = 10) -> bool:
        """Whether a matching event arrives in time; unlike a timed-out receive, a miss leaves
        the application running."""
        deadline = time.monotonic() + within
        while not any(predicate(event) for event in self.events):
            if time.monotonic() > deadline:
                return False
            if self.pending or not await self.communicator.receive_nothing(timeout=0.05):
                await self.receive()
        return True

    async def nothing_more(self, within: float = 0.3) -> bool:
        return not self.pending and await self.communicator.receive_nothing(timeout=within)

    async def close(self) -> None:
        await self.communicator.disconnect(timeout=5)

    async def closed_with(self, within: float = 10) -> int | None:
        """The code the server closes this socket with (frames before it are kept)."""
        deadline = time.monotonic() + within
        while True:
            output = await self.communicator.receive_output(
                timeout=max(deadline - time.monotonic(), 0.01)
            )
            if output["type"] == "websocket.close":
                self.close_code = output.get("code")
                return self.close_code
            if output["type"] == "websocket.send" and output.get("text"):
                self.events += [*self.pending, *frame_events(output["text"])]
                self.pending.clear()
                self.frames += 1

    def messages(self) -> list[Event]:
        return [event for event in self.events if event.get("type") == "message"]


def conversation_path(conversation_id: object) -> str:
    return f"/ws/conversations/{conversation_id}/"


def is_turn_end(event: Event) -> bool:
    return event.get("type") == "turn" and event.get("state") == "ended"


def is_submitted(client_message_id: str) -> Callable[[Event], bool]:
    return lambda event: (
        event.get("type") == "submitted" and event.get("client_message_id") == client_message_id
    )


async def signed_in_socket(user: User, conversation_id: object) -> Socket:
    cookie = await sync_to_async(session_cookie)(user)
    return await Socket(conversation_path(conversation_id), cookie=cookie).connect()


async def eventually(check: Callable[[], Any], within: float = 20, interval: float = 0.05) -> Any:
    """Polls an async ``check`` until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval)


@pytest.fixture(scope="session")
def database_sessions_closed(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Ends the test database's other sessions before it is dropped.

    Turns and short queries run on pool threads that keep their connections (CONN_MAX_AGE), and
    PostgreSQL refuses to drop a database that has sessions.
    """
    yield
    with django_db_blocker.unblock():
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


class RawWebSocket:
    """Just enough of a websocket client (RFC 6455) to talk to a real server in another process.

    Like ``Socket``, reads one event at a time and counts the ``frames``.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.events: list[Event] = []
        self.frames = 0
        self.pending: deque[Event] = deque()
        self.close_code: int | None = None

    @classmethod
    async def connect(
        cls, port: int, path: str, *, cookie: str, host: str = "127.0.0.1"
    ) -> RawWebSocket:
        reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}:{port}\r\n"
            f"Cookie: sessionid={cookie}\r\n\r\n"
        )
        writer.write(request.encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        return cls(reader, writer)

    async def _write_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        self.writer.write(
            header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        )
        await self.writer.drain()

    async def send(self, frame: Any) -> None:
        await self._write_frame(0x1, json.dumps(frame).encode())

    async def receive(self, within: float = 10) -> Event:
        async with asyncio.timeout(within):
            while not self.pending:
                first, second = await self.reader.readexactly(2)
                length = second & 0x7F
                if length == 126:
                    (length,) = struct.unpack("!H", await self.reader.readexactly(2))
                elif length == 127:
                    (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
                payload = await self.reader.readexactly(length)
                opcode = first & 0x0F
                if opcode == 0x8:
                    if len(payload) >= 2:
                        (self.close_code,) = struct.unpack("!H", payload[:2])
                    raise ConnectionError(f"closed by the server ({self.close_code})")
                if opcode == 0x9:
                    await self._write_frame(0xA, payload)
                elif opcode == 0x1:
                    self.pending.extend(frame_events(payload))
                    self.frames += 1
        event = self.pending.popleft()
        self.events.append(event)
        return event

    async def receive_until(self, predicate: Callable[[Event], bool], within: float = 20) -> Event:
        async with asyncio.timeout(within):
            while True:
                event = await self.receive(within=within)
                if predicate(event):
                    return event

    async def closed_with(self, within: float = 20) -> int | None:
        """The code the server closes this socket with (frames before it are kept)."""
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await self.receive(within=within)
        return self.close_code

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            await self._write_frame(0x8, struct.pack("!H", 1000))
        self.writer.close()


def free_port() -> int:
    with socket_module.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def app_server(*, runserver: bool = False, env: dict[str, str] | None = None) -> Iterator[int]:
    """Serves the project's ASGI application with daphne in a child process, on the test database.

    ``runserver`` uses daphne's ``manage.py runserver`` (which also serves static files when
    DEBUG is on) instead of the bare ``daphne`` command. Yields the port.
    """
    port = free_port()
    child_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.chat.server_settings",
        # The child must use the test database, under its real name.
        "DATABASE_URL": database_url(connection.settings_dict),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    python = sys.executable
    if runserver:
        command = [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    else:
        command = [
            python,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "anycompany.asgi:application",
        ]
    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(
            command, cwd=root, env=child_env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_until_serving(port, child, lambda: _tail(log, 3000))
            yield port
        finally:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def database_url(database: dict[str, Any]) -> str:
    credentials = quote(str(database["USER"]), safe="")
    if database.get("PASSWORD"):
        credentials += ":" + quote(str(database["PASSWORD"]), safe="")
    host = database.get("HOST") or "127.0.0.1"
    return f"postgres://{credentials}@{host}:{database.get('PORT') or 5432}/{database['NAME']}"


def wait_until_serving(
    port: int, child: subprocess.Popen[bytes], output: Callable[[], str], *, within: float = 90
) -> None:
    """Returns once the server on ``port`` answers its health check; raises with ``output()``
    when ``child`` exits or ``within`` seconds pass. Generous: a loaded CI machine has taken over
    30 s to import and start the app."""
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the app server did not start:\n{output()}") from None
            time.sleep(0.1)


def _tail(log: IO[bytes], size: int) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-size:]
