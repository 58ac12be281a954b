"""End-to-end turn benchmark: the real server, driven and measured as an operator would.

One daphne process (``DEBUG=false``, production settings) on a throwaway PostgreSQL (with
``pg_stat_statements``) and Redis, ``CHAT_MODEL=bedrock`` pointed at a local Bedrock stand-in
over HTTP; customers signed in through the sign-in form, conversations started with the page's
form, turns sent over the page's websocket protocol. Every run restarts the server and measures
its own floor: the same model calls made directly with boto3 against the same stand-in.

    .venv/bin/python bench/e2e.py                # 3 runs of every row (about 15 minutes)
    .venv/bin/python bench/e2e.py --quick        # a smoke run (well under a minute)
    .venv/bin/python bench/e2e.py --rows 4 --runs 1 --json > thousand.json
    .venv/bin/python bench/e2e.py --profile profile.txt --rows 1 --runs 1
    .venv/bin/python bench/e2e.py --steps --rows 1 --runs 1   # server CPU per step of a turn

See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import platform
import secrets
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from itertools import cycle
from pathlib import Path
from typing import Any

# Run as a script: the repository root must be importable (bench/'s own module names are chosen
# not to shadow any other module, as this directory comes first on the path).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.exceptions import ConnectionClosed

from bench import phases
from bench.client import ClientError
from bench.floor import bedrock_client
from bench.operations import (
    create_logins,
    demo_customers,
    git_revision,
    keep_logs,
    load,
    log_problems,
    progress,
    raise_file_limit,
    run_reported,
    server_env,
    sign_in,
)
from bench.phases import BenchError, Customer, Run
from bench.report import render, summarize
from bench.stack import (
    Server,
    StackError,
    free_port,
    manage,
    start_daphne,
    start_postgres,
    start_redis,
    start_standin,
    stop_daphne,
)

DATABASE = "bench"
FULL = {
    "runs": 3, "turns": 100, "clients": 32, "turns_per_client": 4, "conversations": 1000,
    "model_ms": 1000.0, "history": 500, "history_turns": 10, "floor_repeats": 50,
    "customers": 10, "timeout": 300.0,
}  # fmt: skip
QUICK = {
    "runs": 1, "turns": 10, "clients": 4, "turns_per_client": 3, "conversations": 50,
    "model_ms": 500.0, "history": 40, "history_turns": 3, "floor_repeats": 10,
    "customers": 1, "timeout": 60.0,
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="a smoke run: 1 run, small counts")
    add("--rows", default="1,2,3,4,5", help="which rows of the table to measure (default all)")
    add("--runs", type=int, help="runs per row (3)")
    add("--turns", type=int, help="sequential turns per run, rows 1-3 (100)")
    add("--clients", type=int, help="concurrent customers for turns/s, row 3 (32)")
    add("--turns-per-client", type=int, help="turns each of them sends, row 3 (4)")
    add("--conversations", type=int, help="simultaneous conversations, row 4 (1000)")
    add("--model-ms", type=float, help="time per model call in row 4 (1000)")
    add("--stream-ms", type=float, default=200.0, help="of which streaming the reply (200)")
    add("--chunks", type=int, default=8, help="text deltas per streamed answer (8)")
    add("--latency-ms", type=float, default=0.0, help="model latency in rows 1-3 and 5 (0)")
    add("--history", type=int, help="long history, row 5 (500 messages)")
    add("--short-history", type=int, default=10, help="short history, row 5 (10 messages)")
    add("--history-turns", type=int, help="measured turns per history length, row 5 (10)")
    add("--floor-repeats", type=int, help="replays of a turn's model calls for the floor (50)")
    add("--customers", type=int, help="customers signed in (10); conversations are spread")
    add("--timeout", type=float, help="seconds before a turn counts as lost (300)")
    add("--turn-workers", type=int, help="CHAT_MAX_CONCURRENT_TURNS (default: the app's)")
    add("--db-pool", type=int, help="DATABASE_POOL_SIZE (default: the app's; 0: no pool)")
    add("--pg-max-connections", type=int, default=300,
        help="PostgreSQL max_connections (300, as scripts/with-services)")  # fmt: skip
    add("--profile", nargs="?", const="", metavar="FILE", help="profile sequential turns with "
        "py-spy; FILE keeps the collapsed stacks (speedscope reads them)")  # fmt: skip
    add("--steps", action="store_true", help="run the server under bench.steps: CPU per step "
        "of the sequential turns and of row 4's (the wrappers cost ~1 µs a call)")  # fmt: skip
    add("--servers", type=int, default=1, help="daphne processes sharing the customers (1, as "
        "the table asks); CPU rows add theirs up; --steps, --profile see the first")  # fmt: skip
    add("--json", action="store_true", help="print the results as JSON on stdout")
    add("--logs", metavar="DIR", help="keep the server, PostgreSQL, Redis and stand-in logs here")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    rows = {row.strip() for row in args.rows.split(",") if row.strip()}
    if not rows <= {"1", "2", "3", "4", "5"}:
        parser.error("--rows takes numbers 1 to 5, e.g. --rows 1,2,3")
    args.rows = rows
    if args.servers < 1:
        parser.error("--servers takes 1 or more")
    if args.history % 2 or args.short_history % 2:
        parser.error("--history and --short-history must be even (turns store 2 or 4 messages)")
    if args.history - 2 * (args.history_turns - 1) < args.short_history:
        parser.error(
            "--history is too short for --history-turns: the measured turns are centred on it, "
            f"so it must be at least {args.short_history + 2 * (args.history_turns - 1)}"
        )
    return args


# --- Setup and runs -----------------------------------------------------------------------------


def _start_server(env: dict[str, str], workdir: Path, name: str, *, steps: bool = False) -> Server:
    port = free_port()
    return start_daphne(
        {
            **env,
            "CSRF_TRUSTED_ORIGINS": f"http://127.0.0.1:{port}",
            "BENCH_STEPS_FILE": str(workdir / f"{name}-steps.json"),
        },
        workdir / f"{name}.log",
        port=port,
        steps=steps,
    )


def _repoint(customers: list[Customer], ports: list[int]) -> None:
    # Sessions live in the database, so they outlast a server restart and work on every server.
    for customer, port in zip(customers, cycle(ports), strict=False):
        assert customer.browser is not None
        customer.browser.port = port


async def setup(
    args: argparse.Namespace, env: dict[str, str], workdir: Path, customers: list[Customer]
) -> list[tuple[Customer, str]]:
    """Signs the customers in and grows one long conversation per run (row 5) with real turns."""
    password = secrets.token_urlsafe(18)
    progress(f"creating {len(customers)} customer logins (manage.py create_customer_login)")
    await asyncio.to_thread(create_logins, env, customers, password, workdir)
    server = _start_server(env, workdir, "server-setup")
    try:
        progress(f"signing in {len(customers)} customers through the sign-in form")
        await sign_in(customers, server.port, password)
        if "5" not in args.rows:
            return []
        # Centred: the measured turns see the target length on average.
        start = args.history - 2 * (args.history_turns - 1)
        progress(f"growing {args.runs} conversation(s) to {start} messages with real turns")
        long_ones = await phases.start_conversations(
            [customers[i % len(customers)] for i in range(args.runs)], args.runs
        )
        chats = await phases.open_chats(long_ones)
        await asyncio.gather(*(chat.seed(start, timeout=args.timeout) for chat in chats))
        await phases.close_chats(chats)
        return long_ones
    finally:
        stop_daphne(server)


async def one_run(
    number: int,
    args: argparse.Namespace,
    env: dict[str, str],
    workdir: Path,
    shared: dict[str, Any],
    long_conversation: tuple[Customer, str] | None,
) -> dict[str, Any]:
    result: dict[str, Any] = {"load_before": load()}
    server = _start_server(env, workdir, f"server-run{number}", steps=args.steps)
    others: list[Server] = []
    try:
        for n in range(1, args.servers):
            others.append(_start_server(env, workdir, f"server-run{number}-{n}"))
        _repoint(shared["customers"], [s.port for s in (server, *others)])
        run = Run(
            server=server,
            standin=shared["standin"],
            pg=shared["pg"],
            dbid=shared["dbid"],
            customers=shared["customers"],
            bedrock=shared["bedrock"],
            timeout=args.timeout,
            others=others,
        )
        run.standin.control(
            "POST",
            "config",
            {"latency_ms": args.latency_ms, "stream_ms": 0.0, "chunks": args.chunks},
        )
        progress(f"run {number}: warm-up and floor")
        result.update(await phases.warm_up_and_floor(run, repeats=args.floor_repeats))
        floor = result["floor_ms"]
        steps: list[tuple[str, str, Callable[[], Awaitable[Any]]]] = []
        if args.rows & {"1", "2", "3"}:
            steps.append(
                (
                    "sequential",
                    f"{args.turns} sequential turns",
                    lambda: phases.sequential(run, turns=args.turns, floor=floor),
                )
            )
        if "3" in args.rows:
            steps.append(
                (
                    "concurrent",
                    f"{args.clients * args.turns_per_client} turns from {args.clients} "
                    "concurrent customers",
                    lambda: phases.concurrent(
                        run, clients=args.clients, turns_per_client=args.turns_per_client
                    ),
                )
            )
        if "5" in args.rows and long_conversation is not None:
            steps.append(
                (
                    "history",
                    f"turns at {args.short_history} and {args.history} messages",
                    lambda: phases.history(
                        run,
                        turns=args.history_turns,
                        short=args.short_history,
                        long_conversation=long_conversation,
                        repeats=max(5, args.floor_repeats // 2),
                    ),
                )
            )
        if args.profile is not None and number == 0:
            out = Path(args.profile) if args.profile else workdir / "profile.txt"

            async def profile() -> dict[str, Any]:
                return (await phases.profile(run, turns=args.turns, out=out)).as_dict()

            steps.append(("profile", f"profiling {args.turns} sequential turns", profile))
        if "4" in args.rows:
            steps.append(
                (
                    "simultaneous",
                    f"{args.conversations} simultaneous conversations",
                    lambda: phases.simultaneous(
                        run,
                        conversations=args.conversations,
                        model_ms=args.model_ms,
                        stream_ms=min(args.stream_ms, args.model_ms),
                    ),
                )
            )
        for key, what, step in steps:
            progress(f"run {number}: {what}")
            try:
                result[key] = await step()
            except (BenchError, ClientError, ConnectionClosed, OSError, TimeoutError) as error:
                # The server broke under this row: say so in the report, measure the rest.
                progress(f"run {number}: {key} failed: {str(error)[:300]}")
                result[key] = {"error": str(error)[:2000]}
    finally:
        for each in (server, *others):
            stop_daphne(each)
    result["load_after"] = load()
    result["server_log"] = log_problems(server.log)
    for other in others:
        # One report for all of them: counts added up, the commonest messages of each.
        for key, value in log_problems(other.log).items():
            result["server_log"][key] += value
    return result


async def measure(args: argparse.Namespace, stack: contextlib.ExitStack) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    stack.callback(shutil.rmtree, workdir, True)
    if args.logs:
        # Registered after the removal, so it runs first: the logs are copied, then deleted.
        stack.callback(keep_logs, workdir, Path(args.logs))
    # PostgreSQL runs as its own user below it; nothing secret is kept here.
    os.chmod(workdir, 0o755)  # noqa: S103
    progress(f"starting PostgreSQL, Redis and the Bedrock stand-in (load {load()})")
    postgres = start_postgres(
        stack, workdir, database=DATABASE, max_connections=args.pg_max_connections
    )
    redis_url = start_redis(stack, workdir)
    standin = start_standin(stack, workdir)
    env = server_env(
        database_url=postgres.url(DATABASE),
        redis_url=redis_url,
        standin_url=standin.url,
        args=args,
    )
    progress("migrate, demo data, collectstatic (manage.py, as a deploy does)")
    for command in (
        ("migrate", "--no-input"),
        ("loaddata", "customers", "orders"),
        ("collectstatic", "--no-input"),
    ):
        await asyncio.to_thread(manage, env, *command, log=workdir / "setup.log")
    customers = demo_customers(args.customers)
    long_ones = await setup(args, env, workdir, customers)
    pg = postgres.connect()
    stack.callback(pg.close)
    shared = {
        "standin": standin,
        "pg": pg,
        "dbid": phases.pgstats.database_oid(pg, DATABASE),
        "customers": customers,
        "bedrock": bedrock_client(standin.url),
    }
    runs = []
    for number in range(args.runs):
        long_conversation = long_ones[number] if number < len(long_ones) else None
        runs.append(await one_run(number, args, env, workdir, shared, long_conversation))
    version = pg.execute("SHOW server_version").fetchone()
    return {
        "date": datetime.date.today().isoformat(),
        "revision": git_revision(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "postgresql": version[0] if version else "?",
        },
        "settings": {
            key: value
            for key, value in vars(args).items()
            if key not in {"json", "quick", "logs", "rows"}
        }
        | {
            "rows": sorted(args.rows),
            "CHAT_MAX_CONCURRENT_TURNS": args.turn_workers or "default",
            "DATABASE_POOL_SIZE": "default" if args.db_pool is None else args.db_pool,
        },
        "runs": runs,
        "summary": summarize(runs),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_file_limit(2 * args.conversations + 512)
    return run_reported(
        lambda stack: measure(args, stack),
        render=render,
        as_json=args.json,
        errors=(BenchError, StackError, ClientError),
        hint="" if args.logs else " (--logs DIR keeps the logs)",
    )


if __name__ == "__main__":
    sys.exit(main())
