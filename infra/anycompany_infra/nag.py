"""cdk-nag acknowledgements, kept in one shape so each carries a reviewable reason."""

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

MIN_REASON_LENGTH = 40
# The plugin name cdk-nag reports findings under; acknowledgements must carry it as a prefix.
PLUGIN_PREFIX = "AwsSolutions::"


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Accept one cdk-nag finding on ``scope`` (and its children) with a one-sentence reason."""
    if len(reason) < MIN_REASON_LENGTH or not reason.endswith("."):
        raise ValueError(f"Acknowledgement of {rule_id} needs a full sentence as its reason.")
    Validations.of(scope).acknowledge(Acknowledgment(id=PLUGIN_PREFIX + rule_id, reason=reason))
