"""Cognito: the user pool, its hosted domain, the web client and the staff group."""

import json

import pytest

from tests.infra.conftest import Synthesis, only

pytestmark = pytest.mark.infra

AUTH = "AnyCompanySupportAuth"


def test_user_pool_verifies_email_and_enforces_strong_passwords_and_offers_totp(
    synthesis: Synthesis,
) -> None:
    pool = only(synthesis.template(AUTH), "AWS::Cognito::UserPool")
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is False
    assert pool["AutoVerifiedAttributes"] == ["email"]
    assert pool["UsernameAttributes"] == ["email"]
    password = pool["Policies"]["PasswordPolicy"]
    assert password["MinimumLength"] >= 12
    assert all(
        password[flag]
        for flag in ("RequireLowercase", "RequireUppercase", "RequireNumbers", "RequireSymbols")
    )
    assert pool["MfaConfiguration"] == "OPTIONAL"
    assert pool["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    assert pool["UserPoolAddOns"]["AdvancedSecurityMode"] == "ENFORCED"
    assert pool["DeletionProtection"] == "ACTIVE"


def test_web_client_uses_the_code_flow_with_a_secret_and_exact_urls(synthesis: Synthesis) -> None:
    config = synthesis.stacks.config
    client = only(synthesis.template(AUTH), "AWS::Cognito::UserPoolClient")
    assert client["GenerateSecret"] is True
    assert client["AllowedOAuthFlows"] == ["code"]
    assert client["AllowedOAuthFlowsUserPoolClient"] is True
    assert set(client["AllowedOAuthScopes"]) == {"openid", "email", "profile"}
    assert client["CallbackURLs"] == [f"https://{config.domain_name}/oidc/callback/"]
    assert client["LogoutURLs"] == [f"https://{config.domain_name}/accounts/logged-out/"]
    assert client["ExplicitAuthFlows"] == ["ALLOW_REFRESH_TOKEN_AUTH"]
    assert client["PreventUserExistenceErrors"] == "ENABLED"


def test_hosted_domain_uses_the_prefix_from_context(synthesis: Synthesis) -> None:
    domain = only(synthesis.template(AUTH), "AWS::Cognito::UserPoolDomain")
    assert domain["Domain"] == synthesis.stacks.config.cognito_domain_prefix


def test_staff_group_exists(synthesis: Synthesis) -> None:
    group = only(synthesis.template(AUTH), "AWS::Cognito::UserPoolGroup")
    assert group["GroupName"] == "staff"


def test_client_secret_is_copied_into_secrets_manager_not_an_output(synthesis: Synthesis) -> None:
    template = synthesis.template(AUTH)
    secret = only(template, "AWS::SecretsManager::Secret")
    source = json.dumps(secret["SecretString"])
    assert "DescribeCognitoUserPoolClient" in source
    assert "ClientSecret" in source
    assert "DescribeCognitoUserPoolClient" not in json.dumps(template.get("Outputs", {}))
