"""The process's database connection budget, checked against the server when the app starts.

Every database user of a process (HTTP requests, the sockets' short queries and the turn
workers) borrows from one psycopg pool of ``DATABASE_POOL_SIZE`` connections. So raising
``CHAT_MAX_CONCURRENT_TURNS`` never opens more connections: turns wait for one instead of being
refused with "too many clients". A pool larger than the server allows would fail only under
load, hours after a deploy; this check makes it fail at start-up, naming the setting.
"""

import logging
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection, connections

logger = logging.getLogger(__name__)

# Reserved settings that exist on the server's version (reserved_connections is PostgreSQL
# 16+), and the client connections open now, this one included.
_LIMITS_SQL = """
SELECT name, setting::int FROM pg_settings
WHERE name IN ('max_connections', 'superuser_reserved_connections', 'reserved_connections')
UNION ALL
SELECT 'in_use', count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend'
"""


def _server_limits() -> dict[str, int] | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute(_LIMITS_SQL)
            return dict(cursor.fetchall())
    except DatabaseError as error:
        # A database still starting must not keep the app from starting; readiness reports it.
        logger.warning("Could not read the database's connection limit: %s", error)
        return None
    finally:
        connection.close()


def pool_size() -> int | None:
    """The process's pool size, or None when the database is not a pooled PostgreSQL."""
    options = settings.DATABASES["default"].get("OPTIONS") or {}
    pool = options.get("pool") if isinstance(options, dict) else None
    return int(pool["max_size"]) if isinstance(pool, dict) else None


def database_pool_check() -> int | None:
    """Checks the pool fits in what the server allows and logs the budget; returns the usable
    connections (None when unpooled, or the server could not be asked).

    Raises: ``ImproperlyConfigured`` when ``DATABASE_POOL_SIZE`` exceeds ``max_connections``
    minus the server's reserved connections.
    """
    size = pool_size()
    if size is None:
        return None
    # On a thread of its own: the ASGI module may be imported from a running event loop.
    with ThreadPoolExecutor(max_workers=1) as thread:
        limits = thread.submit(_server_limits).result()
    if limits is None:
        return None
    usable = (
        limits.get("max_connections", 0)
        - limits.get("superuser_reserved_connections", 0)
        - limits.get("reserved_connections", 0)
    )
    if size > usable:
        raise ImproperlyConfigured(
            f"DATABASE_POOL_SIZE={size} is more than the {usable} connections the database "
            f"allows (max_connections {limits.get('max_connections')} minus reserved ones). "
            "Lower DATABASE_POOL_SIZE, or raise max_connections on the server."
        )
    logger.info(
        "Database pool: up to %d connections for this process, of %d the server allows; "
        "%d turn workers share it.",
        size,
        usable,
        settings.CHAT_MAX_CONCURRENT_TURNS,
    )
    # Other processes (more server tasks, a migration, an operator's shell) share the limit.
    free = usable - limits.get("in_use", 1) + 1
    if size > free:
        logger.warning(
            "DATABASE_POOL_SIZE=%d is more than the %d connections free on the database now: "
            "under load this process may be refused connections. Lower DATABASE_POOL_SIZE "
            "or run fewer processes against this database.",
            size,
            free,
        )
    return usable


def pool_reset() -> None:
    """Closes this thread's connections and the process's pool, so the next connection is
    made from the current settings (another database, tracing switched on or off).

    Connections other threads hold stay open until they give them back; for tests, tools
    that switch databases and tracing hooks, never for a running server.
    """
    # Every alias, not only the ones this thread used: the pool is the process's.
    for each in connections.all():
        # A test's transaction keeps its connection to the end; an event loop's thread has none
        # (and may not call close()).
        if each.connection is not None and not each.in_atomic_block:
            each.close()
        close_pool = getattr(each, "close_pool", None)  # PostgreSQL's backend only
        if close_pool is not None:
            close_pool()
