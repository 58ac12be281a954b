"""Builds the whole app; shared by ``infra/app.py`` and the tests."""

from aws_cdk import App, Stack, Tags, Validations
from cdk_nag import AwsSolutionsChecks

from anycompany_infra.auth import AuthStack
from anycompany_infra.config import DeployConfig
from anycompany_infra.data import DataStack
from anycompany_infra.network import NetworkStack
from anycompany_infra.service import ServiceStack

STACK_PREFIX = "AnyCompanySupport"

# Behaviour switches CDK keeps off for old apps; set here so the tests see what `cdk` deploys.
FEATURE_FLAGS = {
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
    "@aws-cdk/aws-iam:minimizePolicies": True,
    "@aws-cdk/core:enablePartitionLiterals": True,
    "@aws-cdk/aws-ecs:disableEcsImdsBlocking": True,
    "@aws-cdk/aws-ecs:enableImdsBlockingDeprecatedFeature": False,
    "@aws-cdk/aws-rds:preventRenderingDeprecatedCredentials": True,
    "@aws-cdk/aws-ec2:restrictDefaultSecurityGroup": True,
}


def new_app(*, outdir: str | None = None, context: dict[str, object] | None = None) -> App:
    """An App with this project's feature flags; command-line context still overrides them."""
    return App(outdir=outdir, context={**FEATURE_FLAGS, **(context or {})})


class Stacks:
    def __init__(self, app: App) -> None:
        config = DeployConfig.from_context(app.node)
        self.config = config
        # No `env`: the templates work in any account and region, and synth needs no credentials.
        self.network = NetworkStack(
            app,
            f"{STACK_PREFIX}Network",
            description="AnyCompany Support: VPC and Bedrock endpoint",
        )
        self.data = DataStack(
            app,
            f"{STACK_PREFIX}Data",
            vpc=self.network.vpc,
            description="AnyCompany Support: database, Redis, buckets",
        )
        self.auth = AuthStack(
            app,
            f"{STACK_PREFIX}Auth",
            config=config,
            description="AnyCompany Support: Cognito sign-in",
        )
        self.service = ServiceStack(
            app,
            f"{STACK_PREFIX}Service",
            config=config,
            network=self.network,
            data=self.data,
            auth=self.auth,
            description="AnyCompany Support: Fargate service, load balancer, alarms",
        )
        Tags.of(app).add("project", "anycompany-support")

    @property
    def all(self) -> list[Stack]:
        return [self.network, self.data, self.auth, self.service]


def build(app: App) -> Stacks:
    """Adds every stack to ``app`` and the AWS Solutions checks that gate synthesis."""
    stacks = Stacks(app)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return stacks
