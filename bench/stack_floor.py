"""The stack's own floor per turn: daphne and Channels doing a turn's skeleton and nothing else.

One daphne process (``DEBUG=False``) serves ``bench/skeleton_app.py``, a Channels consumer with
the production websocket middleware, channels-redis on a throwaway Redis and Django's sessions
on a throwaway PostgreSQL. Real websocket clients send it frames; for each one it makes worker
thread hops, group sends and frames back as the row says (nothing of the app runs). Reported per
row: the server process's CPU per exchange (utime + stime from /proc over the exchanges, as
``bench/e2e.py`` measures CPU per turn), one at a time and from concurrent clients, and
exchanges/s; the median of the runs with the min-max spread. Each run starts a fresh server.

    .venv/bin/python bench/stack_floor.py            # 3 runs of every row (about a minute)
    .venv/bin/python bench/stack_floor.py --quick    # one small run
    .venv/bin/python bench/stack_floor.py --json
    .venv/bin/python bench/stack_floor.py --profile profile.txt   # where the floor's CPU goes

See bench/README.md ("The stack's floor") for what the rows mean.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

# Run as a script: the repository root must be importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from bench import profiling
from bench.operations import git_revision, load, progress, run_reported
from bench.stack import (
    ROOT,
    Server,
    StackError,
    cpu_seconds,
    free_port,
    start_daphne,
    start_postgres,
    start_redis,
    stop_daphne,
)

APPLICATION = "bench.skeleton_app:application"


@dataclass(frozen=True)
class Shape:
    """What the server does per frame it receives (``bench/skeleton_app.py``)."""

    name: str
    hops: int = 0
    sends: int = 0
    frames: int = 1
    bursts: int = 0
    session: bool = False
    member: bool = False
    cleanup: bool = True

    def query(self) -> str:
        flags = {
            "hops": self.hops,
            "sends": self.sends,
            "frames": self.frames,
            "bursts": self.bursts,
            "session": int(self.session),
            "member": int(self.member),
            "cleanup": int(self.cleanup),
        }
        return urlencode(flags)


# Cumulative, as a one-tool turn adds them up today: the session check and the turn each go to a
# worker thread, one layer message per turn (a fast turn's events share one; with one tab open
# the app's layer writes it to nobody), about seven frames to the page, which the turn's events
# reach while it runs, in about four wake-ups of the event loop.
TURN = Shape(
    "+ session and user read on a hop: our turn's shape",
    hops=2,
    sends=1,
    frames=7,
    bursts=4,
    session=True,
)
ROWS = [
    Shape("bare echo without Channels' per-message cleanup hop", cleanup=False),
    Shape("bare echo: 1 frame in, 1 frame out"),
    Shape("+ 2 worker-thread hops", hops=2),
    Shape("+ 1 group_send (no other member)", hops=2, sends=1),
    Shape("+ 6 frames (7 out)", hops=2, sends=1, frames=7),
    Shape("+ the frames from the worker thread in 4 wake-ups", hops=2, sends=1, frames=7, bursts=4),
    TURN,
    replace(TURN, name="our turn's shape with 1 frame out", frames=1, bursts=1),
    replace(TURN, name="our turn's shape, its group_send to another tab", member=True),
    # What is left when the stack's own costs above are avoided: the two hops, one frame.
    Shape(
        "a lean shape: 2 hops, 1 frame from the worker thread, no group_send, no cleanup hop",
        hops=2,
        frames=1,
        bursts=1,
        cleanup=False,
    ),
]
FULL = {"runs": 3, "seconds": 0.6}
QUICK = {"runs": 1, "seconds": 0.2}
TEXT = "what is the status of my order 24601?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="one small run: does it work")
    add("--runs", type=int, help="runs, each on a fresh server (3)")
    add("--seconds", type=float, help="how long each row's two phases each run (0.6)")
    add("--clients", type=int, default=16, help="concurrent clients per row (16)")
    add("--profile", nargs="?", const="", metavar="FILE", help="also profile our turn's shape "
        "with py-spy in the first run; FILE keeps the collapsed stacks")  # fmt: skip
    add("--json", action="store_true", help="print the results as JSON on stdout")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


# --- The client side ----------------------------------------------------------------------------


@dataclass
class Target:
    port: int
    session_key: str

    async def open(self, shape: Shape, where: str = "floor") -> ClientConnection:
        origin = f"http://127.0.0.1:{self.port}"
        return await connect(
            f"ws://127.0.0.1:{self.port}/ws/{where}/?{shape.query()}",
            origin=Origin(origin),
            additional_headers={"Cookie": f"sessionid={self.session_key}"},
            ping_interval=None,
        )


async def exchange(socket: ClientConnection, number: int) -> float:
    """One frame in, every frame of its answer out; seconds until the last one."""
    started = time.perf_counter()
    await socket.send(json.dumps({"type": "send", "n": number, "text": TEXT}))
    while True:
        frame = json.loads(await socket.recv())
        if frame.get("type") != "event" or frame.get("n") != number:
            raise StackError(f"Unexpected frame {frame!r}.")
        if frame["last"]:
            return time.perf_counter() - started


async def settled_cpu(server: Server) -> float:
    # Group messages delivered back arrive after the frames: let the server finish with them.
    await asyncio.sleep(0.1)
    return cpu_seconds(server.pid)


async def exchanges_for(socket: ClientConnection, seconds: float) -> list[float]:
    """Exchanges back to back until ``seconds`` have passed (so every row uses about as much
    time, and enough CPU ticks to measure); the time of each."""
    deadline = time.perf_counter() + seconds
    times: list[float] = []
    while time.perf_counter() < deadline:
        times.append(await exchange(socket, len(times)))
    return times


async def sequential(
    server: Server, target: Target, shape: Shape, seconds: float
) -> dict[str, Any]:
    socket = await target.open(shape)
    try:
        await exchanges_for(socket, 0.1)  # warm-up: imports, pools, the first connections
        before = await settled_cpu(server)
        started = time.perf_counter()
        times = await exchanges_for(socket, seconds)
        wall = time.perf_counter() - started
        cpu = await settled_cpu(server) - before
    finally:
        await socket.close()
    return {
        "exchanges": len(times),
        "cpu_ms": cpu * 1000 / len(times),
        "per_s": len(times) / wall,
        "latency_ms_p50": statistics.median(times) * 1000,
    }


async def concurrent(
    server: Server, target: Target, shape: Shape, clients: int, seconds: float
) -> dict[str, Any]:
    sockets = [await target.open(shape) for _ in range(clients)]
    try:
        await asyncio.gather(*(exchange(socket, -1) for socket in sockets))
        before, own_before = await settled_cpu(server), os.times()
        started = time.perf_counter()
        done = await asyncio.gather(*(exchanges_for(socket, seconds) for socket in sockets))
        wall = time.perf_counter() - started
        own_after = os.times()
        cpu = await settled_cpu(server) - before
    finally:
        await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)
    own = own_after.user + own_after.system - own_before.user - own_before.system
    count = sum(map(len, done))
    return {
        "exchanges": count,
        "cpu_ms": cpu * 1000 / count,
        "per_s": count / wall,
        "server_cores_busy": cpu / wall,
        "client_cores_busy": own / wall,
    }


async def handshakes(server: Server, target: Target, where: str, seconds: float) -> float:
    """Server CPU per socket opened, one exchange and closed, on ``where``'s middleware."""
    shape = Shape("handshake")
    before = await settled_cpu(server)
    deadline, count = time.perf_counter() + seconds, 0
    while time.perf_counter() < deadline:
        socket = await target.open(shape, where)
        await exchange(socket, count)
        await socket.close()
        count += 1
    return (await settled_cpu(server) - before) * 1000 / count


