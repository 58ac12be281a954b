"""``bench.steps``, the benchmark's CPU-per-step counter: what it counts, and that every step it
names still exists in the app (a renamed function fails here, not silently in a bench run)."""

import os
import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from bench import steps
from bench.stack import cpu_seconds


@pytest.fixture
def sample_modules() -> Iterator[tuple[types.ModuleType, types.ModuleType]]:
    source = types.ModuleType("bench_steps_source")
    exec(  # noqa: S102 - a throwaway module for the test
        "import time\n"
        "def busy(seconds):\n"
        "    end = time.thread_time() + seconds\n"
        "    while time.thread_time() < end:\n"
        "        pass\n"
        "    return 'done'\n"
        "def numbers():\n"
        "    yield 1\n"
        "class Worker:\n"
        "    def work(self):\n"
        "        return busy(0.002)\n",
        source.__dict__,
    )
    user = types.ModuleType("bench_steps_user")
    user.busy = source.busy  # type: ignore[attr-defined]  # as ``from source import busy``
    sys.modules[source.__name__] = source
    sys.modules[user.__name__] = user
    steps._reset()
    yield source, user
    del sys.modules[source.__name__], sys.modules[user.__name__]
    steps._reset()


def test_a_step_counts_its_calls_and_its_threads_cpu_wherever_it_was_imported(
    sample_modules: tuple[types.ModuleType, types.ModuleType],
) -> None:
    source, user = sample_modules
    steps.install(("bench_steps_source:busy", "bench_steps_source:Worker.work"))

    assert user.busy(0.01) == "done"
    source.Worker().work()
    time.sleep(0.05)  # waiting is not CPU

    seconds, calls = steps._totals["bench_steps_source:busy"]
    assert calls == 2
    assert 0.012 <= seconds < 0.05
    work_seconds, work_calls = steps._totals["bench_steps_source:Worker.work"]
    assert work_calls == 1
    assert 0.002 <= work_seconds < 0.03  # nested steps: work includes its busy()


def test_a_missing_or_pausing_step_is_refused_before_anything_is_wrapped(
    sample_modules: tuple[types.ModuleType, types.ModuleType],
) -> None:
    source, _ = sample_modules
    original = source.busy

    with pytest.raises(LookupError, match="not a function any more"):
        steps.install(("bench_steps_source:busy", "bench_steps_source:gone"))
    with pytest.raises(LookupError, match="pauses"):
        steps.install(("bench_steps_source:numbers",))

    assert source.busy is original


@pytest.mark.parametrize("step", steps.STEPS)
def test_every_step_the_benchmark_times_exists_in_the_app(
    step: str, django_db_blocker: Any
) -> None:
    # pytest-django swaps ensure_connection for a blocker outside this block.
    with django_db_blocker.unblock():
        module, owner, name, function = steps.resolve(step)

        assert getattr(owner, name) is function
    assert module.__name__ == step.partition(":")[0]


def test_a_threads_cpu_is_part_of_its_processes() -> None:
    pid = os.getpid()
    busy_until = time.thread_time() + 0.05
    while time.thread_time() < busy_until:
        pass

    main = cpu_seconds(pid, thread=pid)
    assert 0.05 <= main <= cpu_seconds(pid)
