"""Benchmark: one customer turn through the live chat with the offline demo model.

Measures what the app adds around the model: persistence, history, tools and the database.
Runs against ``DATABASE_URL`` in a throwaway test database (created and dropped here).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/turns.py
"""

import argparse
import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("CHAT_RATE_LIMIT_PER_MINUTE", "100000")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_databases, teardown_databases  # noqa: E402

from chat.engine.demo.model import DemoModel  # noqa: E402
from chat.live.conversations import conversation_start  # noqa: E402
from chat.live.turns import turn_submit  # noqa: E402
from orders.models import Customer  # noqa: E402
from orders.services import customer_login_ensure  # noqa: E402

SCRIPT = ["I need help with an order", "My order is 37129"]


def one_conversation(customer_id: str) -> list[float]:
    customer = Customer.objects.select_related("user").get(pk=customer_id)
    assert customer.user is not None
    conversation = conversation_start(user=customer.user)
    timings = []
    for text in SCRIPT:
        started = time.perf_counter()
        turn_submit(
            conversation=conversation,
            user=customer.user,
            text=text,
            client_message_id=str(uuid.uuid4()),
            emit=lambda event: None,
            client=DemoModel(),
        )
        timings.append((time.perf_counter() - started) * 1000)
    connections.close_all()
    return timings


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=40)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    old = setup_databases(verbosity=0, interactive=False)
    try:
        call_command("loaddata", "customers", "orders", verbosity=0)
        mary = Customer.objects.get(pk="901235")
        customer_login_ensure(customer=mary)

        with CaptureQueriesContext(connection) as queries:
            one_conversation(mary.pk)
        per_turn_queries = len(queries) / len(SCRIPT)

        sequential: list[float] = []
        started = time.perf_counter()
        for _ in range(args.conversations):
            sequential += one_conversation(mary.pk)
        sequential_s = time.perf_counter() - started

        concurrent: list[float] = []
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            for timings in pool.map(one_conversation, [mary.pk] * args.conversations):
                concurrent += timings
        concurrent_s = time.perf_counter() - started

        vendor = connection.vendor
        print(f"database: {vendor}; turns per run: {len(sequential)}")
        print(f"queries per turn: {per_turn_queries:.0f}")
        for name, values, seconds in (
            ("sequential", sequential, sequential_s),
            (f"{args.threads} threads", concurrent, concurrent_s),
        ):
            print(
                f"{name:>12}: p50 {statistics.median(values):6.1f} ms  "
                f"p95 {percentile(values, 0.95):6.1f} ms  "
                f"throughput {len(values) / seconds:6.1f} turns/s"
            )
    finally:
        connections.close_all()
        teardown_databases(old, verbosity=0)


if __name__ == "__main__":
    main()
