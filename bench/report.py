"""The benchmark's report: each measure's median and spread over the runs, and a text rendering."""

from __future__ import annotations

import statistics
from typing import Any

# (key, label, path into a run's result)
MEASURES: list[tuple[str, str, tuple[str, ...]]] = [
    ("floor_p50_ms", "floor: the turn's 2 model calls via boto3, p50 (ms)", ("floor_ms", "p50")),
    ("turn_p50_ms", "1. turn as the client sees it, p50 (ms)", ("sequential", "turn_ms", "p50")),
    ("beyond_p50_ms", "1. server time beyond the model calls, p50 (ms)",
     ("sequential", "beyond_floor_ms", "p50")),
    ("beyond_p99_ms", "1. server time beyond the model calls, p99 (ms)",
     ("sequential", "beyond_floor_ms", "p99")),
    ("beyond_standin_p50_ms", "1.   beyond the stand-in's own time for those calls, p50 (ms)",
     ("sequential", "beyond_standin_ms", "p50")),
    ("frames", "1.   websocket frames to the sender's socket per turn",
     ("sequential", "frames_per_turn")),
    ("statements", "2. SQL statements per one-tool turn", ("sequential", "sql", "statements")),
    ("round_trips", "2.   sent by the server (round trips)", ("sequential", "sql", "round_trips")),
    ("tx", "2.   BEGIN/COMMIT/SAVEPOINT/RELEASE", ("sequential", "sql", "transaction_control")),
    ("select_1", "2.   SELECT 1 health checks", ("sequential", "sql", "select_1")),
    ("fk", "2.   deferred FK checks", ("sequential", "sql", "fk_checks")),
    ("exec_ms", "2.   server-side execution (ms)", ("sequential", "sql", "server_exec_ms")),
    ("cpu_seq", "3. server CPU per turn, sequential (ms)", ("sequential", "cpu_ms_per_turn")),
    ("loop_seq", "3.   of which on the event loop's thread (ms)",
     ("sequential", "loop_cpu_ms_per_turn")),
    ("cpu_conc", "3. server CPU per turn, concurrent (ms)", ("concurrent", "cpu_ms_per_turn")),
    ("loop_conc", "3.   of which on the event loop's thread (ms)",
     ("concurrent", "loop_cpu_ms_per_turn")),
    ("turns_per_s", "3. turns/s one process completes", ("concurrent", "turns_per_s")),
    ("server_cores", "3.   server cores busy meanwhile", ("concurrent", "server_cores_busy")),
    ("wall_over_ideal", "4. simultaneous conversations: wall ÷ ideal",
     ("simultaneous", "wall_over_ideal")),
    ("wall_s", "4.   wall time (s)", ("simultaneous", "wall_s")),
    ("lost", "4. lost turns", ("simultaneous", "lost")),
    ("failed", "4. failed turns (wrong or refused reply)", ("simultaneous", "failed")),
    ("cpu_simultaneous", "4.   server CPU per turn (ms)", ("simultaneous", "cpu_ms_per_turn")),
    ("loop_simultaneous", "4.     of which on the event loop's thread (ms)",
     ("simultaneous", "loop_cpu_ms_per_turn")),
    ("cores_simultaneous", "4.   server cores busy meanwhile",
     ("simultaneous", "server_cores_busy")),
    ("peak_db", "4.   most database connections at once", ("simultaneous", "peak_db_connections")),
    ("rss", "4.   server's peak memory (MiB)", ("simultaneous", "server_peak_rss_mb")),
    ("short_ms", "5. beyond the floor at short history, p50 (ms)",
     ("history", "short", "beyond_floor_ms", "p50")),
    ("long_ms", "5. beyond the floor at long history, p50 (ms)",
     ("history", "long", "beyond_floor_ms", "p50")),
    ("history_ratio", "5. long ÷ short, time beyond the floor", ("history", "beyond_floor_ratio")),
    ("history_cpu_ratio", "5. long ÷ short, server CPU per turn", ("history", "cpu_ratio")),
]  # fmt: skip


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {}
    for key, label, path in MEASURES:
        values = [v for v in (_dig(run, path) for run in runs) if isinstance(v, int | float)]
        if values:
            summary[key] = {
                "label": label,
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "runs": values,
            }
    return summary


