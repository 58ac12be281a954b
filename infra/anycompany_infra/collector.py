"""The OpenTelemetry collector beside the app: spans in on localhost only, out to X-Ray."""

from aws_cdk import Duration
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs

# Pinned, like the app's own dependencies.
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
# What the app needs to send its spans to the collector.
OTEL_ENVIRONMENT = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
    "OTEL_SERVICE_NAME": "anycompany-support",
}


def collector_add(
    task_definition: ecs.FargateTaskDefinition,
    *,
    app: ecs.ContainerDefinition,
    region: str,
    log_group: logs.ILogGroup,
) -> None:
    """Run the collector in the task, started before ``app``."""
    collector = task_definition.add_container(
        "otel-collector",
        image=ecs.ContainerImage.from_registry(OTEL_COLLECTOR_IMAGE),
        environment={"AOT_CONFIG_CONTENT": OTEL_COLLECTOR_CONFIG, "AWS_REGION": region},
        logging=ecs.LogDrivers.aws_logs(stream_prefix="otel", log_group=log_group),
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
