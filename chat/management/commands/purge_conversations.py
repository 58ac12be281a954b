"""Deletes conversations older than the retention period (run it daily, e.g. from a scheduler)."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.staff.retention import conversations_purge


class Command(BaseCommand):
    help = (
        "Deletes conversations whose last activity is older than CONVERSATION_RETENTION_DAYS "
        "(or --days), with their messages, turns, model calls, pending actions and feedback, "
        "and the customers' daily token counts of those days. "
        "Orders and order events are never touched. 0 days keeps everything."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="Override CONVERSATION_RETENTION_DAYS for this run.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Only print what would be deleted."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = settings.CONVERSATION_RETENTION_DAYS if options["days"] is None else options["days"]
        if days < 0:
            raise CommandError("--days must be 0 or more.")
        if days == 0:
            self.stdout.write("Retention is off (0 days): nothing deleted.")
            return
        counts = conversations_purge(older_than_days=days, dry_run=options["dry_run"])
        summary = ", ".join(f"{count} {name}" for name, count in counts.items())
        verb = "Would delete" if options["dry_run"] else "Deleted"
        self.stdout.write(f"{verb} (last activity over {days} days ago): {summary}.")
