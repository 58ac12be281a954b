"""The web service: Fargate tasks behind an HTTPS load balancer, scaling and migrations.

Its alarms are in ``alarms``, the tracing sidecar in ``collector``.
"""

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from constructs import Construct

from anycompany_infra.alarms import service_alarms
from anycompany_infra.auth import AuthStack
from anycompany_infra.collector import OTEL_ENVIRONMENT, collector_add
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
from anycompany_infra.network import NetworkStack
from anycompany_infra.roles import roles_create

REPO_ROOT = Path(__file__).resolve().parents[2]

# Each deploy also closes turns that a replaced task left unfinished (only ones idle for longer
# than a turn can run, so turns still running on old tasks are left alone).
MIGRATE_COMMAND = "python manage.py migrate --no-input && python manage.py recover_turns"

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
        self.task_role, self.execution_role = roles_create(
            self, config=config, network=network, data=data
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
            "SECRET_KEY_FALLBACKS": ecs.Secret.from_secrets_manager(
                data.django_secret_key_fallbacks
            ),
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
        self.alarm_topic = service_alarms(
            self,
            alarm_email=config.alarm_email,
            load_balancer=self.load_balancer,
            target_group=self.target_group,
            database=data.database,
        )

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
            collector_add(task_definition, app=app, region=self.region, log_group=self.log_group)
        acknowledge(
            task_definition,
            "AwsSolutions-ECS2",
            "Only non-secret settings such as host names and resource ids are plain environment "
            "variables; every credential is injected from Secrets Manager.",
        )
        return task_definition
