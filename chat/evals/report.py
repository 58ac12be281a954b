"""Results of an eval run: per-case tables, a summary, a side-by-side comparison, JSON, JUnit XML.

A case passes when every one of its runs passes (``--repeat``); a case that passed some runs
and failed others is reported as flaky. Tool-call accuracy is expected calls made / (expected
calls + calls that should not have been made). Cost is the estimate at the configured
``BEDROCK_PRICE_*`` settings; latencies are the model's (as the engine records them) and the
whole turn's (wall clock, engine and tools included).
"""

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from xml.etree import ElementTree

from chat.evals import engine
from chat.evals.cases import Case
from chat.evals.runner import CaseObservation
from chat.evals.scoring import ToolScore, Verdict

TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")
_MICRO_DOLLAR = Decimal("0.000001")


@dataclass
class Run:
    """One play of one case."""

    observation: CaseObservation
    verdict: Verdict

    def tokens(self) -> tuple[int, int, int, int]:
        calls = [c for t in self.observation.turns for c in t.model_calls]
        return (
            sum(c.input_tokens for c in calls),
            sum(c.output_tokens for c in calls),
            sum(c.cache_read_tokens for c in calls),
            sum(c.cache_write_tokens for c in calls),
        )

    def cost(self) -> Decimal:
        tokens_in, tokens_out, cache_read, cache_write = self.tokens()
        return engine.cost(
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
        )

    def confirmations(self) -> int:
        return sum(len(t.confirmations) for t in self.observation.turns)


@dataclass
class CaseResult:
    case: Case
    runs: list[Run] = field(default_factory=list)

    @property
    def passed_runs(self) -> int:
        return sum(run.verdict.passed for run in self.runs)

    @property
    def passed(self) -> bool:
        return self.passed_runs == len(self.runs)

    @property
    def flaky(self) -> bool:
        return 0 < self.passed_runs < len(self.runs)

    def result_text(self) -> str:
        if len(self.runs) == 1:
            return "PASS" if self.passed else "FAIL"
        text = f"{self.passed_runs}/{len(self.runs)}"
        return text + (" flaky" if self.flaky else "")


@dataclass
class VariantResult:
    label: str
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(case.passed for case in self.cases)

    def runs(self) -> list[Run]:
        return [run for case in self.cases for run in case.runs]

    def summary(self) -> dict[str, Any]:
        runs = self.runs()
        tools = ToolScore()
        for run in runs:
            tools.add(run.verdict.tools)
        latencies = [c.latency_ms for r in runs for t in r.observation.turns for c in t.model_calls]
        turn_ms = [round(t.seconds * 1000) for r in runs for t in r.observation.turns]
        passed = sum(case.passed for case in self.cases)
        return {
            "cases": len(self.cases),
            "passed": passed,
            "pass_rate": passed / len(self.cases) if self.cases else None,
            "flaky": sum(case.flaky for case in self.cases),
            "runs": len(runs),
            "tool_accuracy": tools.accuracy,
            "tool_calls": {
                "matched": tools.matched,
                "expected": tools.expected,
                "wrong": tools.wrong,
            },
            "leaks": sum(len(run.verdict.leaks) for run in runs),
            "confirmations": sum(run.confirmations() for run in runs),
            "replay_mismatches": sum(bool(run.verdict.replay_mismatch) for run in runs),
            "tokens": token_totals(runs),
            "cost_usd": str(sum((run.cost() for run in runs), Decimal(0)).quantize(_MICRO_DOLLAR)),
            "model_latency_ms": _percentiles(latencies),
            "turn_latency_ms": _percentiles(turn_ms),
        }


def token_totals(runs: list[Run]) -> dict[str, int]:
    totals = dict.fromkeys(TOKEN_KINDS, 0)
    for run in runs:
        for kind, count in zip(TOKEN_KINDS, run.tokens(), strict=True):
            totals[kind] += count
    return totals


def _percentiles(values: list[int]) -> dict[str, float | None]:
    return {"p50": engine.percentile(values, 0.5), "p95": engine.percentile(values, 0.95)}


# --- Text --------------------------------------------------------------------------------------


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def _pair(values: dict[str, float | None]) -> str:
    return f"{_ms(values['p50'])} / {_ms(values['p95'])}"


def summary_lines(summary: dict[str, Any]) -> list[tuple[str, str]]:
    tools, tokens = summary["tool_calls"], summary["tokens"]
    cached = tokens["cache_read"] + tokens["cache_write"]
    flaky = f", {summary['flaky']} flaky" if summary["flaky"] else ""
    cases = f"{summary['passed']}/{summary['cases']} cases{flaky}"
    judged = tools["expected"] + tools["wrong"]
    return [
        ("pass rate", f"{_percent(summary['pass_rate'])} ({cases})"),
        (
            "tool-call accuracy",
            f"{_percent(summary['tool_accuracy'])} ({tools['matched']}/{judged})",
        ),
        ("leaks", str(summary["leaks"])),
        ("confirmations asked", str(summary["confirmations"])),
        ("tokens in / out / cached", f"{tokens['input']:,} / {tokens['output']:,} / {cached:,}"),
        ("estimated cost", f"${Decimal(summary['cost_usd']):.4f}"),
        ("model latency p50 / p95", _pair(summary["model_latency_ms"])),
        ("turn latency p50 / p95", _pair(summary["turn_latency_ms"])),
    ]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _case_row(case: CaseResult) -> list[str]:
    tools = ToolScore()
    for run in case.runs:
        tools.add(run.verdict.tools)
    tokens = token_totals(case.runs)
    return [
        case.case.name,
        case.result_text(),
        f"{tools.matched}/{tools.expected + tools.wrong}" if tools.accuracy is not None else "-",
        str(sum(run.confirmations() for run in case.runs)),
        str(sum(len(run.verdict.leaks) for run in case.runs)),
        f"{tokens['input'] + tokens['output']:,}",
        f"${sum((r.cost() for r in case.runs), Decimal(0)):.4f}",
    ]


