"""Throwaway PostgreSQL and Redis servers that a fault test may stop and start at will."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tests.chat.sockets import free_port, wait_until_serving


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


class AppProcess:
    """The app under daphne in a child process on a fixed port, that a test may SIGKILL and start
    again (``tests.chat.sockets.app_server`` for one that just serves)."""

    def __init__(self, env: dict[str, str], log: IO[bytes]) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.chat.server_settings",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log = log

    def start(self) -> None:
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "anycompany.asgi:application"],
            cwd=Path(__file__).resolve().parents[3],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until_serving(self.port, self.process, self.output)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-5000:]

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as when a task is killed for memory."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


@contextlib.contextmanager
def app_process(env: dict[str, str]) -> Iterator[AppProcess]:
    with tempfile.TemporaryFile() as log:
        app = AppProcess(env, log)
        app.start()
        try:
            yield app
        finally:
            app.stop()


def bedrock_env(endpoint: str) -> dict[str, str]:
    """The app's settings for the real boto3 client against a local Bedrock stand-in."""
    return {
        "CHAT_MODEL": "bedrock",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "BEDROCK_MAX_ATTEMPTS": "1",
        "CHAT_RATE_LIMIT_PER_MINUTE": "1000",
        "CHAT_DAILY_TOKEN_BUDGET": "0",
    }
