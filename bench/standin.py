"""A Bedrock runtime stand-in for the benchmark: scripted one-tool turns over real HTTP.

The app's real boto3 client talks to it through ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, so request
signing, serialisation and botocore's event-stream parser all run as in production. It is an
asyncio server, so a thousand streams waiting out their latency at once cost no threads.

What it answers is ``bench.script``'s one-tool turn. Calls are recorded per turn token (number
of calls, model time spent, messages sent, whether the tool result was a success), and the latest
request bodies are kept so the benchmark can replay the very same calls without the server.

Timing per call: ``latency_ms`` before the first byte, then the frames spread over ``stream_ms``
(all in one write when 0); ``chunks`` is the number of text deltas of an answer. Sockets have
``TCP_NODELAY``: Nagle plus delayed ACKs would otherwise add tens of milliseconds per call.

Control endpoints (JSON): ``POST /_bench/config``, ``POST /_bench/reset``, ``GET /_bench/turns``,
``GET /_bench/requests/TOKEN``.

    python -m bench.standin --port 0      # prints {"port": N} once listening
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote

from bench.script import converse_body, plan, stream_frames
from tests.chat.bedrock_standin import EVENT_STREAM_CONTENT_TYPE

# Request bodies are kept for this many recent tokens (a 500-message history is ~200 kB).
KEPT_BODIES = 16


@dataclass
class Config:
    latency_ms: float = 0.0
    stream_ms: float = 0.0
    chunks: int = 8


@dataclass
class TurnRecord:
    calls: int = 0
    model_ms: float = 0.0
    messages: list[int] = field(default_factory=list)
    request_bytes: list[int] = field(default_factory=list)
    tool_ok: bool | None = None


# --- The server ---------------------------------------------------------------------------------


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _head(status: int, reason: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode("latin-1")


class StandIn:
    """The server; ``serve()`` in a loop of its own, or ``start_in_thread()`` for tests."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.turns: dict[str, TurnRecord] = {}
        self.bodies: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
        # A deep backlog: a thousand turns can open their connections at the same moment.
        self._server = await asyncio.start_server(self._connection, host, port, backlog=4096)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self._server

    def start_in_thread(self) -> StandIn:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self.serve())
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="bedrock-standin", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("The Bedrock stand-in did not start.")
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is not None and server is not None:

            async def close() -> None:
                server.close()
                # Open keep-alive connections would otherwise outlive their loop: closing them
                # ends their readers; a call still waiting out its latency is cancelled.
                for writer in list(self._writers):
                    writer.close()
                others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                if others:
                    _, pending = await asyncio.wait(others, timeout=1)
                    for task in pending:
                        task.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                loop.stop()

            asyncio.run_coroutine_threadsafe(close(), loop)
        if self._thread is not None:
            self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines if line)
                }
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                await self._respond(method, target, body, writer)
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass  # the client hung up (keep-alive connections end that way)
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _respond(
        self, method: str, target: str, body: bytes, writer: asyncio.StreamWriter
    ) -> None:
        path = target.split("?", 1)[0]
        if path.startswith("/_bench/"):
            status, payload = self._control(method, path, body)
            await self._send_json(writer, status, payload)
            return
        parts = path.split("/")
        # /model/<url-quoted model id>/converse-stream (or /converse)
        if method != "POST" or len(parts) != 4 or parts[1] != "model":
            await self._send_error(writer, 404, "UnknownOperationException", f"No route {path}")
            return
        started = time.perf_counter()
        try:
            request = json.loads(body)
            planned = plan(request)
        except (ValueError, AttributeError) as error:
            await self._send_error(writer, 400, "ValidationException", str(error))
            return
        self._keep(planned.token, unquote(parts[2]), parts[3], request)
        config = self.config
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        if parts[3] == "converse":
            data = json.dumps(converse_body(planned, body_bytes=len(body))).encode()
            headers = {"Content-Type": "application/json", "Content-Length": str(len(data))}
            parts_out = [_head(200, "OK", headers) + data]
        else:
            frames = stream_frames(planned, chunks=config.chunks, body_bytes=len(body))
            head = _head(
                200,
                "OK",
                {
                    "Content-Type": EVENT_STREAM_CONTENT_TYPE,
                    "Transfer-Encoding": "chunked",
                    "x-amzn-RequestId": str(uuid.uuid4()),
                },
            )
            chunks = [_chunk(frame) for frame in frames]
            if config.stream_ms and len(chunks) > 1:
                parts_out = [head + chunks[0], *chunks[1:-1], chunks[-1] + b"0\r\n\r\n"]
            else:
                parts_out = [head + b"".join(chunks) + b"0\r\n\r\n"]
        gap = config.stream_ms / 1000 / (len(parts_out) - 1) if len(parts_out) > 1 else 0.0
        for part in parts_out[:-1]:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(gap)
        # Recorded before the last bytes go out, so whoever reads the record after the
        # response finds the call in it.
        record = self.turns.setdefault(planned.token, TurnRecord())
        record.calls += 1
        record.model_ms += (time.perf_counter() - started) * 1000
        record.messages.append(len(request.get("messages") or []))
        record.request_bytes.append(len(body))
        if planned.tool_ok is not None:
            record.tool_ok = planned.tool_ok
        writer.write(parts_out[-1])
        await writer.drain()

    def _keep(self, token: str, model_id: str, operation: str, request: dict[str, Any]) -> None:
        calls = self.bodies.setdefault(token, [])
        calls.append({"model_id": model_id, "operation": operation, "body": request})
        self.bodies.move_to_end(token)
        while len(self.bodies) > KEPT_BODIES:
            self.bodies.popitem(last=False)

    def _control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if method == "POST" and path == "/_bench/config":
            changes = json.loads(body or b"{}")
            unknown = set(changes) - set(asdict(self.config))
            if unknown:
                return 400, {"message": f"Unknown settings: {sorted(unknown)}"}
            self.config = Config(**{**asdict(self.config), **changes})
            return 200, asdict(self.config)
        if method == "POST" and path == "/_bench/reset":
            self.turns.clear()
            return 200, {}
        if method == "GET" and path == "/_bench/turns":
            return 200, {token: asdict(record) for token, record in self.turns.items()}
        if method == "GET" and path.startswith("/_bench/requests/"):
            token = path.rsplit("/", 1)[1]
            return 200, {"requests": self.bodies.get(token, [])}
        return 404, {"message": f"No route {path}"}

    async def _send_json(self, writer: asyncio.StreamWriter, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data))}
        writer.write(_head(status, "OK" if status == 200 else "Error", headers) + data)
        await writer.drain()

    async def _send_error(
        self, writer: asyncio.StreamWriter, status: int, error_type: str, message: str
    ) -> None:
        data = json.dumps({"message": message}).encode()
        headers = {
            "Content-Type": "application/json",
            "Content-Length": str(len(data)),
            "x-amzn-ErrorType": error_type,
        }
        writer.write(_head(status, "Error", headers) + data)
        await writer.drain()


async def _main(args: argparse.Namespace) -> None:
    standin = StandIn(Config(args.latency_ms, args.stream_ms, args.chunks))
    server = await standin.serve(port=args.port)
    print(json.dumps({"port": standin.port}), flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--stream-ms", type=float, default=0.0)
    parser.add_argument("--chunks", type=int, default=8)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
