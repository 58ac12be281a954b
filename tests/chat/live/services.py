"""Throwaway PostgreSQL and Redis servers that a fault test may stop and start at will."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.chat.sockets import free_port


def _wait_for_port(port: int, *, up: bool, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not go {'up' if up else 'down'} in {within} s")


class ThrowawayRedis:
    """A ``redis-server`` without persistence on a free port: a restart starts it empty."""

    def __init__(self) -> None:
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, up=True)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None
        _wait_for_port(self.port, up=False)


@contextlib.contextmanager
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    redis = ThrowawayRedis()
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


class ThrowawayPostgres:
    """A trust-auth PostgreSQL cluster of its own (``initdb`` as the postgres user when root)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.data = directory / "data"
        self.socket_dir = directory / "socket"

    def _run(self, *command: str) -> None:
        if os.geteuid() == 0:
            command = ("su", "postgres", "-c", " ".join(f"'{part}'" for part in command))
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        # initdb refuses root, and the postgres user must reach the data directory.
        self.directory.chmod(0o755)
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
            shutil.chown(self.socket_dir, "postgres")
        self._run("initdb", "-A", "trust", "-U", "postgres", "-D", str(self.data))

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} -c fsync=off -c listen_addresses=127.0.0.1"
        log = str(self.directory / "log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-l", log, "start")
        _wait_for_port(self.port, up=True)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        _wait_for_port(self.port, up=False)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    with tempfile.TemporaryDirectory() as directory:
        cluster = ThrowawayPostgres(Path(directory))
        cluster.init()
        cluster.start()
        try:
            yield cluster
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                cluster.stop()
