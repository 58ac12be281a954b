"""A throwaway database holding only the demo data, so evals never touch real orders.

``throwaway_database()`` creates a fresh database next to the configured one with Django's own
test-database machinery (PostgreSQL: a new database on the same server, which needs the
CREATEDB privilege like the test suite; SQLite: a file in a temporary directory), migrates it,
points the default connection at it, and drops it afterwards whatever happens. Between cases
``demo_data_reset()`` empties it and loads the demo fixtures again, so every case starts from
the same shop.
"""

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from orders.demo import DEMO_FIXTURES


def _pool_reset(connection: Any) -> None:
    # A connection pool (DATABASE_POOL_SIZE) keeps the database name it was built with: the
    # next connection must come from a new pool, made from the switched settings.
    connection.close()
    close_pool = getattr(connection, "close_pool", None)  # PostgreSQL's backend only
    if close_pool is not None:
        close_pool()


class SandboxError(Exception):
    """The throwaway database could not be created; ``str()`` says why and what to do."""


@contextmanager
def throwaway_database() -> Iterator[str]:
    """Runs the body against a new, migrated, empty database; yields its name.

    Raises ``SandboxError`` when the database cannot be created.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    original_name = connection.settings_dict["NAME"]
    test_settings = connection.settings_dict.setdefault("TEST", {})
    saved_test_name = test_settings.get("NAME")
    directory: str | None = None
    if connection.vendor == "sqlite":
        if ":memory:" in str(original_name) or "mode=memory" in str(original_name):
            # Switching away from an in-memory database would lose it (and keep its connection).
            raise SandboxError("evaluate needs a database file or server, not in-memory SQLite.")
        directory = tempfile.mkdtemp(prefix="evals-")
        name = str(Path(directory) / "evals.sqlite3")
    else:
        # PostgreSQL names are at most 63 bytes; the random part keeps parallel runs apart.
        name = f"{str(original_name)[:40]}_eval_{secrets.token_hex(4)}"
    test_settings["NAME"] = name
    try:
        try:
            # The pool's connections are to the operator's database: the next one is made
            # once create_test_db has switched the name, before it migrates.
            _pool_reset(connection)
            connection.creation.create_test_db(verbosity=0, autoclobber=True)
        except DatabaseError as error:
            raise SandboxError(
                f"Could not create the throwaway database {name!r}: {error}".strip()
                + " The database user needs the CREATEDB privilege; or run evaluate with"
                " DATABASE_URL=sqlite:///evals.sqlite3 (only a temporary copy is ever written)."
            ) from error
        try:
            yield name
        finally:
            _pool_reset(connection)
            connection.creation.destroy_test_db(original_name, verbosity=0)
            _pool_reset(connection)
    finally:
        if saved_test_name is None:
            test_settings.pop("NAME", None)
        else:
            test_settings["NAME"] = saved_test_name
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


def demo_data_reset() -> None:
    """Empties the (throwaway) database and loads the demo customers and orders."""
    call_command("flush", interactive=False, verbosity=0)
    call_command("loaddata", *DEMO_FIXTURES, verbosity=0)
