"""The VPC and the private path to Amazon Bedrock."""

from typing import Any

from aws_cdk import CfnOutput, Fn, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

# Converse and ConverseStream are authorized through these two actions.
BEDROCK_INVOKE_ACTIONS = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]


def bedrock_model_arns(stack: Stack) -> list[str]:
    """Every foundation model and this account's inference profiles: the endpoint's outer bound."""
    return [
        stack.format_arn(
            service="bedrock",
            region="*",
            account="",
            resource="foundation-model",
            resource_name="*",
        ),
        stack.format_arn(
            service="bedrock", region="*", resource="inference-profile", resource_name="*"
        ),
    ]


VPC_CIDR = "10.20.0.0/16"


class NetworkStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(VPC_CIDR),
            max_azs=2,
            nat_gateways=1,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="Public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                ),
                ec2.SubnetConfiguration(
                    name="Private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=24
                ),
            ],
            # S3 traffic (static files, media) skips the NAT gateway and its per-GB charge.
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
        )

        flow_log_group = logs.LogGroup(
            self,
            "FlowLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )

        endpoint_security_group = ec2.SecurityGroup(
            self,
            "BedrockEndpointSecurityGroup",
            vpc=self.vpc,
            description="Bedrock runtime endpoint: HTTPS from inside the VPC",
            allow_all_outbound=False,
        )
        endpoint_security_group.add_ingress_rule(
            ec2.Peer.ipv4(VPC_CIDR), ec2.Port.tcp(443), "HTTPS from the VPC"
        )
        # Model calls stay on the AWS network; the app's role may call Bedrock only through here.
        self.bedrock_endpoint = self.vpc.add_interface_endpoint(
            "BedrockRuntime",
            service=ec2.InterfaceVpcEndpointAwsService.BEDROCK_RUNTIME,
            private_dns_enabled=True,
            subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[endpoint_security_group],
            open=False,
        )
        self.bedrock_endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="InvokeModelsFromThisAccountOnly",
                principals=[iam.AnyPrincipal()],
                actions=BEDROCK_INVOKE_ACTIONS,
                resources=bedrock_model_arns(self),
                conditions={"StringEquals": {"aws:PrincipalAccount": self.account}},
            )
        )

        private_subnets = self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        CfnOutput(self, "PrivateSubnetIds", value=Fn.join(",", private_subnets.subnet_ids))
