"""The measurements of one run; each drives the real server through customers' own sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import time
import uuid
from dataclasses import dataclass, field
from itertools import cycle
from pathlib import Path
from typing import Any

import psycopg

from bench import floor, pgstats, profiling
from bench.client import Browser, ChatSocket, TurnResult
from bench.floor import Call
from bench.script import answer_text, question_text, small_talk_answer, small_talk_text
from bench.stack import Server, StandInProcess, cpu_seconds, peak_rss_mb


class BenchError(RuntimeError):
    """The server did not behave as the measurement needs; the message says where to look."""


@dataclass
class Customer:
    username: str
    email: str
    orders: list[dict[str, Any]]
    browser: Browser | None = None
    asked: int = 0

    def next_order(self) -> dict[str, Any]:
        order = self.orders[self.asked % len(self.orders)]
        self.asked += 1
        return order


@dataclass
class Chat:
    customer: Customer
    socket: ChatSocket

    @property
    def history(self) -> int:
        """Messages stored in the conversation, as far as this page has seen."""
        return self.socket.last_seq

    async def turn(self, *, timeout: float, small_talk: bool = False) -> TurnResult:
        """A one-tool turn (a question about one of the customer's orders), or small talk."""
        token = uuid.uuid4().hex[:16]
        if small_talk:
            return await self.socket.turn(
                small_talk_text(token), token, small_talk_answer(token), timeout=timeout
            )
        order = self.customer.next_order()
        return await self.socket.turn(
            question_text(order["id"], token), token, answer_text(order, token), timeout=timeout
        )

    async def seed(self, messages: int, *, timeout: float) -> None:
        """Grows the stored history by ``messages`` (even) with real turns: one-tool turns store
        four messages, small talk two."""
        if messages % 2:
            raise ValueError("A history grows by an even number of messages.")
        for small_talk in [False] * (messages // 4) + [True] * (messages % 4 // 2):
            result = await self.turn(timeout=timeout, small_talk=small_talk)
            if not result.ok:
                raise BenchError(f"A turn that builds up history failed: {result.problem}.")


@dataclass
class Run:
    """What one run measures against: a fresh server and the shared processes."""

    server: Server
    standin: StandInProcess
    pg: psycopg.Connection[Any]
    dbid: int
    customers: list[Customer]
    bedrock: Any  # the floor's boto3 client
    timeout: float
    # More daphne processes sharing the customers (``--servers``); ``server`` is the first.
    others: list[Server] = field(default_factory=list)

    def model_times(self) -> dict[str, dict[str, Any]]:
        """The stand-in's record per turn token: calls, model_ms, messages, tool_ok."""
        turns: dict[str, dict[str, Any]] = self.standin.control("GET", "turns")
        return turns


def server_cpu(run: Run) -> tuple[float, float]:
    """CPU seconds the servers have used: in all, and on their event loop's threads (daphne's
    main thread: sockets, frames, dispatch). The rest is the turns' worker threads."""
    pids = [server.pid for server in (run.server, *run.others)]
    return (
        sum(cpu_seconds(pid) for pid in pids),
        sum(cpu_seconds(pid, thread=pid) for pid in pids),
    )


def server_cpu_since(run: Run, before: tuple[float, float]) -> tuple[float, float]:
    """``server_cpu`` used since ``before`` (an earlier reading of it)."""
    total, loop = server_cpu(run)
    return total - before[0], loop - before[1]


async def step_counts(run: Run, *, reset: bool) -> dict[str, list[float]]:
    """Zeroes (``reset``) or reads ``bench.steps``'s counts; ``{}`` when the server has none."""
    path = run.server.steps_file
    if path is None:
        return {}
    if reset:
        os.kill(run.server.pid, signal.SIGUSR2)
        return {}
    path.unlink(missing_ok=True)
    os.kill(run.server.pid, signal.SIGUSR1)
    for _ in range(100):
        if path.exists():
            counts: dict[str, list[float]] = json.loads(path.read_text())
            return counts
        await asyncio.sleep(0.1)
    raise BenchError(f"bench.steps wrote no counts to {path}: see {run.server.log}")


def _per_turn(counts: dict[str, list[float]], turns: int) -> dict[str, dict[str, float]]:
    return {
        step: {"cpu_ms": seconds * 1000 / turns, "calls": calls / turns}
        for step, (seconds, calls) in sorted(counts.items(), key=lambda item: -item[1][0])
    }


# --- Customers and conversations ----------------------------------------------------------------


async def start_conversations(customers: list[Customer], count: int) -> list[tuple[Customer, str]]:
    """``count`` new conversations through the home page's form, spread over the customers."""
    shares = dict.fromkeys(range(len(customers)), 0)
    for index, _ in zip(cycle(range(len(customers))), range(count), strict=False):
        shares[index] += 1

    async def start(customer: Customer, share: int) -> list[tuple[Customer, str]]:
        assert customer.browser is not None
        ids = await asyncio.to_thread(customer.browser.new_conversations, share)
        return [(customer, conversation_id) for conversation_id in ids]

    started = await asyncio.gather(
        *(start(customers[i], share) for i, share in shares.items() if share)
    )
    return [pair for group in started for pair in group]


async def open_chats(pairs: list[tuple[Customer, str]], *, parallel: int = 50) -> list[Chat]:
    """Opens each conversation's socket like its page does, ``parallel`` handshakes at a time."""
    gate = asyncio.Semaphore(parallel)

    async def open_one(customer: Customer, conversation_id: str) -> Chat:
        assert customer.browser is not None
        async with gate:
            socket = await ChatSocket.open(customer.browser, conversation_id)
        return Chat(customer, socket)

    return list(await asyncio.gather(*(open_one(c, i) for c, i in pairs)))


async def close_chats(chats: list[Chat]) -> None:
    gate = asyncio.Semaphore(100)

    async def close(chat: Chat) -> None:
        async with gate:
            await chat.socket.close()

    await asyncio.gather(*(close(chat) for chat in chats), return_exceptions=True)


async def new_chats(run: Run, count: int) -> list[Chat]:
    chats = await open_chats(await start_conversations(run.customers, count))
    # Let the handshakes' trailing work finish before anything is counted.
    await asyncio.sleep(0.3)
    return chats


def _require(results: list[TurnResult], what: str, server: Server) -> None:
    failed = [r for r in results if not r.ok]
    if failed:
        # The log goes with the temporary directory; its end usually says why.
        tail = server.log.read_text(errors="replace")[-3000:] if server.log.exists() else ""
        raise BenchError(
            f"{len(failed)} of {len(results)} {what} failed (first: {failed[0].problem}). "
            f"The server log ends with:\n{tail}"
        )


# --- Statistics ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def spread(values: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(values), "p99": percentile(values, 0.99)}


# --- Phases -------------------------------------------------------------------------------------


async def captured_calls(run: Run, token: str) -> list[Call]:
    found = await asyncio.to_thread(run.standin.control, "GET", f"requests/{token}")
    return [
        Call(call["model_id"], call["operation"], call["body"]) for call in found["requests"][:2]
    ]


async def floor_ms(run: Run, token: str, repeats: int) -> dict[str, float]:
    """The same calls as the turn ``token`` made, replayed with boto3 without the server."""
    calls = await captured_calls(run, token)
    seconds = await asyncio.to_thread(floor.replay, run.bedrock, calls, repeats=repeats)
    return spread([s * 1000 for s in seconds])


async def warm_up_and_floor(run: Run, *, repeats: int) -> dict[str, Any]:
    chats = await new_chats(run, 3)
    results = [await chat.turn(timeout=run.timeout) for chat in chats]
    await close_chats(chats)
    _require(results, "warm-up turns", run.server)
    return {"floor_ms": await floor_ms(run, results[-1].token, repeats)}


async def sequential(run: Run, *, turns: int, floor: dict[str, float]) -> dict[str, Any]:
    """Rows 1, 2 and 3 (sequential): one turn at a time, each in a fresh conversation."""
    chats = await new_chats(run, turns)
    await asyncio.to_thread(pgstats.reset, run.pg)
    run.standin.control("POST", "reset")
    await step_counts(run, reset=True)
    cpu_before = server_cpu(run)
    results = [await chat.turn(timeout=run.timeout) for chat in chats]
    await asyncio.to_thread(pgstats.settle, run.pg, run.dbid)
    cpu, loop = server_cpu_since(run, cpu_before)
    steps = await step_counts(run, reset=False)
    statements = await asyncio.to_thread(pgstats.read, run.pg, run.dbid)
    await close_chats(chats)
    _require(results, "sequential turns", run.server)
    model = run.model_times()
    turn_ms = [r.seconds * 1000 for r in results]
    return {
        "turns": len(results),
        "turn_ms": spread(turn_ms),
        "beyond_floor_ms": spread([t - floor["p50"] for t in turn_ms]),
        "beyond_standin_ms": spread(
            [r.seconds * 1000 - model[r.token]["model_ms"] for r in results]
        ),
        "model_calls_per_turn": statistics.mean(model[r.token]["calls"] for r in results),
        "frames_per_turn": statistics.mean(r.frames for r in results),
        "sql": statements.per_turn(len(results)),
        "cpu_ms_per_turn": cpu * 1000 / len(results),
        "loop_cpu_ms_per_turn": loop * 1000 / len(results),
        "steps": _per_turn(steps, len(results)),
    }


async def concurrent(run: Run, *, clients: int, turns_per_client: int) -> dict[str, Any]:
    """Row 3 (throughput): ``clients`` customers sending back to back, near-zero model latency."""
    chats = await new_chats(run, clients * turns_per_client)
    groups = [chats[i::clients] for i in range(clients)]

    async def client(group: list[Chat]) -> list[TurnResult]:
        return [await chat.turn(timeout=run.timeout) for chat in group]

    own_before, standin_before = os.times(), cpu_seconds(run.standin.process.pid)
    cpu_before, started = server_cpu(run), time.perf_counter()
    results = [r for group in await asyncio.gather(*map(client, groups)) for r in group]
    wall = time.perf_counter() - started
    cpu, loop = server_cpu_since(run, cpu_before)
    own_after = os.times()
    standin_cpu = cpu_seconds(run.standin.process.pid) - standin_before
    await close_chats(chats)
    _require(results, "concurrent turns", run.server)
    return {
        "clients": clients,
        "turns": len(results),
        "wall_s": wall,
        "turns_per_s": len(results) / wall,
        "cpu_ms_per_turn": cpu * 1000 / len(results),
        "loop_cpu_ms_per_turn": loop * 1000 / len(results),
        "server_cores_busy": cpu / wall,
        "clients_cores_busy": (
            own_after.user + own_after.system - own_before.user - own_before.system
        )
        / wall,
        "standin_cores_busy": standin_cpu / wall,
        "turn_ms": spread([r.seconds * 1000 for r in results]),
    }


async def _measure_turns(run: Run, chats: list[Chat], *, repeats: int) -> dict[str, Any]:
    histories, results = [], []
    cpu_before = server_cpu(run)
    for chat in chats:
        histories.append(chat.history)
        results.append(await chat.turn(timeout=run.timeout))
    cpu, _ = server_cpu_since(run, cpu_before)
    _require(results, "history turns", run.server)
    model = run.model_times()
    floor = await floor_ms(run, results[-1].token, repeats)
    turn_ms = [r.seconds * 1000 for r in results]
    return {
        "turns": len(results),
        "history_messages": statistics.mean(histories),
        "messages_sent_to_model": statistics.mean(model[r.token]["messages"][0] for r in results),
        "turn_ms": spread(turn_ms),
        "floor_ms": floor,
        "beyond_floor_ms": spread([t - floor["p50"] for t in turn_ms]),
        "cpu_ms_per_turn": cpu * 1000 / len(results),
    }


async def history(
    run: Run, *, turns: int, short: int, long_conversation: tuple[Customer, str], repeats: int
) -> dict[str, Any]:
    """Row 5: the same one-tool turn at ``short`` and at about 500 messages of history.

    Short: ``turns`` fresh conversations grown to ``short`` messages, one measured turn each.
    Long: the run's conversation grown during setup; ``turns`` measured turns in a row, centred
    on the target length.
    """
    short_chats = await new_chats(run, turns)
    await asyncio.gather(*(chat.seed(short, timeout=run.timeout) for chat in short_chats))
    short_result = await _measure_turns(run, short_chats, repeats=repeats)
    await close_chats(short_chats)

    (long_chat,) = await open_chats([long_conversation])
    await asyncio.sleep(0.3)
    long_result = await _measure_turns(run, [long_chat] * turns, repeats=repeats)
    await close_chats([long_chat])
    return {
        "short": short_result,
        "long": long_result,
        "beyond_floor_ratio": long_result["beyond_floor_ms"]["p50"]
        / short_result["beyond_floor_ms"]["p50"],
        "cpu_ratio": long_result["cpu_ms_per_turn"] / short_result["cpu_ms_per_turn"],
    }


async def simultaneous(
    run: Run, *, conversations: int, model_ms: float, stream_ms: float
) -> dict[str, Any]:
    """Row 4: every conversation sends one message at the same moment; each turn makes two
    ``model_ms`` model calls, so the ideal wall time is two of them."""
    started_setup = time.perf_counter()
    chats = await new_chats(run, conversations)
    connect_s = time.perf_counter() - started_setup
    run.standin.control("POST", "reset")
    run.standin.control(
        "POST", "config", {"latency_ms": max(0.0, model_ms - stream_ms), "stream_ms": stream_ms}
    )
    done = asyncio.Event()
    peak = asyncio.create_task(_peak_backends(run, done))
    try:
        await step_counts(run, reset=True)
        cpu_before, started = server_cpu(run), time.perf_counter()
        results = await asyncio.gather(*(chat.turn(timeout=run.timeout) for chat in chats))
        finished = [r.started + r.seconds for r in results if r.ok]
        wall = (max(finished) if finished else time.perf_counter()) - started
        cpu, loop = server_cpu_since(run, cpu_before)
        elapsed = time.perf_counter() - started
        steps = await step_counts(run, reset=False)
    finally:
        done.set()
        run.standin.control("POST", "config", {"latency_ms": 0.0, "stream_ms": 0.0})
    await close_chats(chats)
    model = run.model_times()
    ideal = 2 * model_ms / 1000
    lost = [r for r in results if r.problem.startswith("lost")]
    failed = [r for r in results if not r.ok and not r.problem.startswith("lost")]
    return {
        "conversations": conversations,
        "setup_s": connect_s,
        "wall_s": wall,
        "ideal_s": ideal,
        "wall_over_ideal": wall / ideal,
        "lost": len(lost),
        "failed": len(failed),
        "problems": sorted({r.problem for r in lost + failed})[:5],
        "cpu_ms_per_turn": cpu * 1000 / len(results),
        "loop_cpu_ms_per_turn": loop * 1000 / len(results),
        "steps": _per_turn(steps, len(results)),
        "server_cores_busy": cpu / elapsed,
        "peak_db_connections": await peak,
        "server_peak_rss_mb": peak_rss_mb(run.server.pid),
        "turn_ms": spread([r.seconds * 1000 for r in results if r.ok]),
        "model_ms_per_turn": spread(
            [model[r.token]["model_ms"] for r in results if r.ok and r.token in model]
        ),
    }


async def _peak_backends(run: Run, done: asyncio.Event) -> int:
    """The most connections the app's database had at once, sampled every 0.1 s."""
    peak = 0
    while not done.is_set():
        peak = max(peak, await asyncio.to_thread(pgstats.client_backends, run.pg, run.dbid))
        await asyncio.sleep(0.1)
    return peak


async def profile(run: Run, *, turns: int, out: Path) -> profiling.Summary:
    """Sequential turns under py-spy (which slows the server: these turns are not timed)."""
    chats = await new_chats(run, turns)
    with profiling.Recording(run.server.pid, out):
        results = [await chat.turn(timeout=run.timeout) for chat in chats]
    await close_chats(chats)
    _require(results, "profiled turns", run.server)
    return profiling.summarize(out)