def variant_text(result: VariantResult) -> str:
    """The per-case table, every failure with its reason, and the summary."""
    rows = [_case_row(case) for case in result.cases]
    lines = [f"Model: {result.label}", ""]
    lines += _table(["case", "result", "tools", "confirms", "leaks", "tokens", "est. cost"], rows)
    failures = []
    for case in result.cases:
        for number, run in enumerate(case.runs, start=1):
            if run.verdict.passed:
                continue
            which = f" (run {number})" if len(case.runs) > 1 else ""
            failures.append(f"  {case.case.name}{which} — {case.case.path}")
            failures += [f"    - {reason}" for reason in run.verdict.failures]
    if failures:
        lines += ["", "Failures:", *failures]
    summary = result.summary()
    lines += ["", "Summary:"]
    lines += [f"  {label}: {value}" for label, value in summary_lines(summary)]
    if summary["replay_mismatches"]:
        lines.append(
            f"  replay mismatches: {summary['replay_mismatches']} (the engine no longer sends "
            "the recorded requests; see the failures)"
        )
    return "\n".join(lines)


def comparison_text(a: VariantResult, b: VariantResult) -> str:
    """Both variants' case results and summaries side by side, then where they disagree."""
    b_cases = {c.case.name: c for c in b.cases}
    rows = [[c.case.name, c.result_text(), b_cases[c.case.name].result_text()] for c in a.cases]
    lines = ["Comparison", "", *_table(["case", a.label, b.label], rows), ""]
    summary_rows = [
        [label, value, other]
        for (label, value), (_, other) in zip(
            summary_lines(a.summary()), summary_lines(b.summary()), strict=True
        )
    ]
    lines += _table(["", a.label, b.label], summary_rows)
    only_a = [c.case.name for c in a.cases if c.passed and not b_cases[c.case.name].passed]
    only_b = [c.case.name for c in a.cases if not c.passed and b_cases[c.case.name].passed]
    if only_a:
        lines += ["", f"Pass with {a.label} only: {', '.join(only_a)}"]
    if only_b:
        lines += ["", f"Pass with {b.label} only: {', '.join(only_b)}"]
    return "\n".join(lines)


# --- Files -----------------------------------------------------------------------------------


def _turn_json(turn: Any) -> dict[str, Any]:
    return {
        "say": turn.say,
        "tool_calls": turn.tool_calls,
        "replies": turn.replies,
        "notices": turn.notices,
        "confirmations": turn.confirmations,
        "answered": turn.answered,
        "outcome": turn.outcome,
        "error_kind": turn.error_kind,
        "model_calls": len(turn.model_calls),
        "seconds": round(turn.seconds, 4),
    }


def _run_json(run: Run) -> dict[str, Any]:
    seen = run.observation
    return {
        "passed": run.verdict.passed,
        "failures": run.verdict.failures,
        "leaks": run.verdict.leaks,
        "tokens": token_totals([run]),
        "cost_usd": str(run.cost()),
        "turns": [_turn_json(turn) for turn in seen.turns],
        # Only what changed, so a reader sees what the case did to the shop.
        "final_orders": {
            order: status
            for order, status in seen.final_orders.items()
            if seen.initial_orders.get(order) != status
        },
        "conversation": seen.conversation_status,
    }


def _case_json(case: CaseResult) -> dict[str, Any]:
    return {
        "name": case.case.name,
        "file": str(case.case.path),
        "passed": case.passed,
        "passed_runs": case.passed_runs,
        "flaky": case.flaky,
        "runs": [_run_json(run) for run in case.runs],
    }


def results_json(variants: list[VariantResult]) -> str:
    data = {
        "passed": all(v.passed for v in variants),
        "variants": [
            {
                "label": v.label,
                "passed": v.passed,
                "summary": v.summary(),
                "cases": [_case_json(case) for case in v.cases],
            }
            for v in variants
        ],
    }
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


def results_junit(variants: list[VariantResult]) -> str:
    """JUnit XML: a test suite per variant, a test case per eval case, its reasons as failure."""
    suites = ElementTree.Element("testsuites", name="evals")
    for variant in variants:
        failed = [c for c in variant.cases if not c.passed]
        seconds = sum(t.seconds for r in variant.runs() for t in r.observation.turns)
        suite = ElementTree.SubElement(
            suites,
            "testsuite",
            name=f"evals [{variant.label}]",
            tests=str(len(variant.cases)),
            failures=str(len(failed)),
            errors="0",
            time=f"{seconds:.3f}",
        )
        for case in variant.cases:
            element = ElementTree.SubElement(
                suite,
                "testcase",
                classname=f"evals.{variant.label}",
                name=case.case.name,
                file=str(case.case.path),
                time=f"{sum(t.seconds for r in case.runs for t in r.observation.turns):.3f}",
            )
            if not case.passed:
                reasons = [f for r in case.runs for f in r.verdict.failures]
                first = reasons[0] if reasons else ""
                message = f"{case.passed_runs}/{len(case.runs)} runs passed: {first}"
                failure = ElementTree.SubElement(element, "failure", message=message[:500])
                failure.text = "\n".join(reasons)
    ElementTree.indent(suites)
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
