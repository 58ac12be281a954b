"""Makes ``manage.py test`` run the pytest suite, as pytest-django documents."""

import argparse
from typing import Any


class PytestTestRunner:
    def __init__(
        self, verbosity: int = 1, failfast: bool = False, keepdb: bool = False, **kwargs: Any
    ) -> None:
        self.verbosity = verbosity
        self.failfast = failfast
        self.keepdb = keepdb

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--keepdb", action="store_true", help="Preserve the test database between runs."
        )

    def run_tests(self, test_labels: list[str], **kwargs: Any) -> int:
        import pytest

        # The same suite and settings as running pytest directly.
        argv = ["--ds=tests.settings"]
        if self.verbosity == 0:
            argv.append("--quiet")
        elif self.verbosity >= 2:
            argv.append("-" + "v" * (self.verbosity - 1))
        if self.failfast:
            argv.append("--exitfirst")
        if self.keepdb:
            argv.append("--reuse-db")
        argv.extend(test_labels)
        return pytest.main(argv)