def render(report: dict[str, Any]) -> str:
    lines = [
        f"{report['date']}  revision {report['revision']}  {report['machine']}",
        f"settings: {report['settings']}",
        "",
        f"{'measure':<58} {'median':>9}  (min–max of {len(report['runs'])} runs)",
    ]
    for entry in report["summary"].values():
        lines.append(
            f"{entry['label']:<58} {entry['median']:>9.2f}  ({entry['min']:.2f}–{entry['max']:.2f})"
        )
    for number, run in enumerate(report["runs"]):
        lines.append(
            f"run {number}: load {run['load_before']} → {run['load_after']}; "
            f"server log: {run['server_log']['errors']} errors, "
            f"{run['server_log']['warnings']} warnings, "
            f"{run['server_log']['layer_drops']} group sends dropped over capacity"
        )
        lines += [f"    {message}" for message in run["server_log"]["commonest"]]
        lines += [
            f"    {key} failed: {value['error'][:300]}"
            for key, value in run.items()
            if isinstance(value, dict) and "error" in value
        ]
        if "wall_s" in run.get("simultaneous", {}):
            s = run["simultaneous"]
            lines.append(
                f"    row 4: {s['conversations']} conversations, wall {s['wall_s']:.1f} s "
                f"(ideal {s['ideal_s']:.1f} s), lost {s['lost']}, failed {s['failed']} "
                f"{s['problems']}"
            )
        if "short" in run.get("history", {}):
            h = run["history"]
            lines.append(
                f"    row 5: history {h['short']['history_messages']:.0f} vs "
                f"{h['long']['history_messages']:.0f} messages; messages sent to the model "
                f"{h['short']['messages_sent_to_model']:.0f} vs "
                f"{h['long']['messages_sent_to_model']:.0f}; CPU/turn "
                f"{h['short']['cpu_ms_per_turn']:.0f} vs {h['long']['cpu_ms_per_turn']:.0f} ms"
            )
    last = next(
        (run for run in reversed(report["runs"]) if "sql" in run.get("sequential", {})), None
    )
    if last is not None:
        lines += ["", "top statements per turn (last run):"]
        lines += [
            f"  {entry['calls_per_turn']:6.2f}  {entry['query'][:110]}"
            for entry in last["sequential"]["sql"]["top"]
        ]
    for key, what in (("sequential", "sequential turn"), ("simultaneous", "turn of row 4")):
        steps = next(
            (run[key]["steps"] for run in report["runs"] if run.get(key, {}).get("steps")), None
        )
        if steps is not None:
            lines += ["", f"server CPU per {what} by step (bench.steps, first run; steps nest):"]
            lines += [
                f"  {entry['cpu_ms']:7.3f} ms  {entry['calls']:6.2f} calls  {step}"
                for step, entry in steps.items()
            ]
    profile = next(
        (run["profile"] for run in report["runs"] if "samples" in run.get("profile", {})), None
    )
    if profile is not None:
        lines += ["", f"profile ({profile['samples']} samples holding the GIL), by library:"]
        lines += [f"  {v:5.1f} %  {k}" for k, v in profile["by_library_percent"].items()]
        lines += ["top functions by self time:"]
        lines += [f"  {v:5.1f} %  {k}" for k, v in profile["top_self_percent"].items()]
        lines += ["the app's functions by total time:"]
        lines += [f"  {v:5.1f} %  {k}" for k, v in profile["app_total_percent"].items()]
        lines += ["top functions by total time:"]
        lines += [f"  {v:5.1f} %  {k}" for k, v in profile["top_total_percent"].items()]
    return "\n".join(lines)
