"""Benchmark: how many group messages survive a burst, by channel layer capacity.

Channels' layers deliver at most once and drop group sends over a channel's capacity without a
log line. This sends a burst of events (a streamed reply's deltas) to a group of receivers
before they read, then counts what arrives, for the default capacity and for ours.

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/channel_layer.py
"""

import argparse
import asyncio
import os
import time

from channels_redis.core import RedisChannelLayer


async def burst(url: str, capacity: int, receivers: int, events: int) -> tuple[int, float]:
    layer = RedisChannelLayer(
        hosts=[{"address": url, "max_connections": 1000, "socket_timeout": 15}],
        capacity=capacity,
        prefix=f"bench-{capacity}-{time.monotonic_ns()}",
    )
    group = "conversation-bench"
    channels = [await layer.new_channel() for _ in range(receivers)]
    for channel in channels:
        await layer.group_add(group, channel)
    started = time.perf_counter()
    for n in range(events):
        await layer.group_send(group, {"type": "chat.event", "n": n})

    async def drain(channel: str) -> int:
        got = 0
        while True:
            try:
                await asyncio.wait_for(layer.receive(channel), timeout=0.5)
            except TimeoutError:
                return got
            got += 1

    counts = await asyncio.gather(*(drain(channel) for channel in channels))
    elapsed = time.perf_counter() - started
    await layer.flush()
    await layer.close_pools()
    return sum(counts), elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receivers", type=int, default=20)
    parser.add_argument("--events", type=int, default=400)
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    expected = args.receivers * args.events
    print(f"{args.receivers} receivers x {args.events} events = {expected} deliveries expected")
    for capacity in (100, 1000):
        delivered, elapsed = await burst(url, capacity, args.receivers, args.events)
        print(
            f"capacity {capacity:>5}: delivered {delivered:>6} ({delivered / expected:6.1%}) "
            f"in {elapsed:4.1f} s"
        )


if __name__ == "__main__":
    asyncio.run(main())