# --- Runs ---------------------------------------------------------------------------------------


async def one_run(
    number: int, args: argparse.Namespace, env: dict[str, str], workdir: Path, session_key: str
) -> dict[str, Any]:
    port = free_port()
    server = start_daphne(
        env, workdir / f"server-run{number}.log", port=port, application=APPLICATION
    )
    target = Target(port, session_key)
    result: dict[str, Any] = {"load_before": load(), "rows": {}}
    try:
        for shape in ROWS:
            progress(f"run {number}: {shape.name}")
            result["rows"][shape.name] = {
                "sequential": await sequential(server, target, shape, args.seconds),
                "concurrent": await concurrent(server, target, shape, args.clients, args.seconds),
            }
        progress(f"run {number}: sockets opened with and without the middleware")
        result["handshake_ms"] = {
            where: await handshakes(server, target, where, args.seconds)
            for where in ("bare", "floor")
        }
        if args.profile is not None and number == 0:
            progress(f"run {number}: profiling our turn's shape")
            out = Path(args.profile) if args.profile else workdir / "profile.txt"
            with profiling.Recording(server.pid, out):
                await sequential(server, target, TURN, 3 * args.seconds)
            result["profile"] = profiling.summarize(out).as_dict()
    except (OSError, TimeoutError, ConnectionClosed, StackError) as error:
        # The log goes with the temporary directory; its end usually says why.
        tail = server.log.read_text(errors="replace")[-3000:]
        raise StackError(f"run {number}: {error!r}; the server log ends with:\n{tail}") from None
    finally:
        stop_daphne(server)
    result["load_after"] = load()
    return result


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = {}
    for shape in ROWS:
        measured = [run["rows"][shape.name] for run in runs]
        rows[shape.name] = {
            phase: {key: _spread([m[phase][key] for m in measured]) for key in measured[0][phase]}
            for phase in ("sequential", "concurrent")
        }
    handshake = {
        where: _spread([run["handshake_ms"][where] for run in runs]) for where in ("bare", "floor")
    }
    return {"rows": rows, "handshake_ms": handshake}


