"""Server CPU per step of a turn, measured inside daphne by each thread's own CPU clock.

``python -m bench.steps <daphne arguments>`` runs daphne as ``python -m daphne`` would, with the
functions in ``STEPS`` wrapped: each call adds the CPU time its thread spent inside it
(``time.thread_time``) and one call to its step. Unlike a sampling profiler, nothing is missed
or guessed: py-spy's GIL samples on a busy two-core machine counted about a third of the
server's CPU and attributed it unevenly between threads. Steps nest, so a step's time includes
the steps it calls.

The benchmark drives it with signals: ``SIGUSR2`` zeroes the counts, ``SIGUSR1`` writes them as
JSON to ``BENCH_STEPS_FILE`` (``{step: [cpu_seconds, calls]}``). The wrappers cost about a
microsecond per call, so a run with ``--steps`` is measured apart from the others.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

# module:qualified name. Every one must exist: a step renamed in the app fails the run here
# instead of vanishing from the table.
STEPS = (
    "chat.live.access:SessionBound.checked_run",
    "chat.live.sessions:session_check",
    "chat.live.intake:admission_read",
    "chat.live.intake:turn_start",
    "chat.live.model_history:model_history",
    "chat.engine.loop:run_turn",
    "chat.engine.loop:_Turn._call",
    "chat.engine.bedrock:BedrockModel._call",
    "chat.engine.stream:read_stream",
    "chat.engine.toolcalls:ToolCallRunner.answer",
    "chat.tools.orders:GetOrderById.run",
    "chat.live.writes:step_write",
    "chat.live.turns:_finish",
    "chat.live.emitter:GroupEmitter.__call__",
    "chat.live.frames:frame_parse",
    "django.db.backends.utils:CursorWrapper.execute",
    "django.db.backends.base.base:BaseDatabaseWrapper.ensure_connection",
    "django.db.backends.base.base:BaseDatabaseWrapper.close",
    "logging:Logger._log",
)

# Re-entrant: the signal handlers run on the main thread, perhaps while its own step holds it.
_lock = threading.RLock()
_totals: dict[str, list[float]] = {}


def _timed[**P, R](function: Callable[P, R], step: str) -> Callable[P, R]:
    @functools.wraps(function)
    def timed(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            spent = time.thread_time() - started
            with _lock:
                total = _totals.setdefault(step, [0.0, 0])
                total[0] += spent
                total[1] += 1

    return timed


def resolve(step: str) -> tuple[ModuleType, Any, str, Callable[..., Any]]:
    """The module, the object holding the function (the module or a class), its name, and the
    function of ``module:qualified.name``.

    Raises: ``LookupError`` for a step that does not exist or is not a plain function (a
    generator or coroutine would be timed only until its first pause).
    """
    module_name, _, qualified = step.partition(":")
    module = importlib.import_module(module_name)
    *path, name = qualified.split(".")
    owner: Any = module
    for part in path:
        owner = getattr(owner, part, None)
    function = getattr(owner, name, None)
    if not inspect.isfunction(function):
        raise LookupError(f"{step} is not a function any more: update bench/steps.py")
    if inspect.isgeneratorfunction(function) or inspect.iscoroutinefunction(function):
        raise LookupError(f"{step} pauses: its thread CPU cannot be timed by a wrapper")
    return module, owner, name, function


def install(steps: tuple[str, ...] = STEPS) -> None:
    """Wraps each step where it is defined and wherever a module imported it by name.

    Raises: ``LookupError`` (``resolve``), before anything is wrapped.
    """
    for step, (module, owner, name, function) in [(step, resolve(step)) for step in steps]:
        timed = _timed(function, step)
        setattr(owner, name, timed)
        if owner is not module:
            continue
        # ``from module import function`` elsewhere holds the original.
        for other in list(sys.modules.values()):
            namespace = getattr(other, "__dict__", None)
            if isinstance(namespace, dict) and other is not sys.modules[__name__]:
                for key, value in list(namespace.items()):
                    if value is function:
                        namespace[key] = timed


def _write(*_: object) -> None:
    with _lock:
        snapshot = {step: list(total) for step, total in _totals.items()}
    path = os.environ["BENCH_STEPS_FILE"]
    with open(f"{path}.tmp", "w") as out:
        json.dump(snapshot, out)
    os.replace(f"{path}.tmp", path)  # the benchmark never reads half a file


def _reset(*_: object) -> None:
    with _lock:
        _totals.clear()


def main() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anycompany.settings")
    django.setup()
    application = sys.argv[-1].partition(":")[0]
    importlib.import_module(application)  # every module a turn uses is loaded now
    install()
    signal.signal(signal.SIGUSR1, _write)
    signal.signal(signal.SIGUSR2, _reset)
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
