"""Database work from the event loop and the turn workers, on a shared, bounded pool.

With ``DATABASE_POOL_SIZE`` set, every connection of a process comes from one psycopg pool and
goes back to it when Django closes it. Two places must give it back explicitly:

- ``short_query``: asgiref runs a sync function in a copy of the caller's context and copies the
  context back, so a connection opened there is invisible to Channels' own
  ``close_old_connections`` (which runs outside that copy) and would stay checked out for as
  long as the socket lives. It is closed inside the call instead.
- ``connection_release``: a turn gives its connection back between steps, so it holds none while
  it waits on the model; turn workers then share a few connections.
"""

import functools
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection


def connection_release() -> None:
    """Gives this thread's database connection back to the pool (outside a transaction; the
    next query takes one again). Without a pool the connection stays: reconnecting costs far
    more than keeping it (``DATABASE_CONN_MAX_AGE``)."""
    if not connection.in_atomic_block and connection.settings_dict.get("OPTIONS", {}).get("pool"):
        connection.close()


def short_query(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` as a coroutine on the loop's default pool, not Channels' shared thread; its
    connection goes back to the pool when it returns."""

    @functools.wraps(func)
    def returning_connection(*args: Any, **kwargs: Any) -> Any:
        # Like a request: a connection past its age or broken (a database restart) is replaced.
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            connection_release()

    return sync_to_async(returning_connection, thread_sensitive=False)
