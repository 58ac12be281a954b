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

See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.exceptions import ConnectionClosed

from bench import phases
from bench.client import Browser, ClientError
from bench.floor import bedrock_client
from bench.phases import BenchError, Customer, Run
from bench.stack import (
    ROOT,
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
# Variables of the app that must come from here, not from the shell that runs the benchmark.
_APP_PREFIXES = (
    "AWS_", "DB_", "DATABASE_", "REDIS_", "CHAT_", "BEDROCK_", "COGNITO_", "DJANGO_", "SECURE_",
    "SESSION_", "CSRF_", "CHANNEL_LAYER_", "CONVERSATION_", "DEMO_", "DEBUG", "SECRET_KEY",
    "ALLOWED_HOSTS", "LOG_LEVEL",
)  # fmt: skip

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


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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
    add("--pg-max-connections", type=int, default=300,
        help="PostgreSQL max_connections (300, as scripts/with-services)")  # fmt: skip
    add("--profile", nargs="?", const="", metavar="FILE", help="profile sequential turns with "
        "py-spy; FILE keeps the collapsed stacks (speedscope reads them)")  # fmt: skip
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
    if args.history % 2 or args.short_history % 2:
        parser.error("--history and --short-history must be even (turns store 2 or 4 messages)")
    if args.history - 2 * (args.history_turns - 1) < args.short_history:
        parser.error(
            "--history is too short for --history-turns: the measured turns are centred on it, "
            f"so it must be at least {args.short_history + 2 * (args.history_turns - 1)}"
        )
    return args


def raise_file_limit(needed: int) -> None:
    """A socket per conversation on both ends, plus the server's database and Redis ones."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, 4096)), hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        raise StackError(
            f"{needed} file descriptors are needed but the limit is {soft}: raise it "
            "(ulimit -n) or pass a smaller --conversations."
        )


def demo_customers(count: int) -> list[Customer]:
    """The first ``count`` demo customers, with their orders as the tool reports them."""
    fixtures = ROOT / "orders" / "fixtures"
    customers = json.loads((fixtures / "customers.json").read_text())
    orders = json.loads((fixtures / "orders.json").read_text())
    chosen = []
    for row in customers[:count]:
        theirs = [
            {"id": o["pk"], **{k: o["fields"][k] for k in ("product", "quantity", "status")}}
            for o in orders
            if o["fields"]["customer"] == row["pk"]
        ]
        if theirs:
            fields = row["fields"]
            chosen.append(Customer(fields["username"], fields["email"], theirs))
    return chosen


def server_env(*, database_url: str, redis_url: str, standin_url: str, args: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_APP_PREFIXES)}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "anycompany.settings",
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            # Plain HTTP on the loopback: TLS ends at the load balancer in production.
            "SECURE_SSL_REDIRECT": "false",
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            "SECURE_HSTS_SECONDS": "0",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CHAT_MODEL": "bedrock",
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": standin_url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            # Raised so the benchmark measures turns, not refusals; the budget query still runs.
            "CHAT_RATE_LIMIT_PER_MINUTE": "1000000",
            "CHAT_DAILY_TOKEN_BUDGET": str(10**15),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if args.turn_workers:
        env["CHAT_MAX_CONCURRENT_TURNS"] = str(args.turn_workers)
    return env


def log_problems(path: Path) -> dict[str, Any]:
    """Warnings, errors and tracebacks the server logged, with the commonest messages."""
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    errors = [line for line in lines if " ERROR " in line]
    warnings = [line for line in lines if " WARNING " in line]
    common = Counter(line.split(" ", 3)[-1][:150] for line in errors + warnings)
    return {
        "errors": len(errors),
        "warnings": len(warnings),
        # channels_redis drops a group message silently but for this INFO line.
        "layer_drops": sum("over capacity in group" in line for line in lines),
        "tracebacks": sum("Traceback (most recent call last)" in line for line in lines),
        "commonest": [f"{n}× {message}" for message, n in common.most_common(5)],
    }


def keep_logs(workdir: Path, destination: Path) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    for log in workdir.glob("*.log"):
        shutil.copy(log, destination / log.name)
    progress(f"logs kept in {destination}")


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' (uncommitted changes)' if dirty else ''}"


# --- Setup and runs -----------------------------------------------------------------------------


def create_logins(
    env: dict[str, str], customers: list[Customer], password: str, logs: Path
) -> None:
    """``create_customer_login`` for each customer, in one ``manage.py shell`` (one start-up)."""
    emails = [customer.email for customer in customers]
    script = (
        "from django.core.management import call_command\n"
        f"for email in {emails!r}:\n"
        "    call_command('create_customer_login', email)\n"
    )
    login_env = {**env, "CUSTOMER_LOGIN_PASSWORD": password}
    manage(login_env, "shell", "--no-imports", "-c", script, log=logs / "setup.log")


async def sign_in(customers: list[Customer], port: int, password: str) -> None:
    async def one(customer: Customer) -> None:
        browser = Browser("127.0.0.1", port)
        await asyncio.to_thread(browser.sign_in, customer.username, password)
        customer.browser = browser

    await asyncio.gather(*(one(customer) for customer in customers))


def _start_server(env: dict[str, str], workdir: Path, name: str) -> Any:
    port = free_port()
    return start_daphne(
        {**env, "CSRF_TRUSTED_ORIGINS": f"http://127.0.0.1:{port}"},
        workdir / f"{name}.log",
        port=port,
    )


def _repoint(customers: list[Customer], port: int) -> None:
    # Sessions live in the database, so they outlast a server restart.
    for customer in customers:
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
    server = _start_server(env, workdir, f"server-run{number}")
    try:
        _repoint(shared["customers"], server.port)
        run = Run(
            server=server,
            standin=shared["standin"],
            pg=shared["pg"],
            dbid=shared["dbid"],
            customers=shared["customers"],
            bedrock=shared["bedrock"],
            timeout=args.timeout,
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
        stop_daphne(server)
    result["load_after"] = load()
    result["server_log"] = log_problems(server.log)
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
        | {"rows": sorted(args.rows), "CHAT_MAX_CONCURRENT_TURNS": args.turn_workers or "default"},
        "runs": runs,
        "summary": summarize(runs),
    }


# --- Report -------------------------------------------------------------------------------------

# (key, label, path into a run's result)
MEASURES: list[tuple[str, str, tuple[str, ...]]] = [
    ("floor_p50_ms", "floor: the turn's 2 model calls via boto3, p50 (ms)", ("floor_ms", "p50")),
    ("turn_p50_ms", "1. turn as the client sees it, p50 (ms)", ("sequential", "turn_ms", "p50")),
    ("beyond_p50_ms", "1. server time beyond the model calls, p50 (ms)",
     ("sequential", "beyond_floor_ms", "p50")),
    ("beyond_p99_ms", "1. server time beyond the model calls, p99 (ms)",
     ("sequential", "beyond_floor_ms", "p99")),
    ("beyond_standin_p50_ms", "1.   beyond the stand-in's own time for those calls, p50 (ms)",
     ("sequential", "beyond_standin_ms", "p50")),
    ("statements", "2. SQL statements per one-tool turn", ("sequential", "sql", "statements")),
    ("round_trips", "2.   sent by the server (round trips)", ("sequential", "sql", "round_trips")),
    ("tx", "2.   BEGIN/COMMIT/SAVEPOINT/RELEASE", ("sequential", "sql", "transaction_control")),
    ("select_1", "2.   SELECT 1 health checks", ("sequential", "sql", "select_1")),
    ("fk", "2.   deferred FK checks", ("sequential", "sql", "fk_checks")),
    ("exec_ms", "2.   server-side execution (ms)", ("sequential", "sql", "server_exec_ms")),
    ("cpu_seq", "3. server CPU per turn, sequential (ms)", ("sequential", "cpu_ms_per_turn")),
    ("cpu_conc", "3. server CPU per turn, concurrent (ms)", ("concurrent", "cpu_ms_per_turn")),
    ("turns_per_s", "3. turns/s one process completes", ("concurrent", "turns_per_s")),
    ("server_cores", "3.   server cores busy meanwhile", ("concurrent", "server_cores_busy")),
    ("wall_over_ideal", "4. simultaneous conversations: wall ÷ ideal",
     ("simultaneous", "wall_over_ideal")),
    ("wall_s", "4.   wall time (s)", ("simultaneous", "wall_s")),
    ("lost", "4. lost turns", ("simultaneous", "lost")),
    ("failed", "4. failed turns (wrong or refused reply)", ("simultaneous", "failed")),
    ("short_ms", "5. beyond the floor at short history, p50 (ms)",
     ("history", "short", "beyond_floor_ms", "p50")),
    ("long_ms", "5. beyond the floor at long history, p50 (ms)",
     ("history", "long", "beyond_floor_ms", "p50")),
    ("history_ratio", "5. long ÷ short, time beyond the floor", ("history", "beyond_floor_ratio")),
    ("history_cpu_ratio", "5. long ÷ short, server CPU per turn", ("history", "cpu_ratio")),
]  # fmt: skip


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {}
    for key, label, path in MEASURES:
        values = [v for v in (_dig(run, path) for run in runs) if isinstance(v, int | float)]
        if values:
            summary[key] = {
                "label": label,
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "runs": values,
            }
    return summary


def render(report: dict[str, Any]) -> str:
    lines = [
        f"{report['date']}  revision {report['revision']}  {report['machine']}",
        f"settings: {report['settings']}",
        "",
        f"{'measure':<58} {'median':>9}  (min–max of {len(report['runs'])} runs)",
    ]
    for entry in report["summary"].values():
        lines.append(
            f"{entry['label']:<58} {entry['median']:>9.2f}  ({entry['min']:.2f}–{entry['max']:.2f})"
        )
    for number, run in enumerate(report["runs"]):
        lines.append(
            f"run {number}: load {run['load_before']} → {run['load_after']}; "
            f"server log: {run['server_log']['errors']} errors, "
            f"{run['server_log']['warnings']} warnings, "
            f"{run['server_log']['layer_drops']} group sends dropped over capacity"
        )
        lines += [f"    {message}" for message in run["server_log"]["commonest"]]
        lines += [
            f"    {key} failed: {value['error'][:300]}"
            for key, value in run.items()
            if isinstance(value, dict) and "error" in value
        ]
        if "wall_s" in run.get("simultaneous", {}):
            s = run["simultaneous"]
            lines.append(
                f"    row 4: {s['conversations']} conversations, wall {s['wall_s']:.1f} s "
                f"(ideal {s['ideal_s']:.1f} s), lost {s['lost']}, failed {s['failed']} "
                f"{s['problems']}"
            )
        if "short" in run.get("history", {}):
            h = run["history"]
            lines.append(
                f"    row 5: history {h['short']['history_messages']:.0f} vs "
                f"{h['long']['history_messages']:.0f} messages; messages sent to the model "
                f"{h['short']['messages_sent_to_model']:.0f} vs "
                f"{h['long']['messages_sent_to_model']:.0f}; CPU/turn "
                f"{h['short']['cpu_ms_per_turn']:.0f} vs {h['long']['cpu_ms_per_turn']:.0f} ms"
            )
    last = next(
        (run for run in reversed(report["runs"]) if "sql" in run.get("sequential", {})), None
    )
    if last is not None:
        lines += ["", "top statements per turn (last run):"]
        lines += [
            f"  {entry['calls_per_turn']:6.2f}  {entry['query'][:110]}"
            for entry in last["sequential"]["sql"]["top"]
        ]
    profile = next(
        (run["profile"] for run in report["runs"] if "samples" in run.get("profile", {})), None
    )
    if profile is not None:
        lines += ["", f"profile ({profile['samples']} samples holding the GIL), by library:"]
        lines += [f"  {v:5.1f} %  {k}" for k, v in profile["by_library_percent"].items()]
        lines += ["top functions by self time:"]
        lines += [f"  {v:5.1f} %  {k}" for k, v in profile["top_self_percent"].items()]
        lines += ["the app's functions by total time:"]
        lines += [f"  {v:5.1f} %  {k}" for k, v in profile["app_total_percent"].items()]
        lines += ["top functions by total time:"]
        lines += [f"  {v:5.1f} %  {k}" for k, v in profile["top_total_percent"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A plain `kill` cleans up like Ctrl-C does: through the ExitStack below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise_file_limit(2 * args.conversations + 512)
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            report = asyncio.run(measure(args, stack))
    except (BenchError, StackError, ClientError) as error:
        progress(f"failed: {error}" + ("" if args.logs else " (--logs DIR keeps the logs)"))
        return 1
    except KeyboardInterrupt:
        progress("interrupted; every process was stopped")
        return 130
    progress(f"done in {time.monotonic() - started:.0f} s")
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
