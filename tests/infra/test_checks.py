"""cdk-nag's AWS Solutions checks and cfn-lint both pass on the synthesized templates."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.conftest import INFRA_DIR, Synthesis

pytestmark = pytest.mark.infra

TRIVIAL_REASONS = {"n/a", "na", "todo", "ok", "false positive", "not needed", "suppressed"}


def test_cdk_nag_reports_no_unacknowledged_findings(synthesis: Synthesis) -> None:
    # Synthesis itself raises on an unacknowledged finding; the report confirms it ran.
    (report,) = [
        r for r in synthesis.validation_report["pluginReports"] if r["pluginName"] == "AwsSolutions"
    ]
    assert report["conclusion"] == "success"
    assert report["violations"] == []


def test_every_acknowledgement_states_a_reviewable_reason(synthesis: Synthesis) -> None:
    nag = [
        (path, rule, reason)
        for path, rule, reason in synthesis.acknowledgements
        if rule.startswith("AwsSolutions::")
    ]
    assert nag
    for path, rule, reason in nag:
        assert reason.strip().lower().rstrip(".") not in TRIVIAL_REASONS, (path, rule)
        assert len(reason.split()) >= 10, (path, rule, reason)
        assert reason.endswith("."), (path, rule, reason)


def test_every_acknowledgement_matches_a_finding(synthesis: Synthesis) -> None:
    (report,) = [
        r for r in synthesis.validation_report["pluginReports"] if r["pluginName"] == "AwsSolutions"
    ]
    used = {(s["acknowledgedAt"], s["acknowledgedId"]) for s in report["suppressedViolations"]}
    declared = {
        (path, rule)
        for path, rule, _ in synthesis.acknowledgements
        if rule.startswith("AwsSolutions::")
    }
    assert declared == used


def test_acknowledge_refuses_a_trivial_reason() -> None:
    from anycompany_infra.nag import acknowledge
    from aws_cdk import App

    with pytest.raises(ValueError, match="AwsSolutions-S1"):
        acknowledge(App(), "AwsSolutions-S1", "Not needed.")


def test_cfn_lint_finds_no_errors_in_the_templates(synthesis: Synthesis) -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    templates = sorted(str(p) for p in synthesis.outdir.glob("*.template.json"))
    assert len(templates) == 4
    result = subprocess.run(
        [str(cfn_lint), "--format", "json", *templates],
        capture_output=True,
        text=True,
        check=False,
        cwd=INFRA_DIR,
        timeout=240,
    )
    findings = json.loads(result.stdout or "[]")
    errors = [f for f in findings if f["Level"] == "Error"]
    assert errors == [], json.dumps(errors, indent=2)
    assert not result.returncode & 2, result.stderr
