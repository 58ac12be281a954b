"""Django's PostgreSQL backend, with a pool that never hands out a connection the server closed.

After a database restart (or a server-side idle timeout) every idle pooled connection is dead,
and each would fail the first query a request or turn made on it. A health-check query on every
checkout would find them at the cost of a round trip each time. Instead a checkout looks at the
socket, without a round trip: an idle connection has nothing to read unless the server said
goodbye (a shutdown notice, then end of file). Such a connection is closed, so the pool drops it
and opens another. A connection that breaks while in use is dropped by the pool when it comes
back (psycopg_pool discards closed connections).
"""

import select
from typing import Any

from django.db.backends.postgresql import base


def closed_by_server(connection: Any) -> bool:
    """Whether an idle connection was closed, or the server sent it something (its goodbye)."""
    if connection.closed:
        return True
    # poll, not select: a busy process has socket numbers past select's limit of 1024.
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        pool = self.pool
        # Bounded: each closed connection is replaced by a new one, which has nothing to read.
        while pool is not None and closed_by_server(connection):
            connection.close()
            pool.putconn(connection)
            connection = super().get_new_connection(conn_params)
        return connection
