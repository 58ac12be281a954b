"""A customer as the server sees one: the sign-in form, the page's POSTs, the page's websocket.

``Browser`` is blocking (run it in a thread); ``ChatSocket`` speaks the chat page's protocol
(``static/js/socket.js``, ``chat.js``): ``resume`` on open, ``send`` with a client id, then
everything until the ``submitted`` event for that id, reading an ``events`` frame as its events.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
CONVERSATION_PATH = re.compile(r"^/conversations/([0-9a-f-]{36})/$")


class ClientError(RuntimeError):
    """The server answered a customer's request in a way a browser could not go on from."""


class Browser:
    """Cookies and CSRF tokens of one signed-in customer, over plain HTTP/1.1."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.cookies: dict[str, str] = {}

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        headers = {"Host": f"{self.host}:{self.port}", "Cookie": self.cookie_header()}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Origin"] = self.origin
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
        finally:
            connection.close()
        for value in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(value).items():
                self.cookies[name] = morsel.value
        return response.status, {k.lower(): v for k, v in response.headers.items()}, text

    def _form_token(self, path: str) -> str:
        status, _, page = self.request("GET", path)
        token = CSRF_FIELD.search(page)
        if status != 200 or token is None:
            raise ClientError(f"GET {path} gave HTTP {status} without a CSRF form token.")
        return token.group(1)

    def sign_in(self, username: str, password: str) -> None:
        """The sign-in form, as a person fills it in.

        Raises: ``ClientError`` when the form does not redirect (wrong credentials, CSRF).
        """
        token = self._form_token("/accounts/login/")
        status, headers, _ = self.request(
            "POST",
            "/accounts/login/",
            {"csrfmiddlewaretoken": token, "username": username, "password": password},
        )
        if status != 302 or "sessionid" not in self.cookies:
            raise ClientError(
                f"Signing in as {username!r} gave HTTP {status} "
                f"(redirect to {headers.get('location')!r}); check the login and CSRF settings."
            )

    def new_conversations(self, count: int) -> list[str]:
        """Starts conversations with the home page's "new conversation" form; their ids."""
        token = self._form_token("/")
        ids = []
        for _ in range(count):
            status, headers, _ = self.request(
                "POST", "/conversations/new/", {"csrfmiddlewaretoken": token}
            )
            found = CONVERSATION_PATH.match(headers.get("location", ""))
            if status != 302 or found is None:
                raise ClientError(f"Starting a conversation gave HTTP {status}.")
            ids.append(found.group(1))
        return ids


@dataclass
class TurnResult:
    token: str
    started: float  # time.perf_counter() when the message was sent
    seconds: float  # from sending the message to its "submitted" frame
    ok: bool
    problem: str = ""
    frames: int = 0  # websocket frames received from sending the message to "submitted"


@dataclass
class ChatSocket:
    """One open chat page: its websocket and the last stored seq it has shown."""

    connection: ClientConnection
    conversation_id: str
    last_seq: int = 0
    seen: set[int] = field(default_factory=set)
    frames: int = 0  # websocket frames received
    pending: deque[dict[str, Any]] = field(default_factory=deque)  # events of a frame not yet read

    @classmethod
    async def open(
        cls, browser: Browser, conversation_id: str, *, timeout: float = 60
    ) -> ChatSocket:
        """Connects like the page does (cookies, Origin) and resumes from the start.

        Waits for a ``pong`` so the resume's reads are done before the caller measures anything.
        """
        connection = await connect(
            f"ws://{browser.host}:{browser.port}/ws/conversations/{conversation_id}/",
            origin=Origin(browser.origin),
            additional_headers={"Cookie": browser.cookie_header()},
            open_timeout=timeout,
            # The page pings at the application level, every 30 s; idle sockets stay idle here.
            ping_interval=None,
            max_size=2**22,
        )
        socket = cls(connection, conversation_id)
        await socket.send({"type": "resume", "after_seq": 0})
        await socket.send({"type": "ping"})
        async with asyncio.timeout(timeout):
            while (await socket.receive()).get("type") != "pong":
                pass
        return socket

    async def send(self, frame: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(frame))

    async def receive(self) -> dict[str, Any]:
        """The next event; several events sent together come as one ``events`` frame."""
        if not self.pending:
            frame: dict[str, Any] = json.loads(await self.connection.recv())
            self.frames += 1
            self.pending.extend(frame["events"] if frame.get("type") == "events" else [frame])
        event = self.pending.popleft()
        seq = event.get("seq")
        if event.get("type") == "message" and isinstance(seq, int):
            self.seen.add(seq)
            self.last_seq = max(self.last_seq, seq)
        return event

    async def turn(self, text: str, token: str, expected: str, *, timeout: float) -> TurnResult:
        """Sends ``text`` and reads until its ``submitted`` frame.

        ``ok`` when the turn was accepted and the stored assistant reply that arrived is exactly
        ``expected``. A socket that closes, or no ``submitted`` within ``timeout``, is a lost turn.
        """
        client_message_id = uuid.uuid4().hex
        reply: str | None = None
        frames_before = self.frames
        started = time.perf_counter()
        try:
            await self.send({"type": "send", "text": text, "client_message_id": client_message_id})
            async with asyncio.timeout(timeout):
                while True:
                    event = await self.receive()
                    kind = event.get("type")
                    if kind == "message" and event.get("role") == "assistant":
                        reply = str(event.get("text"))
                    elif (
                        kind == "submitted" and event.get("client_message_id") == client_message_id
                    ):
                        break
        except TimeoutError:
            return TurnResult(
                token, started, time.perf_counter() - started, False, "lost: no submitted"
            )
        except ConnectionClosed as closed:
            return TurnResult(
                token, started, time.perf_counter() - started, False, f"lost: closed {closed.rcvd}"
            )
        seconds = time.perf_counter() - started
        frames = self.frames - frames_before
        if not event.get("accepted"):
            return TurnResult(token, started, seconds, False, "not accepted", frames)
        if reply != expected:
            problem = "lost: no stored reply" if reply is None else f"wrong reply {reply[:80]!r}"
            return TurnResult(token, started, seconds, False, problem, frames)
        return TurnResult(token, started, seconds, True, "", frames)

    async def close(self) -> None:
        await self.connection.close()
