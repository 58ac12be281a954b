"""Attempt counters in Django's cache, and the client address they are kept per.

The cache is Redis whenever ``REDIS_URL`` is set, so every process shares one count; without it
(``make run``, a single process) the local-memory cache is enough. While Redis is unavailable
``hit`` raises ``CounterUnavailable``: each caller decides whether to fail open or closed.
"""

import contextlib
import hashlib
import ipaddress
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

from anycompany.counters import counted


class CounterUnavailable(Exception):
    """The cache that keeps the counts cannot be reached: nothing was counted."""


@dataclass(frozen=True)
class Limit:
    """At most ``count`` attempts per key in each fixed window of ``window`` seconds."""

    name: str
    count: int
    window: int


@dataclass(frozen=True)
class Hit:
    """One counted attempt: whether it was over the limit, and when its window ends."""

    key: str
    count: int
    limit: Limit
    retry_after: int

    @property
    def over(self) -> bool:
        return self.count > self.limit.count

    @property
    def first_over(self) -> bool:
        """The attempt that crossed the limit: worth one log line per window, not one each."""
        return self.count == self.limit.count + 1


def _cache_key(limit: Limit, subject: str, window_start: int) -> str:
    # Hashed: subjects may be emails or addresses, which need not sit in Redis as they are.
    digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
    return f"throttle:{limit.name}:{digest}:{window_start}"


def hit(limit: Limit, subject: str, *, now: float | None = None) -> Hit:
    """Counts one attempt by ``subject`` before it is made.

    Counting first (rather than checking, then counting failures) means concurrent attempts
    can never get past the limit together. Windows are aligned to the clock, so the key of
    each window is new: a key the cache fails to expire never outlives its window.
    """
    now = time.time() if now is None else now
    window_start = int(now // limit.window) * limit.window
    key = _cache_key(limit, subject, window_start)
    try:
        count = counted(key, timeout=limit.window * 2)
    except RedisError as error:
        raise CounterUnavailable(str(error)) from error
    retry_after = max(math.ceil(window_start + limit.window - now), 1)
    return Hit(key=key, count=count, limit=limit, retry_after=retry_after)


def refund(hit: Hit) -> None:
    """Takes back an attempt that turned out not to count (a successful sign-in)."""
    # ValueError: expired meanwhile, nothing left to take back; RedisError: the count is gone
    # with the server, or is taken back by the window's end.
    with contextlib.suppress(ValueError, RedisError):
        cache.decr(hit.key)


def client_address(*, forwarded_for: str | None, peer: str | None) -> str:
    """The client's address, as far as the proxies in front of the app vouch for it.

    Each of the ``TRUSTED_PROXY_COUNT`` proxies (1 behind the load balancer) appends the address
    it received the request from to ``X-Forwarded-For``; everything left of those entries was
    written by the client and is ignored, so nobody picks the address they are counted under.
    With no trusted proxy, or fewer entries than proxies, the peer of the connection counts.
    IPv6 clients count per /64, the block one subscriber usually holds.
    """
    candidate = peer or ""
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies and forwarded_for:
        entries = [entry.strip() for entry in forwarded_for.split(",")]
        if len(entries) >= proxies:
            candidate = entries[-proxies]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def minutes(seconds: int) -> str:
    count = max(math.ceil(seconds / 60), 1)
    return f"{count} minute{'s' if count != 1 else ''}"
