"""Synthesizes the CDK app once per test session; every infra test reads that one assembly."""

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

try:
    import aws_cdk  # noqa: F401
except ImportError:
    # Not skipped: infra tests that silently stop running would let the templates rot.
    raise ImportError(
        "The infra tests need the CDK and cfn-lint (the `infra` dependency group): run "
        "`make install-infra`, or `make test` / `make check`, which install it."
    ) from None

INFRA_DIR = Path(__file__).resolve().parents[2] / "infra"

# Node 20 makes jsii print a long end-of-life banner on every run.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
if str(INFRA_DIR) not in sys.path:
    sys.path.insert(0, str(INFRA_DIR))


@dataclass(frozen=True)
class Synthesis:
    outdir: Path
    stacks: Any  # anycompany_infra.app.Stacks
    templates: dict[str, dict[str, Any]]
    acknowledgements: list[tuple[str, str, str]]  # (construct path, rule id, reason)

    def template(self, stack: str) -> dict[str, Any]:
        return self.templates[stack]

    @property
    def validation_report(self) -> dict[str, Any]:
        return json.loads((self.outdir / "validation-report.json").read_text())


@pytest.fixture(scope="session")
def synthesis(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    from anycompany_infra.app import build, new_app
    from aws_cdk import Validations

    outdir = tmp_path_factory.mktemp("cdk.out")
    app = new_app(outdir=str(outdir))
    stacks = build(app)
    # Raises when cdk-nag reports a finding nobody acknowledged.
    assembly = app.synth()
    templates = {
        artifact.stack_name: json.loads(Path(artifact.template_full_path).read_text())
        for artifact in assembly.stacks
    }
    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    acknowledgements = [
        (construct.node.path, rule_id, reason)
        for construct in app.node.find_all()
        for entry in construct.node.metadata
        if entry.type == key
        for rule_id, reason in entry.data.items()
    ]
    return Synthesis(outdir, stacks, templates, acknowledgements)


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def only(template: dict[str, Any], resource_type: str) -> dict[str, Any]:
    found = resources(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.values()))["Properties"]
