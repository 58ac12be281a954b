"""The service's IAM roles: what the web tasks may call, and what the ECS agent needs."""

from aws_cdk import Stack
from aws_cdk import aws_iam as iam

from anycompany_infra.config import DeployConfig
from anycompany_infra.data import DataStack
from anycompany_infra.nag import acknowledge
from anycompany_infra.network import BEDROCK_INVOKE_ACTIONS, NetworkStack


def roles_create(
    stack: Stack, *, config: DeployConfig, network: NetworkStack, data: DataStack
) -> tuple[iam.Role, iam.Role]:
    """The task role and the execution role, each with only the calls it needs."""
    task_role = iam.Role(
        stack,
        "TaskRole",
        assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
        description="AnyCompany Support web tasks: Bedrock through the VPC endpoint, S3 media, "
        "X-Ray traces",
    )
    task_role.add_to_policy(
        iam.PolicyStatement(
            sid="InvokeConfiguredModelThroughEndpoint",
            actions=BEDROCK_INVOKE_ACTIONS,
            resources=_model_arns(stack, config),
            conditions={
                "StringEquals": {"aws:sourceVpce": network.bedrock_endpoint.vpc_endpoint_id}
            },
        )
    )
    # A named export keeps the policy's resource, and so its cdk-nag finding id, stable.
    assets_arn_export = f"{data.stack_name}-AssetsBucketArn"
    assets_arn = data.export_value(data.assets_bucket.bucket_arn, name=assets_arn_export)
    # Static files are in the image and served by the app; the bucket holds media only.
    task_role.add_to_policy(
        iam.PolicyStatement(
            sid="ReadWriteMedia",
            actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            resources=[f"{assets_arn}/media/*"],
        )
    )
    # Without ListBucket S3 answers 403 instead of 404 for a missing key, which breaks
    # django-storages' exists() check.
    task_role.add_to_policy(
        iam.PolicyStatement(sid="ListAssets", actions=["s3:ListBucket"], resources=[assets_arn])
    )
    # The collector sidecar's only call.
    task_role.add_to_policy(
        iam.PolicyStatement(sid="WriteTraces", actions=["xray:PutTraceSegments"], resources=["*"])
    )

    execution_role = iam.Role(
        stack,
        "ExecutionRole",
        assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
        description="ECS agent: pulls the image, writes logs, reads the injected secrets",
    )
    acknowledge(
        task_role,
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:*::foundation-model/"
        f"{config.foundation_model_id}]",
        "Cross-region inference serves the configured model from any region of its "
        "geography, so the foundation model ARN cannot name one region.",
    )
    acknowledge(
        task_role,
        f"AwsSolutions-IAM5[Resource::{assets_arn_export}/media/*]",
        "django-storages reads and writes objects with generated names, so access is "
        "granted to the whole media/ prefix of the app's own bucket.",
    )
    acknowledge(
        task_role,
        "AwsSolutions-IAM5[Resource::*]",
        "X-Ray's PutTraceSegments does not support resource-level permissions, so the "
        "collector sidecar's only permission is granted on every resource.",
    )
    acknowledge(
        execution_role,
        "AwsSolutions-IAM5[Resource::*]",
        "ecr:GetAuthorizationToken does not support resource-level permissions, so the ECS "
        "agent's image pull needs it on every resource.",
    )
    return task_role, execution_role


def _model_arns(stack: Stack, config: DeployConfig) -> list[str]:
    """Only the configured model: its inference profile and the model in any region it uses."""
    foundation_model = stack.format_arn(
        service="bedrock",
        region="*",
        account="",
        resource="foundation-model",
        resource_name=config.foundation_model_id,
    )
    if not config.uses_inference_profile:
        return [foundation_model]
    profile = stack.format_arn(
        service="bedrock", resource="inference-profile", resource_name=config.bedrock_model_id
    )
    return [profile, foundation_model]
