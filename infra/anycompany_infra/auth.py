"""Sign-in: a Cognito user pool with a hosted domain and the web app's OIDC client."""

from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from anycompany_infra.config import DeployConfig
from anycompany_infra.nag import acknowledge

STAFF_GROUP = "staff"

# The singleton function that CDK's AwsCustomResource uses to read the generated client secret.
_CUSTOM_RESOURCE_PROVIDER_ID = "AWS679f53fac002430cb0da5b7982bd2287"


class AuthStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeployConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.user_pool = cognito.UserPool(
            self,
            "UserPool",
            self_sign_up_enabled=True,
            sign_in_aliases=cognito.SignInAliases(email=True),
            sign_in_case_sensitive=False,
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            keep_original=cognito.KeepOriginalAttrs(email=True),
            standard_attributes=cognito.StandardAttributes(
                email=cognito.StandardAttribute(required=True, mutable=True),
            ),
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            mfa=cognito.Mfa.OPTIONAL,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.user_pool,
            "AwsSolutions-COG2",
            "Customers are retail shoppers for whom TOTP is offered but not forced, while threat "
            "protection blocks risky sign-ins and staff are expected to enrol.",
        )

        self.domain = self.user_pool.add_domain(
            "HostedDomain",
            cognito_domain=cognito.CognitoDomainOptions(domain_prefix=config.cognito_domain_prefix),
        )

        # Authorization code flow only; the Django client adds PKCE and authenticates with the
        # secret, so a stolen code is useless on its own.
        self.client = self.user_pool.add_client(
            "WebClient",
            generate_secret=True,
            auth_flows=cognito.AuthFlow(user_srp=False, user_password=False, custom=False),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True, implicit_code_grant=False),
                scopes=[
                    cognito.OAuthScope.OPENID,
                    cognito.OAuthScope.EMAIL,
                    cognito.OAuthScope.PROFILE,
                ],
                callback_urls=[config.callback_url],
                logout_urls=[config.logout_url],
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
            access_token_validity=Duration.hours(1),
            id_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.days(30),
        )

        cognito.UserPoolGroup(
            self,
            "StaffGroup",
            user_pool=self.user_pool,
            group_name=STAFF_GROUP,
            description="AnyCompany support staff: Django admin and the staff views",
        )

        # ECS can inject only Secrets Manager or Parameter Store values, so the generated client
        # secret is copied into a secret of its own.
        self.client_secret = secretsmanager.Secret(
            self,
            "WebClientSecret",
            description="Cognito app client secret for the AnyCompany Support web client.",
            secret_string_value=self.client.user_pool_client_secret,
        )
        acknowledge(
            self.client_secret,
            "AwsSolutions-SMG4",
            "Cognito generates this value and cannot rotate it in place, so the documented "
            "runbook replaces it (new app client, then redeploy) instead of a rotation function.",
        )

        provider = self.node.try_find_child(_CUSTOM_RESOURCE_PROVIDER_ID)
        if provider is not None:
            acknowledge(
                provider,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
                "The CDK-provided function that reads the client secret needs only the AWS "
                "managed basic execution policy to write its own logs.",
            )

        self.hosted_domain_url = self.domain.base_url()
        CfnOutput(self, "UserPoolId", value=self.user_pool.user_pool_id)
        CfnOutput(self, "WebClientId", value=self.client.user_pool_client_id)
        CfnOutput(self, "CognitoDomain", value=self.hosted_domain_url)
        CfnOutput(self, "WebClientSecretArn", value=self.client_secret.secret_arn)
