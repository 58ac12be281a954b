"""The operator's side of a benchmark run: the server's environment, customers and their
sign-in, the file-descriptor limit, and what the server logged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench.client import Browser
from bench.phases import Customer
from bench.stack import ROOT, StackError, manage

# Variables of the app that must come from here, not from the shell that runs the benchmark.
_APP_PREFIXES = (
    "AWS_", "DB_", "DATABASE_", "REDIS_", "CHAT_", "BEDROCK_", "COGNITO_", "DJANGO_", "SECURE_",
    "SESSION_", "CSRF_", "CHANNEL_LAYER_", "CONVERSATION_", "DEMO_", "DEBUG", "SECRET_KEY",
    "ALLOWED_HOSTS", "LOG_LEVEL",
)  # fmt: skip


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_reported(
    measure: Callable[[contextlib.ExitStack[Any]], Coroutine[Any, Any, dict[str, Any]]],
    *,
    render: Callable[[dict[str, Any]], str],
    as_json: bool,
    errors: tuple[type[Exception], ...],
    hint: str = "",
) -> int:
    """Runs ``measure`` with an exit stack that stops every process it started, and prints its
    report; the exit status for ``main``. ``errors`` are reported in a line (with ``hint``)."""
    # A plain `kill` cleans up like Ctrl-C does: through the ExitStack below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            report = asyncio.run(measure(stack))
    except errors as error:
        progress(f"failed: {error}{hint}")
        return 1
    except KeyboardInterrupt:
        progress("interrupted; every process was stopped")
        return 130
    progress(f"done in {time.monotonic() - started:.0f} s")
    print(json.dumps(report, indent=2) if as_json else render(report))
    return 0


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
            "CHAT_CONVERSATIONS_PER_HOUR": "1000000",
            "CHAT_CONNECTS_PER_MINUTE": "1000000",
            "CHAT_RESUMES_PER_MINUTE": "1000000",
            "CHAT_DAILY_TOKEN_BUDGET": str(10**15),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if args.turn_workers:
        env["CHAT_MAX_CONCURRENT_TURNS"] = str(args.turn_workers)
    if args.db_pool is not None:
        env["DATABASE_POOL_SIZE"] = str(args.db_pool)
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
