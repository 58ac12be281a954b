"""The process's database pool: connections the server closed are never handed out, and the pool
must fit in what the server allows."""

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from anycompany.dbpool import database_pool_check, pool_reset, pool_size

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pooled() -> Iterator[None]:
    if connection.vendor != "postgresql" or pool_size() is None:
        pytest.skip("needs PostgreSQL with DATABASE_POOL_SIZE on (the default)")
    connection.close()  # the test's own connection goes back, so every pooled one is idle
    pool_reset()
    yield
    pool_reset()


def on_a_thread(job: Any) -> Any:
    """Runs ``job`` as a request or turn would: on a thread of its own, giving its connection
    back at the end."""

    def run() -> Any:
        try:
            return job()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(run).result()


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def admin_connection() -> psycopg.Connection[Any]:
    params = connection.get_connection_params()
    keys = ("dbname", "user", "password", "host", "port")
    return psycopg.connect(**{k: params[k] for k in keys if k in params}, autocommit=True)


def test_connections_the_server_closed_are_replaced_before_anyone_uses_them(pooled: None) -> None:
    # Several at once, so the pool holds several idle connections afterwards.
    with ThreadPoolExecutor(max_workers=3) as threads:
        before = set(threads.map(lambda _: on_a_thread(backend_pid), range(3)))

    # As a database restart does: the server ends every session of the pool.
    with admin_connection() as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [list(before)]
            ).fetchone()
            if row and row[0] == 0:
                break
            time.sleep(0.05)

    # Each query gets a live connection: none of them fails on one the server closed.
    after = [on_a_thread(backend_pid) for _ in range(5)]
    assert not set(after) & before


def test_a_pool_larger_than_the_server_allows_fails_the_start_naming_the_setting(
    pooled: None,
) -> None:
    options = connection.settings_dict["OPTIONS"]
    saved = options["pool"]
    options["pool"] = {**saved, "max_size": 100_000}
    try:
        with pytest.raises(ImproperlyConfigured, match="DATABASE_POOL_SIZE=100000"):
            database_pool_check()
    finally:
        options["pool"] = saved


def test_the_start_says_how_many_connections_the_process_may_use(
    pooled: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="anycompany.dbpool"):
        usable = database_pool_check()

    size = pool_size()
    assert size is not None
    assert usable is not None
    assert size <= usable
    assert f"up to {size} connections" in caplog.text


def test_a_pool_that_fits_the_limit_but_not_what_others_leave_free_is_warned_about(
    pooled: None, caplog: pytest.LogCaptureFixture
) -> None:
    usable = database_pool_check()
    assert usable is not None
    options = connection.settings_dict["OPTIONS"]
    saved = options["pool"]
    # Allowed by the server's limit, but this test's own connections already use some of it.
    options["pool"] = {**saved, "max_size": usable}
    try:
        with admin_connection(), caplog.at_level(logging.WARNING, logger="anycompany.dbpool"):
            database_pool_check()
    finally:
        options["pool"] = saved

    assert f"DATABASE_POOL_SIZE={usable} is more than the" in caplog.text
    assert "connections free on the database now" in caplog.text
