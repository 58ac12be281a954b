"""The processes a benchmark run owns: a throwaway PostgreSQL and Redis, the stand-in, daphne.

Each ``start_*`` registers its own shutdown on the ``ExitStack`` it is given, so an error or
Ctrl-C anywhere stops every process and removes every directory. Children run in their own
sessions: a Ctrl-C reaches the benchmark only, which then stops them in order.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
import redis

ROOT = Path(__file__).resolve().parents[1]


class StackError(RuntimeError):
    """A process of the stack could not be started; the message says what to do."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int, *, thread: int | None = None) -> float:
    """User plus system CPU time of a process and all its threads, from /proc; with ``thread``,
    of that thread only (the main thread's id is the process id)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(path) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of stat(5)); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """The most resident memory a process has used so far (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _stop(process: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_for(
    what: str, check: Callable[[], bool], process: subprocess.Popen[Any], log: Path
) -> None:
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(Exception):
            if check():
                return
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise StackError(f"{what} did not start (see {log}):\n{tail}")
        time.sleep(0.1)


def _log(path: Path) -> IO[bytes]:
    return open(path, "ab")


# --- PostgreSQL ---------------------------------------------------------------------------------


def _pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if found:
        return Path(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise StackError(
        "PostgreSQL is not installed: apt-get install postgresql (or run make test once)."
    )


@dataclass
class Postgres:
    port: int
    process: subprocess.Popen[bytes]

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(database), autocommit=True)


def start_postgres(
    stack: contextlib.ExitStack, workdir: Path, *, database: str, max_connections: int
) -> Postgres:
    """A trust-auth cluster with ``pg_stat_statements`` counting every statement, nested ones
    (deferred foreign-key checks) and utility ones (BEGIN, COMMIT, SAVEPOINT) included."""
    bindir = _pg_bindir()
    pgdir = workdir / "pg"
    pgdir.mkdir()
    # initdb refuses to run as root; the cluster then belongs to the postgres user.
    as_user: dict[str, Any] = {}
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(pgdir, account.pw_uid, account.pw_gid)
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    log = workdir / "postgres.log"
    with _log(log) as out:
        subprocess.run(
            [bindir / "initdb", "--no-sync", "-A", "trust", "-U", "postgres", "-D", pgdir / "data"],
            check=True,
            stdout=out,
            stderr=out,
            **as_user,
        )
    port = free_port()
    settings = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(pgdir),
        "fsync": "off",
        "max_connections": str(max_connections),
        "shared_preload_libraries": "pg_stat_statements",
        "pg_stat_statements.track": "all",
        "pg_stat_statements.track_utility": "on",
        "pg_stat_statements.max": "10000",
    }
    command = [str(bindir / "postgres"), "-D", str(pgdir / "data"), "-p", str(port)]
    for name, value in settings.items():
        command += ["-c", f"{name}={value}"]
    with _log(log) as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=out, start_new_session=True, **as_user
        )
    # SIGQUIT is PostgreSQL's immediate shutdown: nothing here is worth a checkpoint.
    stack.callback(_stop, process, signal.SIGQUIT)
    postgres = Postgres(port, process)

    def ready() -> bool:
        with postgres.connect():
            return True

    _wait_for("PostgreSQL", ready, process, log)
    with postgres.connect() as connection:
        connection.execute("CREATE EXTENSION pg_stat_statements")
        connection.execute(f'CREATE DATABASE "{database}"')
    return postgres


# --- Redis --------------------------------------------------------------------------------------


def start_redis(stack: contextlib.ExitStack, workdir: Path) -> str:
    """A Redis without persistence; returns its URL."""
    server = shutil.which("redis-server")
    if server is None:
        raise StackError("Redis is not installed: apt-get install redis-server.")
    port = free_port()
    log = workdir / "redis.log"
    with _log(log) as out:
        process = subprocess.Popen(
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=workdir,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    stack.callback(_stop, process)
    _wait_for("Redis", lambda: bool(redis.Redis(port=port).ping()), process, log)
    return f"redis://127.0.0.1:{port}/0"


# --- The Bedrock stand-in -----------------------------------------------------------------------


@dataclass
class StandInProcess:
    url: str
    process: subprocess.Popen[bytes]

    def control(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.url}/_bench/{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def start_standin(stack: contextlib.ExitStack, workdir: Path) -> StandInProcess:
    """The stand-in in a process of its own, so its CPU is not the server's or the clients'."""
    log = workdir / "standin.log"
    with _log(log) as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.standin", "--port", "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
    stack.callback(_stop, process)
    assert process.stdout is not None
    line = process.stdout.readline()
    try:
        port = json.loads(line)["port"]
    except (ValueError, KeyError):
        raise StackError(f"The Bedrock stand-in did not start (see {log}).") from None
    return StandInProcess(f"http://127.0.0.1:{port}", process)


# --- The app ------------------------------------------------------------------------------------


def manage(env: dict[str, str], *args: str, log: Path) -> None:
    """Runs a ``manage.py`` command as an operator would, with the server's environment."""
    with _log(log) as out:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise StackError(f"manage.py {' '.join(args)} failed (see {log}):\n{tail}")


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    steps_file: Path | None = None  # run under bench.steps: where it writes its counts

    @property
    def pid(self) -> int:
        return self.process.pid


def start_daphne(
    env: dict[str, str],
    log: Path,
    *,
    port: int,
    application: str = "anycompany.asgi:application",
    steps: bool = False,
) -> Server:
    """One daphne process serving the project (or ``application``) as the container image does;
    with ``steps``, under ``bench.steps`` (which writes to ``env["BENCH_STEPS_FILE"]``).
    The caller stops it with ``stop_daphne`` (each run gets a fresh server)."""
    command = [
        sys.executable,
        "-m",
        "bench.steps" if steps else "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "--proxy-headers",
        application,
    ]
    with _log(log) as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    server = Server(port, process, log, Path(env["BENCH_STEPS_FILE"]) if steps else None)

    def healthy() -> bool:
        url = f"http://127.0.0.1:{port}/healthz"
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)

    try:
        _wait_for("daphne", healthy, process, log)
    except BaseException:
        _stop(process)
        raise
    return server


def stop_daphne(server: Server) -> None:
    _stop(server.process)
