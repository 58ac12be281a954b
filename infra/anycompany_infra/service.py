"""The web service: Fargate tasks behind an HTTPS load balancer, scaling, alarms and migrations."""

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from anycompany_infra.auth import AuthStack
from anycompany_infra.config import (
    CONTAINER_PORT,
    HEALTH_CHECK_PATH,
    METRICS_NAMESPACE,
    OPEN_WEBSOCKETS_METRIC,
    TURNS_IN_FLIGHT_METRIC,
    DeployConfig,
)
from anycompany_infra.data import ALB_LOG_PREFIX, REDIS_PORT, DataStack
from anycompany_infra.nag import acknowledge
from anycompany_infra.network import BEDROCK_INVOKE_ACTIONS, NetworkStack

REPO_ROOT = Path(__file__).resolve().parents[2]

# Each deploy also closes turns that a replaced task left unfinished (only ones idle for longer
# than a turn can run, so turns still running on old tasks are left alone).
MIGRATE_COMMAND = "python manage.py migrate --no-input && python manage.py recover_turns"
DEMO_DATA_COMMAND = f"{MIGRATE_COMMAND} && python manage.py reset_demo_data --if-empty"

# The OpenTelemetry collector next to the app: it receives the app's spans on localhost only and
# sends them to X-Ray. Pinned, like the app's own dependencies.
OTEL_COLLECTOR_IMAGE = "public.ecr.aws/aws-observability/aws-otel-collector:v0.45.0"
OTEL_COLLECTOR_CONFIG = """\
extensions:
  health_check:
    endpoint: 127.0.0.1:13133
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:4318
processors:
  batch/traces:
    timeout: 1s
    send_batch_size: 50
exporters:
  awsxray: {}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch/traces]
      exporters: [awsxray]
"""
OTEL_ENVIRONMENT = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
    "OTEL_SERVICE_NAME": "anycompany-support",
}

MIN_TASKS = 2
MAX_TASKS = 10
# Daphne pings every 20 s; the load balancer must not close a quiet socket before then.
ALB_IDLE_TIMEOUT = Duration.seconds(300)
WEBSOCKETS_PER_TASK_TARGET = 200
CPU_TARGET_PERCENT = 60

# Slim images have no curl; the interpreter is always there.
_HEALTHCHECK_SCRIPT = (
    "import urllib.request; "
    f"urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}{HEALTH_CHECK_PATH}', timeout=4)"
)


class ServiceStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        network: NetworkStack,
        data: DataStack,
        auth: AuthStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        vpc = network.vpc
        private = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)

        # --- Logs and metrics --------------------------------------------------------------------
        self.log_group = logs.LogGroup(
            self,
            "AppLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        for metric_key, metric_name in (
            ("open_websockets", OPEN_WEBSOCKETS_METRIC),
            ("turns_in_flight", TURNS_IN_FLIGHT_METRIC),
        ):
            logs.MetricFilter(
                self,
                f"{metric_name}Filter",
                log_group=self.log_group,
                filter_pattern=logs.FilterPattern.string_value("$.metric", "=", metric_key),
                metric_namespace=METRICS_NAMESPACE,
                metric_name=metric_name,
                metric_value="$.value",
            )

        # --- Roles -------------------------------------------------------------------------------
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="AnyCompany Support web tasks: Bedrock through the VPC endpoint, S3 media, "
            "X-Ray traces",
        )
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="InvokeConfiguredModelThroughEndpoint",
                actions=BEDROCK_INVOKE_ACTIONS,
                resources=self._model_arns(config),
                conditions={
                    "StringEquals": {"aws:sourceVpce": network.bedrock_endpoint.vpc_endpoint_id}
                },
            )
        )
        # A named export keeps the policy's resource, and so its cdk-nag finding id, stable.
        assets_arn_export = f"{data.stack_name}-AssetsBucketArn"
        assets_arn = data.export_value(data.assets_bucket.bucket_arn, name=assets_arn_export)
        # Static files are in the image and served by the app; the bucket holds media only.
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadWriteMedia",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                resources=[f"{assets_arn}/media/*"],
            )
        )
        # Without ListBucket S3 answers 403 instead of 404 for a missing key, which breaks
        # django-storages' exists() check.
        self.task_role.add_to_policy(
            iam.PolicyStatement(sid="ListAssets", actions=["s3:ListBucket"], resources=[assets_arn])
        )
        # The collector sidecar's only call.
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteTraces", actions=["xray:PutTraceSegments"], resources=["*"]
            )
        )

        self.execution_role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="ECS agent: pulls the image, writes logs, reads the injected secrets",
        )

        # --- Container ---------------------------------------------------------------------------
        # Synth only stages the build context; the image is built by `cdk deploy`.
        self.image = ecs.ContainerImage.from_asset(
            str(REPO_ROOT), platform=ecr_assets.Platform.LINUX_ARM64, exclude=["infra/cdk.out"]
        )
        self.container_environment = {
            "CHAT_MODEL": "bedrock",
            "LOG_FORMAT": "json",
            "BEDROCK_MODEL_ID": config.bedrock_model_id,
            "AWS_REGION": self.region,
            "ALLOWED_HOSTS": config.domain_name,
            "CSRF_TRUSTED_ORIGINS": config.site_url,
            "AWS_STORAGE_BUCKET_NAME": data.assets_bucket.bucket_name,
            "REDIS_URL": data.redis_url,
            "DB_SSLMODE": "require",
            "COGNITO_DOMAIN": auth.hosted_domain_url,
            "COGNITO_USER_POOL_ID": auth.user_pool.user_pool_id,
            "COGNITO_CLIENT_ID": auth.client.user_pool_client_id,
            "COGNITO_REGION": self.region,
            # The load balancer appends the client's address to X-Forwarded-For.
            "TRUSTED_PROXY_COUNT": "1",
            "ADMIN_BREAK_GLASS_USERNAMES": config.break_glass_usernames,
        }
        db_secret = data.database_secret
        self.container_secrets = {
            "DB_HOST": ecs.Secret.from_secrets_manager(db_secret, "host"),
            "DB_PORT": ecs.Secret.from_secrets_manager(db_secret, "port"),
            "DB_NAME": ecs.Secret.from_secrets_manager(db_secret, "dbname"),
            "DB_USER": ecs.Secret.from_secrets_manager(db_secret, "username"),
            "DB_PASSWORD": ecs.Secret.from_secrets_manager(db_secret, "password"),
            "SECRET_KEY": ecs.Secret.from_secrets_manager(data.django_secret_key),
            "COGNITO_CLIENT_SECRET": ecs.Secret.from_secrets_manager(auth.client_secret),
        }

        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )

        self.task_definition = self._task_definition(
            "WebTask",
            stream_prefix="web",
            command=None,
            health_check=ecs.HealthCheck(
                command=["CMD", "python", "-c", _HEALTHCHECK_SCRIPT],
                interval=Duration.seconds(30),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(30),
            ),
            traced=True,
        )
        self.migrate_task_definition = self._task_definition(
            "MigrateTask",
            stream_prefix="migrate",
            command=["sh", "-c", MIGRATE_COMMAND],
            health_check=None,
            traced=False,
        )

        self.service_security_group = ec2.SecurityGroup(
            self,
            "ServiceSecurityGroup",
            vpc=vpc,
            description="AnyCompany Support tasks: HTTP only from the load balancer",
            allow_all_outbound=True,
        )
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            desired_count=MIN_TASKS,
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            vpc_subnets=private,
            security_groups=[self.service_security_group],
            assign_public_ip=False,
            health_check_grace_period=Duration.seconds(60),
            enable_execute_command=config.enable_execute_command,
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )
        # Rules are created on the task side, so the data stack never depends on this one.
        self.service.connections.allow_to(data.database, ec2.Port.tcp(5432), "PostgreSQL")
        self.service.connections.allow_to(
            data.redis_security_group, ec2.Port.tcp(REDIS_PORT), "Redis"
        )

        # --- Load balancer -----------------------------------------------------------------------
        alb_security_group = ec2.SecurityGroup(
            self,
            "LoadBalancerSecurityGroup",
            vpc=vpc,
            description="Public HTTPS entry point (HTTP only redirects)",
            allow_all_outbound=False,
        )
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_group=alb_security_group,
            idle_timeout=ALB_IDLE_TIMEOUT,
            drop_invalid_header_fields=True,
            http2_enabled=True,
        )
        # The bucket policy that admits the load balancing service lives with the bucket.
        self.load_balancer.set_attribute("access_logs.s3.enabled", "true")
        self.load_balancer.set_attribute("access_logs.s3.bucket", data.log_bucket.bucket_name)
        self.load_balancer.set_attribute("access_logs.s3.prefix", ALB_LOG_PREFIX)
        acknowledge(
            alb_security_group,
            "AwsSolutions-EC23",
            "This is the public website's load balancer, so it must accept HTTP and HTTPS from "
            "any address; HTTP only redirects to HTTPS.",
        )

        self.target_group = elbv2.ApplicationTargetGroup(
            self,
            "WebTargets",
            vpc=vpc,
            port=CONTAINER_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[self.service],
            deregistration_delay=Duration.seconds(60),
            health_check=elbv2.HealthCheck(
                path=HEALTH_CHECK_PATH,
                healthy_http_codes="200",
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
        )
        self.https_listener = self.load_balancer.add_listener(
            "Https",
            port=443,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[
                elbv2.ListenerCertificate.from_certificate_manager(
                    acm.Certificate.from_certificate_arn(
                        self, "Certificate", config.certificate_arn
                    )
                )
            ],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            default_target_groups=[self.target_group],
            open=True,
        )
        self.load_balancer.add_listener(
            "Http",
            port=80,
            protocol=elbv2.ApplicationProtocol.HTTP,
            default_action=elbv2.ListenerAction.redirect(
                protocol="HTTPS", port="443", permanent=True
            ),
            open=True,
        )

        # --- Scaling -----------------------------------------------------------------------------
        scaling = self.service.auto_scale_task_count(min_capacity=MIN_TASKS, max_capacity=MAX_TASKS)
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=CPU_TARGET_PERCENT,
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )
        # Each task logs its own count once a minute, so the average is the per-task load.
        scaling.scale_to_track_custom_metric(
            "OpenWebsockets",
            metric=cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=OPEN_WEBSOCKETS_METRIC,
                statistic=cloudwatch.Stats.AVERAGE,
                period=Duration.minutes(1),
            ),
            target_value=WEBSOCKETS_PER_TASK_TARGET,
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )

        # --- Alarms ------------------------------------------------------------------------------
        self._alarms(config, data)

        # --- Outputs -----------------------------------------------------------------------------
        subnets = vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids
        network_configuration = Fn.join(
            "",
            [
                "awsvpcConfiguration={subnets=[",
                Fn.join(",", subnets),
                "],securityGroups=[",
                self.service_security_group.security_group_id,
                "],assignPublicIp=DISABLED}",
            ],
        )
        run_task = Fn.join(
            " ",
            [
                "aws ecs run-task --launch-type FARGATE --count 1 --started-by migrate",
                "--cluster",
                self.cluster.cluster_name,
                "--task-definition",
                self.migrate_task_definition.family,
                "--network-configuration",
                f'"{network_configuration}"',
            ],
        )
        CfnOutput(
            self, "MigrateCommand", value=run_task, description="Runs the database migrations once"
        )
        CfnOutput(self, "LoadBalancerDnsName", value=self.load_balancer.load_balancer_dns_name)
        CfnOutput(self, "ClusterName", value=self.cluster.cluster_name)
        CfnOutput(self, "ServiceName", value=self.service.service_name)
        CfnOutput(self, "WebTaskDefinitionFamily", value=self.task_definition.family)
        CfnOutput(self, "MigrateTaskDefinitionFamily", value=self.migrate_task_definition.family)
        CfnOutput(
            self, "ServiceSecurityGroupId", value=self.service_security_group.security_group_id
        )

        self._acknowledge_generated_policies(config, assets_arn_export)

    def _model_arns(self, config: DeployConfig) -> list[str]:
        """Only the configured model: its inference profile and the model in any region it uses."""
        foundation_model = self.format_arn(
            service="bedrock",
            region="*",
            account="",
            resource="foundation-model",
            resource_name=config.foundation_model_id,
        )
        if not config.uses_inference_profile:
            return [foundation_model]
        profile = self.format_arn(
            service="bedrock", resource="inference-profile", resource_name=config.bedrock_model_id
        )
        return [profile, foundation_model]

    def _task_definition(
        self,
        construct_id: str,
        *,
        stream_prefix: str,
        command: list[str] | None,
        health_check: ecs.HealthCheck | None,
        traced: bool,
    ) -> ecs.FargateTaskDefinition:
        task_definition = ecs.FargateTaskDefinition(
            self,
            construct_id,
            cpu=512,
            memory_limit_mib=1024,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.ARM64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
            task_role=self.task_role,
            execution_role=self.execution_role,
        )
        app = task_definition.add_container(
            "web",
            image=self.image,
            command=command,
            environment={**self.container_environment, **(OTEL_ENVIRONMENT if traced else {})},
            secrets=self.container_secrets,
            logging=ecs.LogDrivers.aws_logs(stream_prefix=stream_prefix, log_group=self.log_group),
            port_mappings=[ecs.PortMapping(container_port=CONTAINER_PORT)]
            if health_check
            else None,
            health_check=health_check,
            stop_timeout=Duration.seconds(30),
            essential=True,
        )
        if traced:
            collector = task_definition.add_container(
                "otel-collector",
                image=ecs.ContainerImage.from_registry(OTEL_COLLECTOR_IMAGE),
                environment={
                    "AOT_CONFIG_CONTENT": OTEL_COLLECTOR_CONFIG,
                    "AWS_REGION": self.region,
                },
                logging=ecs.LogDrivers.aws_logs(stream_prefix="otel", log_group=self.log_group),
                health_check=ecs.HealthCheck(
                    command=["CMD", "/healthcheck"],
                    interval=Duration.seconds(30),
                    timeout=Duration.seconds(5),
                    retries=3,
                    start_period=Duration.seconds(10),
                ),
                memory_reservation_mib=64,
                memory_limit_mib=256,
                # Losing traces must never take the app down with it.
                essential=False,
            )
            app.add_container_dependencies(
                ecs.ContainerDependency(
                    container=collector, condition=ecs.ContainerDependencyCondition.START
                )
            )
        acknowledge(
            task_definition,
            "AwsSolutions-ECS2",
            "Only non-secret settings such as host names and resource ids are plain environment "
            "variables; every credential is injected from Secrets Manager.",
        )
        return task_definition

    def _alarms(self, config: DeployConfig, data: DataStack) -> None:
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="Encrypts the AnyCompany Support alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # CloudWatch must be able to publish to the encrypted topic.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            )
        )
        self.alarm_topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="AnyCompany Support alarms",
            master_key=key,
            enforce_ssl=True,
        )
        if config.alarm_email:
            self.alarm_topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        action = cloudwatch_actions.SnsAction(self.alarm_topic)

        lb_metrics = self.load_balancer.metrics
        five_minutes = Duration.minutes(5)
        alarms = [
            cloudwatch.Alarm(
                self,
                "LoadBalancer5xx",
                alarm_description="The load balancer itself answered with 5xx (no healthy task?)",
                metric=lb_metrics.http_code_elb(
                    elbv2.HttpCodeElb.ELB_5XX_COUNT, period=five_minutes
                ),
                threshold=10,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            cloudwatch.Alarm(
                self,
                "Target5xx",
                alarm_description="The app answered with 5xx",
                metric=lb_metrics.http_code_target(
                    elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=five_minutes
                ),
                threshold=10,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            cloudwatch.Alarm(
                self,
                "UnhealthyTargets",
                alarm_description="At least one task fails the load balancer health check",
                metric=self.target_group.metrics.unhealthy_host_count(
                    statistic=cloudwatch.Stats.MAXIMUM, period=Duration.minutes(1)
                ),
                threshold=1,
                evaluation_periods=3,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            cloudwatch.Alarm(
                self,
                "DatabaseCpu",
                alarm_description="PostgreSQL CPU above 80% for 15 minutes",
                metric=data.database.metric_cpu_utilization(period=five_minutes),
                threshold=80,
                evaluation_periods=3,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            ),
            cloudwatch.Alarm(
                self,
                "DatabaseFreeStorage",
                alarm_description="PostgreSQL has less than 2 GiB of free storage",
                metric=data.database.metric_free_storage_space(period=five_minutes),
                threshold=2 * 1024**3,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            ),
        ]
        for alarm in alarms:
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)

    def _acknowledge_generated_policies(self, config: DeployConfig, assets_arn_export: str) -> None:
        acknowledge(
            self.task_role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:*::foundation-model/"
            f"{config.foundation_model_id}]",
            "Cross-region inference serves the configured model from any region of its "
            "geography, so the foundation model ARN cannot name one region.",
        )
        acknowledge(
            self.task_role,
            f"AwsSolutions-IAM5[Resource::{assets_arn_export}/media/*]",
            "django-storages reads and writes objects with generated names, so access is "
            "granted to the whole media/ prefix of the app's own bucket.",
        )
        acknowledge(
            self.task_role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray's PutTraceSegments does not support resource-level permissions, so the "
            "collector sidecar's only permission is granted on every resource.",
        )
        acknowledge(
            self.execution_role,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken does not support resource-level permissions, so the ECS "
            "agent's image pull needs it on every resource.",
        )
