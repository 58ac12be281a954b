"""Closes dead chat turns by hand: the servers do it by themselves; this is for operators."""

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from chat.live.recovery import stale_turns, turns_recover_interrupted


class Command(BaseCommand):
    help = (
        "Closes chat turns whose process died or lost the database (lease lapsed, or owner gone), "
        "repairs their stored history and tells the customer to send their message again. "
        "Running servers do this by themselves within seconds; use this when none is running, "
        "or --dry-run to see which turns are dead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--all",
            action="store_true",
            help="Close every running turn; only when no server process can be running turns.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="List the turns that would be closed, and change nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        older_than = timedelta(0) if options["all"] else None
        if options["dry_run"]:
            turns = stale_turns(older_than=older_than)
            now = timezone.now()
            for turn in turns:
                since = turn.lease_expires_at or turn.active_at
                lapsed = f"{(now - since).total_seconds():.0f} s ago" if since else "never"
                self.stdout.write(
                    f"{turn.pk} conversation {turn.conversation_id} owner {turn.owner or '-'} "
                    f"lease lapsed {lapsed}"
                )
            noun = "turn" if len(turns) == 1 else "turns"
            self.stdout.write(f"Would recover {len(turns)} {noun}.")
            return
        count = turns_recover_interrupted(older_than=older_than)
        noun = "turn" if count == 1 else "turns"
        self.stdout.write(f"Recovered {count} interrupted {noun}.")