def _cell(spread: dict[str, float], digits: int = 2) -> str:
    return f"{spread['median']:.{digits}f} ({spread['min']:.{digits}f}–{spread['max']:.{digits}f})"


def render(report: dict[str, Any]) -> str:
    summary = report["summary"]
    lines = [
        f"The stack's floor, {report['date']}, {report['revision']}, {len(report['runs'])} run(s); "
        f"load {', '.join(run['load_before'] for run in report['runs'])}",
        "",
        "| per exchange | sequential: server CPU ms | p50 ms | concurrent: server CPU ms "
        "| exchanges/s | server cores busy |",
        "|---|---|---|---|---|---|",
    ]
    for shape in ROWS:
        seq, con = (
            summary["rows"][shape.name]["sequential"],
            summary["rows"][shape.name]["concurrent"],
        )
        lines.append(
            f"| {shape.name} | {_cell(seq['cpu_ms'])} | {_cell(seq['latency_ms_p50'])} "
            f"| {_cell(con['cpu_ms'])} | {_cell(con['per_s'], 0)} "
            f"| {_cell(con['server_cores_busy'])} |"
        )
    handshake = summary["handshake_ms"]
    lines += [
        "",
        "Server CPU per socket (open, one exchange, close): "
        f"no middleware {_cell(handshake['bare'])} ms, with the Origin check and "
        f"AuthMiddlewareStack {_cell(handshake['floor'])} ms.",
    ]
    profile = report["runs"][0].get("profile")
    if profile is not None:
        lines += [
            "",
            f"Our turn's shape, {profile['samples']} samples holding the GIL, by library:",
        ]
        lines += [f"  {v:5.1f} %  {k}" for k, v in profile["by_library_percent"].items()]
        lines += ["Top functions by self samples:"]
        lines += [f"  {v:5.1f} %  {k}" for k, v in profile["top_self_percent"].items()]
    return "\n".join(lines)


def prepare(env: dict[str, str], log: Path) -> str:
    """Tables, a user and its session (one Python start-up); the session key."""
    with open(log, "ab") as err:
        done = subprocess.run(
            [sys.executable, "-c", "from bench import skeleton_app; skeleton_app.prepare()"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    if done.returncode != 0:
        raise StackError(f"Preparing the database failed:\n{log.read_text()[-2000:]}")
    return done.stdout.decode().strip().splitlines()[-1]


async def measure(args: argparse.Namespace, stack: contextlib.ExitStack) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    stack.callback(shutil.rmtree, workdir, True)
    # PostgreSQL runs as its own user below it; nothing secret is kept here.
    os.chmod(workdir, 0o755)  # noqa: S103
    progress(f"starting PostgreSQL and Redis (load {load()})")
    postgres = start_postgres(stack, workdir, database="floor", max_connections=100)
    redis_url = start_redis(stack, workdir)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_", "REDIS_", "FLOOR_", "SECRET_KEY"))
    } | {
        "SECRET_KEY": secrets.token_urlsafe(40),
        "FLOOR_PG_PORT": str(postgres.port),
        "FLOOR_REDIS_URL": redis_url,
        "PYTHONUNBUFFERED": "1",
    }
    session_key = await asyncio.to_thread(prepare, env, workdir / "setup.log")
    runs = [await one_run(n, args, env, workdir, session_key) for n in range(args.runs)]
    return {
        "date": datetime.date.today().isoformat(),
        "revision": git_revision(),
        "settings": {key: value for key, value in vars(args).items() if key != "json"},
        "rows": [asdict(shape) for shape in ROWS],
        "runs": runs,
        "summary": summarize(runs),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_reported(
        lambda stack: measure(args, stack), render=render, as_json=args.json, errors=(StackError,)
    )


if __name__ == "__main__":
    sys.exit(main())
