"""Plays the eval cases through the real chat engine and tools, on a throwaway demo database."""

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.evals import engine
from chat.evals.cases import CaseError, load_cases
from chat.evals.recording import RecordingError, recording_write
from chat.evals.report import comparison_text, results_json, results_junit, variant_text
from chat.evals.sandbox import SandboxError, throwaway_database
from chat.evals.suite import (
    MODEL_HELP,
    SHIPPED_PROMPT,
    Variant,
    is_model,
    model_normalized,
    variant_run,
)


class Command(BaseCommand):
    help = (
        "Plays eval cases (default: the evals/ directory) through the real chat engine and tools "
        "on a throwaway database holding only the demo data, against a model, a recording or "
        "two of them side by side. Prints a table per case and a summary, optionally writes "
        "JSON and JUnit XML, and exits non-zero when any case fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "paths", nargs="*", type=Path, help="Case files or directories (default: evals/)."
        )
        parser.add_argument(
            "--case",
            action="append",
            default=[],
            metavar="TEXT",
            help="Only the cases whose name contains TEXT (repeatable).",
        )
        parser.add_argument(
            "--model", help=f"The model: {MODEL_HELP}. Default: the one CHAT_MODEL configures."
        )
        parser.add_argument(
            "--prompt-file",
            type=Path,
            metavar="FILE",
            help="A system prompt to use instead of the shipped one (the line naming the "
            "signed-in customer is still added).",
        )
        parser.add_argument(
            "--replay",
            type=Path,
            metavar="RECORDING",
            help="Replay a recording offline (same as --model replay:RECORDING).",
        )
        parser.add_argument(
            "--record",
            type=Path,
            metavar="RECORDING",
            help="Save every model request and response of this run, for --replay.",
        )
        parser.add_argument(
            "--compare",
            nargs=2,
            metavar=("A", "B"),
            help="Run the cases with A and with B and print them side by side. Each is a model "
            f"or a system prompt file for --model ({SHIPPED_PROMPT!r}: the shipped prompt).",
        )
        parser.add_argument(
            "--repeat",
            type=int,
            default=1,
            metavar="N",
            help="Play every case N times and report the cases that pass only sometimes.",
        )
        parser.add_argument(
            "--json", type=Path, dest="json_path", metavar="FILE", help="Write the results as JSON."
        )
        parser.add_argument(
            "--junit", type=Path, metavar="FILE", help="Write the results as JUnit XML."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        variants = self._variants(options)
        if options["repeat"] < 1:
            raise CommandError("--repeat must be 1 or more.")
        if options["record"] and (
            len(variants) > 1 or not variants[0].model.startswith(("demo", "bedrock:"))
        ):
            raise CommandError(
                "--record records one live model: use it with --model demo or bedrock:<id>, "
                "without --compare."
            )
        paths = options["paths"] or [Path(settings.BASE_DIR) / "evals"]
        try:
            cases = load_cases(paths, known_tools=set(engine.tool_names()))
        except CaseError as error:
            raise CommandError(f"Invalid eval cases:\n{error}") from None
        if options["case"]:
            cases = [c for c in cases if any(text in c.name for text in options["case"])]
            if not cases:
                raise CommandError(
                    f"No case name contains {' or '.join(map(repr, options['case']))}."
                )

        results = []
        try:
            with throwaway_database():
                for variant in variants:
                    result, recorded = variant_run(
                        cases, variant, repeat=options["repeat"], record=bool(options["record"])
                    )
                    results.append(result)
                    if options["record"]:
                        recording_write(options["record"], model=variant.model, cases=recorded)
        except (SandboxError, RecordingError, ValueError, ImproperlyConfigured, OSError) as error:
            raise CommandError(str(error)) from None

        for result in results:
            self.stdout.write(variant_text(result) + "\n")
        if len(results) == 2:
            self.stdout.write(comparison_text(*results) + "\n")
        for path, text in ((options["json_path"], results_json), (options["junit"], results_junit)):
            if path is not None:
                try:
                    path.write_text(text(results), encoding="utf-8")
                except OSError as error:
                    raise CommandError(f"Cannot write {path}: {error.strerror}.") from None
        if options["record"]:
            self.stdout.write(f"Recorded {len(cases)} case(s) to {options['record']}.\n")

        failed = [(r.label, c.case.name) for r in results for c in r.cases if not c.passed]
        if failed:
            names = ", ".join(
                f"{name} [{label}]" if len(results) > 1 else name for label, name in failed
            )
            raise CommandError(f"{len(failed)} eval case(s) failed: {names}")
        self.stdout.write(self.style.SUCCESS(f"All {len(cases)} eval case(s) passed."))

    def _variants(self, options: dict[str, Any]) -> list[Variant]:
        model = options["model"]
        if options["replay"] is not None:
            if model is not None:
                raise CommandError("Use either --model or --replay, not both.")
            model = f"replay:{options['replay']}"
        if model is None:
            model = "demo" if settings.CHAT_MODEL == "demo" else "bedrock"
        try:
            model = model_normalized(model)
        except ValueError as error:
            raise CommandError(str(error)) from None
        prompt = options["prompt_file"]
        if not options["compare"]:
            return [Variant(model, prompt)]
        variants = []
        for side in options["compare"]:
            if is_model(side):
                variants.append(Variant(model_normalized(side), prompt))
            elif side == SHIPPED_PROMPT:
                variants.append(Variant(model))
            elif Path(side).is_file():
                variants.append(Variant(model, Path(side)))
            else:
                raise CommandError(
                    f"--compare {side!r} is neither a model ({MODEL_HELP}) nor a prompt file."
                )
        if variants[0].label == variants[1].label:
            raise CommandError(
                f"--compare needs two different things to compare, got {variants[0].label} twice."
            )
        return variants
