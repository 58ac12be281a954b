"""Closes chat turns that a restart left running (run it with the deploy's migrations)."""

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from chat.live.recovery import stale_after, turns_recover_interrupted


class Command(BaseCommand):
    help = (
        "Marks chat turns left running by a restart as interrupted, repairs their stored history "
        "and tells the customer to send their message again. By default only turns without "
        "progress for longer than a turn can take are touched, so turns still running in other "
        "processes during a rolling deploy are left alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--all",
            action="store_true",
            help="Close every running turn; only when no other process can be running turns.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        older_than = timedelta(0) if options["all"] else stale_after()
        count = turns_recover_interrupted(older_than=older_than)
        noun = "turn" if count == 1 else "turns"
        self.stdout.write(f"Recovered {count} interrupted {noun}.")
