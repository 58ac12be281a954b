"""Counting attempts in Django's cache: Redis whenever ``REDIS_URL`` is set, so every process
shares one count, and the local-memory cache otherwise (``make run``, a single process).

Callers count in fixed windows whose key names the window, and decide themselves whether to fail
open or closed while Redis is away.
"""

import threading
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

_COUNT = "local n = redis.call('INCR', KEYS[1]) redis.call('EXPIRE', KEYS[1], ARGV[1]) return n"
# One script, so one Redis client and connection pool, per Redis server for the whole process.
# Django's cache backends are per thread, each with its own pool: keyed by backend, every new
# thread (a turn worker of hundreds) would open its own Redis connection for its first count.
_count_scripts: dict[tuple[str, ...], Any] = {}
_count_scripts_lock = threading.Lock()


def counted(key: str, *, timeout: int) -> int:
    """Adds one to the count kept in the cache under ``key``; the new count. The key lasts
    ``timeout`` seconds after its latest count (a fixed window's key names its window).

    Raises: ``RedisError`` while Redis cannot be reached.
    """
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        # One round trip, where the cache's add() and incr() take three (SET NX, EXISTS, INCRBY).
        servers = tuple(backend._servers)  # type: ignore[attr-defined]  # not in the stubs
        script = _count_scripts.get(servers)
        if script is None:
            with _count_scripts_lock:
                script = _count_scripts.get(servers)
                if script is None:
                    # Django gives no other handle on the cache's Redis client than ``_cache``;
                    # redis-py's client and its pool are safe to share between threads.
                    client = backend._cache.get_client(write=True)
                    script = _count_scripts[servers] = client.register_script(_COUNT)
        return int(script(keys=[backend.make_and_validate_key(key)], args=[timeout]))
    # add() is a no-op when the key exists, so concurrent first attempts share one counter.
    backend.add(key, 0, timeout=timeout)
    try:
        return int(backend.incr(key))
    except ValueError:
        # Evicted between add() and incr().
        backend.set(key, 1, timeout=timeout)
        return 1
