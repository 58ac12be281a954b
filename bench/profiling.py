"""Where the server's CPU goes: py-spy attached to daphne, samples that hold the GIL.

``Recording`` runs ``py-spy record --gil --nolineno --format raw`` (collapsed stacks, one line per
distinct stack with its sample count) while the caller drives turns; ``summarize`` turns the
stacks into the top functions by self and total samples, and into shares per library. A sample
counts for the library of its innermost frame outside the standard library, so ``json`` called
by the ORM is the ORM's time.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import sysconfig
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.stack import ROOT

APP_PACKAGES = ("anycompany", "chat", "orders")
# (group, path prefixes) in order; the first match wins. py-spy names files relative to the
# sys.path entry they came from ("django/db/models/query.py", "json/decoder.py").
_GROUPS = [
    ("Django ORM + psycopg", ("django/db/", "psycopg/", "psycopg_binary/", "psycopg_pool/")),
    ("channels_redis + redis-py", ("channels_redis/", "redis/", "msgpack/")),
    ("botocore + urllib3", ("botocore/", "boto3/", "urllib3/", "s3transfer/")),
    ("channels + asgiref", ("channels/", "asgiref/")),
    ("daphne + twisted + autobahn", ("daphne/", "twisted/", "autobahn/", "txaio/")),
    ("Django (other)", ("django/",)),
    ("jsonschema", ("jsonschema/", "referencing/", "rpds/")),
]
_APP_FILES = tuple(f"({package}/" for package in APP_PACKAGES)
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*)\)$")


class ProfileError(RuntimeError):
    """py-spy is missing or could not attach; the message says what to do."""


def _group(filename: str) -> str | None:
    """The library a frame belongs to, or None for the standard library."""
    if filename.startswith("<"):
        return None  # frozen importlib and friends
    stdlib = sysconfig.get_paths()["stdlib"]
    if filename.startswith(f"{stdlib}/") and "site-packages" not in filename:
        return None
    path = filename
    for marker in ("site-packages/", f"{ROOT}/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    top = path.split("/", 1)[0].removesuffix(".py")
    if top in APP_PACKAGES:
        return "app code (" + ", ".join(APP_PACKAGES) + ")"
    for group, prefixes in _GROUPS:
        if path.startswith(prefixes):
            return group
    if top in sys.stdlib_module_names:
        return None
    return "other libraries"


class Recording:
    """``with Recording(pid, out):`` samples ``pid`` until the block ends."""

    def __init__(self, pid: int, out: Path, *, rate: int = 500) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            raise ProfileError("py-spy is not installed: make install (it is a dev dependency).")
        self.out = out
        self.command = [
            spy, "record", "--pid", str(pid), "--gil", "--nolineno", "--format", "raw",
            "--rate", str(rate), "--output", str(out),
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Recording:
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        process = self.process
        if process is None:
            return
        # py-spy writes its output when interrupted.
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        if not self.out.exists():
            raise ProfileError(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")


@dataclass
class Summary:
    samples: int
    groups: list[tuple[str, float]]
    self_top: list[tuple[str, float]]
    total_top: list[tuple[str, float]]
    app_top: list[tuple[str, float]]  # the app's own functions by total samples

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "by_library_percent": dict(self.groups),
            "top_self_percent": dict(self.self_top),
            "top_total_percent": dict(self.total_top),
            "app_total_percent": dict(self.app_top),
        }


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    filename = match.group("file")
    for marker in ("site-packages/", f"{ROOT}/", "python3.12/"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    return f"{match.group('function')} ({filename})"


def summarize(path: Path, *, top: int = 20) -> Summary:
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";")]
        matches = [_FRAME.match(frame) for frame in stack.split(";")]
        samples += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            total_counts[frame] += count
        group = next(
            (g for m in reversed(matches) if m and (g := _group(m.group("file"))) is not None),
            "standard library only",
        )
        groups[group] += count

    def percent(counter: Counter[str], limit: int) -> list[tuple[str, float]]:
        return [(name, 100 * n / max(1, samples)) for name, n in counter.most_common(limit)]

    app_counts = Counter(
        {name: n for name, n in total_counts.items() if any(a in name for a in _APP_FILES)}
    )
    return Summary(
        samples,
        percent(groups, 20),
        percent(self_counts, top),
        percent(total_counts, top),
        percent(app_counts, top),
    )
