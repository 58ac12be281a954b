"""Deployment settings read from CDK context, with placeholders that keep synth working offline.

Pass real values on the command line, e.g.
``cdk deploy --all -c domainName=support.example.com -c certificateArn=arn:aws:acm:...``.
"""

import re
from dataclasses import dataclass

from constructs import Node

# Paths the Django side serves; the Cognito app client allows exactly these URLs.
OIDC_CALLBACK_PATH = "/oidc/callback/"
LOGGED_OUT_PATH = "/accounts/logged-out/"

HEALTH_CHECK_PATH = "/healthz"
CONTAINER_PORT = 8000

# The app prints one JSON line per metric every minute; CloudWatch Logs turns them into metrics.
METRICS_NAMESPACE = "AnyCompanySupport"
OPEN_WEBSOCKETS_METRIC = "OpenWebsockets"
TURNS_IN_FLIGHT_METRIC = "TurnsInFlight"

DEFAULT_DOMAIN_NAME = "support.example.com"
DEFAULT_CERTIFICATE_ARN = (
    "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
)
DEFAULT_COGNITO_DOMAIN_PREFIX = "anycompany-support-example"
DEFAULT_BEDROCK_MODEL_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"

_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_USERNAMES_RE = re.compile(r"^([\w.@+-]{1,150}(,[\w.@+-]{1,150})*)?$")
_PREFIX_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Cross-region inference profiles carry a geography prefix in front of the model id.
_PROFILE_PREFIXES = ("us.", "eu.", "apac.", "jp.", "au.", "ca.", "us-gov.", "global.")


class ConfigError(ValueError):
    """A context value is missing or malformed; the message names the context key."""


@dataclass(frozen=True)
class DeployConfig:
    domain_name: str
    certificate_arn: str
    cognito_domain_prefix: str
    bedrock_model_id: str
    alarm_email: str
    enable_execute_command: bool
    break_glass_usernames: str = ""

    @property
    def site_url(self) -> str:
        return f"https://{self.domain_name}"

    @property
    def callback_url(self) -> str:
        return self.site_url + OIDC_CALLBACK_PATH

    @property
    def logout_url(self) -> str:
        return self.site_url + LOGGED_OUT_PATH

    @property
    def foundation_model_id(self) -> str:
        """The model id without an inference profile's geography prefix."""
        for prefix in _PROFILE_PREFIXES:
            if self.bedrock_model_id.startswith(prefix):
                return self.bedrock_model_id[len(prefix) :]
        return self.bedrock_model_id

    @property
    def uses_inference_profile(self) -> bool:
        return self.foundation_model_id != self.bedrock_model_id

    @classmethod
    def from_context(cls, node: Node) -> "DeployConfig":
        def get(key: str, default: str) -> str:
            value = node.try_get_context(key)
            return default if value is None else str(value).strip()

        config = cls(
            domain_name=get("domainName", DEFAULT_DOMAIN_NAME).lower(),
            certificate_arn=get("certificateArn", DEFAULT_CERTIFICATE_ARN),
            cognito_domain_prefix=get("cognitoDomainPrefix", DEFAULT_COGNITO_DOMAIN_PREFIX),
            bedrock_model_id=get("bedrockModelId", DEFAULT_BEDROCK_MODEL_ID),
            alarm_email=get("alarmEmail", ""),
            enable_execute_command=get("enableExecuteCommand", "false").lower() == "true",
            break_glass_usernames=get("breakGlassUsernames", "").replace(" ", ""),
        )
        config.validate()
        return config

    def validate(self) -> None:
        if not _DOMAIN_RE.match(self.domain_name):
            raise ConfigError(f"domainName must be a DNS name (got {self.domain_name!r}).")
        if not self.certificate_arn.startswith("arn:") or ":acm:" not in self.certificate_arn:
            raise ConfigError(
                f"certificateArn must be an ACM certificate ARN (got {self.certificate_arn!r})."
            )
        if (
            not _PREFIX_RE.match(self.cognito_domain_prefix)
            or "cognito" in self.cognito_domain_prefix
        ):
            raise ConfigError(
                "cognitoDomainPrefix must be lowercase letters, digits and hyphens and must not "
                f"contain 'cognito' (got {self.cognito_domain_prefix!r})."
            )
        if not self.bedrock_model_id or any(c.isspace() for c in self.bedrock_model_id):
            raise ConfigError(f"bedrockModelId is not a model id (got {self.bedrock_model_id!r}).")
        if not _USERNAMES_RE.match(self.break_glass_usernames):
            raise ConfigError(
                "breakGlassUsernames must be Django usernames separated by commas "
                f"(got {self.break_glass_usernames!r})."
            )
        if self.alarm_email and "@" not in self.alarm_email:
            raise ConfigError(f"alarmEmail must be an email address (got {self.alarm_email!r}).")
