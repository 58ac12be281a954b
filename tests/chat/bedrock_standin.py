"""A local stand-in for the Bedrock runtime HTTP API, for tests of ``chat.engine.bedrock``.

The real boto3 client talks to it over HTTP (via ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``), so
request signing, serialisation, botocore's retries, error parsing and its event-stream parser
all run for real. Replies are scripted per test; every request is recorded.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

EVENT_STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"

# How long a stalled reply waits at most; tests release it as soon as they are done.
_MAX_STALL_SECONDS = 30.0


# --- AWS event-stream encoding ----------------------------------------------------------------


def _string_header(name: str, value: str) -> bytes:
    name_bytes, value_bytes = name.encode(), value.encode()
    # Header value type 7 is "string": a 2-byte length then UTF-8 bytes.
    return (
        struct.pack("!B", len(name_bytes))
        + name_bytes
        + struct.pack("!BH", 7, len(value_bytes))
        + value_bytes
    )


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude, prelude CRC, headers, payload, message CRC."""
    header_bytes = b"".join(_string_header(name, value) for name, value in headers.items())
    total_length = 4 + 4 + 4 + len(header_bytes) + len(payload) + 4
    prelude = struct.pack("!II", total_length, len(header_bytes))
    message = prelude + struct.pack("!I", binascii.crc32(prelude)) + header_bytes + payload
    return message + struct.pack("!I", binascii.crc32(message))


def event_frame(event_type: str, body: dict[str, Any]) -> bytes:
    """A ``ConverseStream`` event; ``body`` is the event's inner member (e.g. a delta event)."""
    return encode_frame(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        json.dumps(body).encode(),
    )


def exception_frame(exception_type: str, message: str) -> bytes:
    """An in-stream exception such as ``modelStreamErrorException``."""
    return encode_frame(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps({"message": message}).encode(),
    )


def text_stream_frames(*deltas: str, stop_reason: str = "end_turn") -> list[bytes]:
    """A complete assistant text reply, as Bedrock streams it."""
    return [
        event_frame("messageStart", {"role": "assistant"}),
        *(
            event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": delta}})
            for delta in deltas
        ),
        event_frame("contentBlockStop", {"contentBlockIndex": 0}),
        event_frame("messageStop", {"stopReason": stop_reason}),
        event_frame(
            "metadata",
            {
                "usage": {"inputTokens": 12, "outputTokens": 7, "totalTokens": 19},
                "metrics": {"latencyMs": 321},
            },
        ),
    ]


def tool_stream_frames(
    text: str, tool_use_id: str, name: str, tool_input: dict[str, Any]
) -> list[bytes]:
    """An assistant message with some text and then one tool call, as Bedrock streams it."""
    return [
        event_frame("messageStart", {"role": "assistant"}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}}),
        event_frame("contentBlockStop", {"contentBlockIndex": 0}),
        event_frame(
            "contentBlockStart",
            {
                "contentBlockIndex": 1,
                "start": {"toolUse": {"toolUseId": tool_use_id, "name": name}},
            },
        ),
        event_frame(
            "contentBlockDelta",
            {"contentBlockIndex": 1, "delta": {"toolUse": {"input": json.dumps(tool_input)}}},
        ),
        event_frame("contentBlockStop", {"contentBlockIndex": 1}),
        event_frame("messageStop", {"stopReason": "tool_use"}),
        event_frame(
            "metadata",
            {
                "usage": {"inputTokens": 12, "outputTokens": 7, "totalTokens": 19},
                "metrics": {"latencyMs": 321},
            },
        ),
    ]


# --- Scripted replies -------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Written one chunk at a time (chunked transfer encoding), as a stream arrives.
    chunks: tuple[bytes, ...] | None = None
    # Before responding (stall_before) or after the chunks (stall_after), wait until the test
    # releases the stand-in: a server that stopped talking.
    stall_before: bool = False
    stall_after: bool = False
    # Write the chunks before this index, wait until the test releases the stand-in, then write
    # the rest: a stream caught in the middle that then carries on.
    pause_at: int | None = None


def error_reply(status: int, error_type: str, message: str = "stand-in error") -> Reply:
    """A service error the way Bedrock sends it: the type in ``x-amzn-ErrorType``."""
    return Reply(
        status=status,
        headers={"Content-Type": "application/json", "x-amzn-ErrorType": error_type},
        body=json.dumps({"message": message}).encode(),
    )


def stream_reply(
    frames: list[bytes], *, stall_after: bool = False, pause_at: int | None = None
) -> Reply:
    return Reply(
        headers={"Content-Type": EVENT_STREAM_CONTENT_TYPE},
        chunks=tuple(frames),
        stall_after=stall_after,
        pause_at=pause_at,
    )


def stall_reply() -> Reply:
    return Reply(stall_before=True)


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class BedrockStandIn:
    """A threaded HTTP server on 127.0.0.1 answering with scripted ``Reply`` objects in order."""

    def __init__(self) -> None:
        self.received: list[ReceivedRequest] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval keeps shutdown() (and so each test's teardown) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def start(self) -> None:
        self._thread.start()

    def release(self) -> None:
        """Lets every stalled or paused reply go on; later ones wait for the next release."""
        with self._lock:
            released, self._released = self._released, threading.Event()
        released.set()

    def _release_event(self) -> threading.Event:
        with self._lock:
            return self._released

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _next(self, request: ReceivedRequest) -> Reply | None:
        with self._lock:
            self.received.append(request)
            return self._replies.popleft() if self._replies else None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle(self) -> None:
                # The client may hang up: it timed out, or closed a stream it stopped reading.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    super().handle()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                reply = standin._next(
                    ReceivedRequest("POST", self.path, dict(self.headers.items()), body)
                )
                if reply is None:
                    reply = error_reply(418, "UnscriptedRequest", f"no reply for {self.path}")
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                released = standin._release_event()
                if reply.stall_before:
                    released.wait(_MAX_STALL_SECONDS)
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.chunks is None:
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for index, chunk in enumerate(reply.chunks):
                    if index == reply.pause_at:
                        released.wait(_MAX_STALL_SECONDS)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                if reply.stall_after:
                    released.wait(_MAX_STALL_SECONDS)
                    self.close_connection = True
                    return
                self.wfile.write(b"0\r\n\r\n")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def offline_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *also_unset: str) -> None:
    """Dummy credentials, no metadata probing, nothing from this machine's AWS config (and
    ``also_unset`` unset too)."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_REGION",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        *also_unset,
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "missing-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "missing-credentials"))
