"""Statements the server sent to PostgreSQL, from ``pg_stat_statements``.

The cluster tracks nested statements (``track=all``) and utility ones (``track_utility``: BEGIN,
COMMIT, SAVEPOINT, RELEASE). Deferred foreign-key checks run when the COMMIT has already returned
from the statement hooks, so they count as top-level statements of their own; they are told
apart by their text. Only the app database's rows count; the benchmark reads them from another
database.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg

_SAVEPOINT_NAME = re.compile(r'("?s\d+_x\d+"?)')
_TRANSACTION = re.compile(r"^(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)
_HEALTH_CHECK = re.compile(r"^SELECT (1|\$1)$")
_FK_CHECK = re.compile(r"FOR KEY SHARE OF")


@dataclass
class Statements:
    total: int = 0
    round_trips: int = 0  # statements the server sent: top-level ones but the FK checks
    transaction_control: int = 0
    health_checks: int = 0
    fk_checks: int = 0
    exec_ms: float = 0.0
    top: list[tuple[int, str]] = field(default_factory=list)

    def per_turn(self, turns: int) -> dict[str, Any]:
        return {
            "statements": self.total / turns,
            "round_trips": self.round_trips / turns,
            "transaction_control": self.transaction_control / turns,
            "select_1": self.health_checks / turns,
            "fk_checks": self.fk_checks / turns,
            "server_exec_ms": self.exec_ms / turns,
            "top": [{"calls_per_turn": calls / turns, "query": query} for calls, query in self.top],
        }


def reset(connection: psycopg.Connection[Any]) -> None:
    connection.execute("SELECT pg_stat_statements_reset()")


def _total(connection: psycopg.Connection[Any], dbid: int) -> int:
    row = connection.execute(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE dbid = %s", [dbid]
    ).fetchone()
    return int(row[0]) if row else 0


def settle(connection: psycopg.Connection[Any], dbid: int, *, quiet: float = 0.3) -> None:
    """Waits until no new statements arrive for ``quiet`` seconds (a turn's last writes may land
    just after its client got ``submitted``), or 10 s."""
    deadline = time.monotonic() + 10
    last = _total(connection, dbid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = _total(connection, dbid)
        if now == last:
            return
        last = now


def database_oid(connection: psycopg.Connection[Any], name: str) -> int:
    row = connection.execute("SELECT oid FROM pg_database WHERE datname = %s", [name]).fetchone()
    if row is None:
        raise LookupError(f"No database {name!r}.")
    return int(row[0])


def read(connection: psycopg.Connection[Any], dbid: int, *, top: int = 15) -> Statements:
    rows = connection.execute(
        "SELECT calls, toplevel, total_exec_time, query FROM pg_stat_statements WHERE dbid = %s",
        [dbid],
    ).fetchall()
    result = Statements()
    by_query: Counter[str] = Counter()
    for calls, toplevel, exec_ms, query in rows:
        text = " ".join(str(query).split())
        result.total += calls
        result.exec_ms += exec_ms
        if _FK_CHECK.search(text):
            result.fk_checks += calls
            by_query[f"(deferred FK check) {text}"[:160]] += calls
            continue
        if toplevel:
            result.round_trips += calls
        if _TRANSACTION.match(text):
            result.transaction_control += calls
            text = _SAVEPOINT_NAME.sub("<name>", text)
        elif _HEALTH_CHECK.match(text):
            result.health_checks += calls
        by_query[text[:160]] += calls
    result.top = [(calls, query) for query, calls in by_query.most_common(top)]
    return result


def client_backends(pg: psycopg.Connection[Any], dbid: int) -> int:
    """Client connections open to the app's database right now."""
    row = pg.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datid = %s AND backend_type = 'client backend'",
        (dbid,),
    ).fetchone()
    return int(row[0]) if row else 0
