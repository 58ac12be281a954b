"""Deployment settings from CDK context: defaults, validation and model ids."""

import pytest
from anycompany_infra.config import DEFAULT_BEDROCK_MODEL_ID, ConfigError, DeployConfig
from aws_cdk import App

pytestmark = pytest.mark.infra


def test_defaults_synthesize_without_any_context() -> None:
    config = DeployConfig.from_context(App().node)
    assert config.bedrock_model_id == DEFAULT_BEDROCK_MODEL_ID
    assert config.callback_url == f"https://{config.domain_name}/oidc/callback/"
    assert config.logout_url == f"https://{config.domain_name}/accounts/logged-out/"


def test_context_values_override_the_defaults() -> None:
    app = App(
        context={"domainName": "Help.AnyCompany.com", "cognitoDomainPrefix": "anycompany-help"}
    )
    config = DeployConfig.from_context(app.node)
    assert config.domain_name == "help.anycompany.com"
    assert config.site_url == "https://help.anycompany.com"
    assert config.cognito_domain_prefix == "anycompany-help"


def test_break_glass_usernames_are_a_comma_separated_list() -> None:
    config = DeployConfig.from_context(App(context={"breakGlassUsernames": "root, ops.admin"}).node)
    assert config.break_glass_usernames == "root,ops.admin"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("domainName", "https://support.example.com"),
        ("certificateArn", "not-an-arn"),
        ("cognitoDomainPrefix", "my-cognito-login"),
        ("bedrockModelId", "anthropic claude"),
        ("alarmEmail", "ops"),
        ("breakGlassUsernames", "root;admin"),
    ],
)
def test_a_malformed_context_value_fails_with_its_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        DeployConfig.from_context(App(context={key: value}).node)


@pytest.mark.parametrize(
    ("model_id", "foundation_model", "profile"),
    [
        (
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            True,
        ),
        (
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            True,
        ),
        ("anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-haiku-20240307-v1:0", False),
    ],
)
def test_inference_profiles_are_told_apart_from_foundation_models(
    model_id: str, foundation_model: str, profile: bool
) -> None:
    config = DeployConfig.from_context(App(context={"bedrockModelId": model_id}).node)
    assert config.foundation_model_id == foundation_model
    assert config.uses_inference_profile is profile
