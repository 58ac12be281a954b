"""The Fargate service, its load balancer, scaling, logs, alarms and the migrate task."""

import json
from typing import Any

import pytest
import yaml

from tests.infra.conftest import Synthesis, only, resources

pytestmark = pytest.mark.infra

SERVICE = "AnyCompanySupportService"
DB_SECRET_FIELDS = {
    "DB_HOST": "host",
    "DB_PORT": "port",
    "DB_NAME": "dbname",
    "DB_USER": "username",
    "DB_PASSWORD": "password",
}


def _task_definitions(synthesis: Synthesis) -> dict[str, dict[str, Any]]:
    return resources(synthesis.template(SERVICE), "AWS::ECS::TaskDefinition")


def _containers(synthesis: Synthesis, logical_prefix: str) -> dict[str, dict[str, Any]]:
    (found,) = [
        td["Properties"]["ContainerDefinitions"]
        for logical_id, td in _task_definitions(synthesis).items()
        if logical_id.startswith(logical_prefix)
    ]
    return {container["Name"]: container for container in found}


def _container(synthesis: Synthesis, logical_prefix: str, name: str = "web") -> dict[str, Any]:
    return _containers(synthesis, logical_prefix)[name]


def _environment(container: dict[str, Any]) -> dict[str, Any]:
    return {item["Name"]: item["Value"] for item in container["Environment"]}


def test_tasks_run_on_arm64_fargate(synthesis: Synthesis) -> None:
    task_definitions = _task_definitions(synthesis)
    assert len(task_definitions) == 2
    for task_definition in task_definitions.values():
        properties = task_definition["Properties"]
        assert properties["RequiresCompatibilities"] == ["FARGATE"]
        assert properties["RuntimePlatform"] == {
            "CpuArchitecture": "ARM64",
            "OperatingSystemFamily": "LINUX",
        }


@pytest.mark.parametrize("task", ["WebTask", "MigrateTask"])
def test_credentials_reach_the_container_as_secrets_never_as_environment(
    synthesis: Synthesis, task: str
) -> None:
    container = _container(synthesis, task)
    secrets = {item["Name"]: json.dumps(item["ValueFrom"]) for item in container["Secrets"]}
    assert set(secrets) == {
        *DB_SECRET_FIELDS,
        "SECRET_KEY",
        "SECRET_KEY_FALLBACKS",
        "COGNITO_CLIENT_SECRET",
    }
    for name, field in DB_SECRET_FIELDS.items():
        assert "DatabaseSecret" in secrets[name]
        assert f":{field}::" in secrets[name]
    assert "DjangoSecretKey" in secrets["SECRET_KEY"]
    assert "Fallbacks" not in secrets["SECRET_KEY"]
    assert "DjangoSecretKeyFallbacks" in secrets["SECRET_KEY_FALLBACKS"]
    assert "WebClientSecret" in secrets["COGNITO_CLIENT_SECRET"]
    environment = _environment(container)
    assert not set(environment) & set(secrets)
    assert not [name for name in environment if "PASSWORD" in name or name.endswith("SECRET")]


def test_container_environment_points_the_app_at_bedrock_redis_s3_and_cognito(
    synthesis: Synthesis,
) -> None:
    config = synthesis.stacks.config
    environment = _environment(_container(synthesis, "WebTask"))
    assert environment["CHAT_MODEL"] == "bedrock"
    assert environment["BEDROCK_MODEL_ID"] == config.bedrock_model_id
    assert environment["AWS_REGION"] == {"Ref": "AWS::Region"}
    assert environment["COGNITO_REGION"] == {"Ref": "AWS::Region"}
    assert environment["CSRF_TRUSTED_ORIGINS"] == f"https://{config.domain_name}"
    redis_url = json.dumps(environment["REDIS_URL"])
    assert redis_url.startswith('{"Fn::Join": ["", ["rediss://"')
    assert "PrimaryEndPointAddress" in redis_url
    assert redis_url.endswith('"/0"]]}')
    assert "AssetsBucket" in json.dumps(environment["AWS_STORAGE_BUCKET_NAME"])
    cognito_domain = json.dumps(environment["COGNITO_DOMAIN"])
    assert '"https://"' in cognito_domain
    assert ".amazoncognito.com" in cognito_domain
    assert "UserPool" in json.dumps(environment["COGNITO_USER_POOL_ID"])
    assert "WebClient" in json.dumps(environment["COGNITO_CLIENT_ID"])
    assert environment["TRUSTED_PROXY_COUNT"] == "1"
    assert environment["ADMIN_BREAK_GLASS_USERNAMES"] == ""


def test_allowed_hosts_is_the_public_domain_only(synthesis: Synthesis) -> None:
    # The load balancer's health checks use the task IP as Host; /healthz is answered before
    # host validation, so no task address or wildcard belongs here.
    environment = _environment(_container(synthesis, "WebTask"))
    assert environment["ALLOWED_HOSTS"] == synthesis.stacks.config.domain_name


def test_web_container_has_a_health_check_on_healthz(synthesis: Synthesis) -> None:
    health_check = _container(synthesis, "WebTask")["HealthCheck"]
    assert health_check["Command"][:2] == ["CMD", "python"]
    assert "/healthz" in health_check["Command"][-1]


def test_service_keeps_two_tasks_and_rolls_back_failed_deployments(synthesis: Synthesis) -> None:
    service = only(synthesis.template(SERVICE), "AWS::ECS::Service")
    assert service["DesiredCount"] >= 2
    assert service["LaunchType"] == "FARGATE"
    deployment = service["DeploymentConfiguration"]
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert deployment["MinimumHealthyPercent"] == 100
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    target = only(synthesis.template(SERVICE), "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["MinCapacity"] >= 2


def test_service_scales_on_cpu_and_on_open_websockets_per_task(synthesis: Synthesis) -> None:
    policies = [
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        for p in resources(
            synthesis.template(SERVICE), "AWS::ApplicationAutoScaling::ScalingPolicy"
        ).values()
    ]
    assert len(policies) == 2
    predefined = [
        p["PredefinedMetricSpecification"] for p in policies if "PredefinedMetricSpecification" in p
    ]
    custom = [
        p["CustomizedMetricSpecification"] for p in policies if "CustomizedMetricSpecification" in p
    ]
    assert predefined == [{"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}]
    assert custom == [
        {"MetricName": "OpenWebsockets", "Namespace": "AnyCompanySupport", "Statistic": "Average"}
    ]


def test_app_log_lines_become_websocket_and_turn_metrics(synthesis: Synthesis) -> None:
    filters = {
        f["Properties"]["MetricTransformations"][0]["MetricName"]: f["Properties"]
        for f in resources(synthesis.template(SERVICE), "AWS::Logs::MetricFilter").values()
    }
    assert set(filters) == {"OpenWebsockets", "TurnsInFlight"}
    websockets = filters["OpenWebsockets"]
    assert websockets["FilterPattern"] == '{ $.metric = "open_websockets" }'
    assert websockets["MetricTransformations"][0]["MetricValue"] == "$.value"
    assert websockets["MetricTransformations"][0]["MetricNamespace"] == "AnyCompanySupport"
    assert filters["TurnsInFlight"]["FilterPattern"] == '{ $.metric = "turns_in_flight" }'


def test_https_listener_uses_the_certificate_and_http_only_redirects(synthesis: Synthesis) -> None:
    listeners = {
        listener["Properties"]["Port"]: listener["Properties"]
        for listener in resources(
            synthesis.template(SERVICE), "AWS::ElasticLoadBalancingV2::Listener"
        ).values()
    }
    assert set(listeners) == {80, 443}
    https = listeners[443]
    assert https["Protocol"] == "HTTPS"
    assert https["Certificates"] == [{"CertificateArn": synthesis.stacks.config.certificate_arn}]
    assert https["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert https["DefaultActions"][0]["Type"] == "forward"
    assert listeners[80]["DefaultActions"] == [
        {
            "Type": "redirect",
            "RedirectConfig": {"Port": "443", "Protocol": "HTTPS", "StatusCode": "HTTP_301"},
        }
    ]


def test_load_balancer_outlasts_websocket_pings_and_logs_to_s3(synthesis: Synthesis) -> None:
    balancer = only(synthesis.template(SERVICE), "AWS::ElasticLoadBalancingV2::LoadBalancer")
    attributes = {a["Key"]: a["Value"] for a in balancer["LoadBalancerAttributes"]}
    # Daphne pings every 20 s; the balancer must not close a quiet socket first.
    assert int(attributes["idle_timeout.timeout_seconds"]) >= 60
    assert attributes["access_logs.s3.enabled"] == "true"
    assert "LogBucket" in json.dumps(attributes["access_logs.s3.bucket"])
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert balancer["Scheme"] == "internet-facing"


def test_target_group_checks_healthz_on_the_container_port(synthesis: Synthesis) -> None:
    target_group = only(synthesis.template(SERVICE), "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert target_group["HealthCheckPath"] == "/healthz"
    assert target_group["Port"] == 8000
    assert target_group["TargetType"] == "ip"


def test_tasks_accept_traffic_only_from_the_load_balancer(synthesis: Synthesis) -> None:
    template = synthesis.template(SERVICE)
    groups = resources(template, "AWS::EC2::SecurityGroup")
    (service_group,) = [k for k in groups if k.startswith("ServiceSecurityGroup")]
    (balancer_group,) = [k for k in groups if k.startswith("LoadBalancerSecurityGroup")]
    assert "SecurityGroupIngress" not in groups[service_group]["Properties"]
    into_tasks = [
        r["Properties"]
        for r in resources(template, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [service_group, "GroupId"]}
    ]
    assert into_tasks
    for rule in into_tasks:
        assert rule["SourceSecurityGroupId"] == {"Fn::GetAtt": [balancer_group, "GroupId"]}
        assert (rule["FromPort"], rule["ToPort"]) == (8000, 8000)
    public_ports = {
        rule["FromPort"] for rule in groups[balancer_group]["Properties"]["SecurityGroupIngress"]
    }
    assert public_ports == {80, 443}


def test_migrations_run_as_a_one_off_task_with_the_command_as_an_output(
    synthesis: Synthesis,
) -> None:
    template = synthesis.template(SERVICE)
    command = _container(synthesis, "MigrateTask")["Command"]
    assert command == [
        "sh",
        "-c",
        "python manage.py migrate --no-input && python manage.py recover_turns",
    ]
    assert "Command" not in _container(synthesis, "WebTask")
    output = json.dumps(template["Outputs"]["MigrateCommand"]["Value"])
    assert "aws ecs run-task" in output
    assert "--launch-type FARGATE" in output
    assert "MigrateTask" in output
    assert "assignPublicIp=DISABLED" in output


def test_every_log_group_keeps_logs_for_a_month(synthesis: Synthesis) -> None:
    groups = [
        group["Properties"]
        for template in synthesis.templates.values()
        for group in resources(template, "AWS::Logs::LogGroup").values()
    ]
    assert len(groups) >= 2
    assert {group.get("RetentionInDays") for group in groups} == {30}


def test_alarms_watch_5xx_unhealthy_targets_and_the_database_and_notify_the_topic(
    synthesis: Synthesis,
) -> None:
    template = synthesis.template(SERVICE)
    alarms = [a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values()]
    metrics = {alarm["MetricName"] for alarm in alarms}
    assert {
        "HTTPCode_ELB_5XX_Count",
        "HTTPCode_Target_5XX_Count",
        "UnHealthyHostCount",
        "CPUUtilization",
        "FreeStorageSpace",
    } <= metrics
    (topic_id,) = resources(template, "AWS::SNS::Topic")
    for alarm in alarms:
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
    topic = only(template, "AWS::SNS::Topic")
    assert "KmsMasterKeyId" in topic


def test_web_tasks_send_traces_to_a_collector_sidecar_that_exports_to_xray(
    synthesis: Synthesis,
) -> None:
    containers = _containers(synthesis, "WebTask")
    assert set(containers) == {"web", "otel-collector"}
    collector = containers["otel-collector"]
    assert collector["Image"].startswith("public.ecr.aws/aws-observability/aws-otel-collector:v")
    assert not collector["Image"].endswith(":latest")
    # Losing traces never stops the app; the app starts after the collector.
    assert collector["Essential"] is False
    assert containers["web"]["DependsOn"] == [
        {"Condition": "START", "ContainerName": "otel-collector"}
    ]
    assert collector["HealthCheck"]["Command"] == ["CMD", "/healthcheck"]
    assert collector["LogConfiguration"]["Options"]["awslogs-stream-prefix"] == "otel"
    config = yaml.safe_load(_environment(collector)["AOT_CONFIG_CONTENT"])
    # Spans arrive over OTLP/HTTP on the task's loopback only, never from the network.
    assert config["receivers"] == {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:4318"}}}}
    assert config["service"]["pipelines"] == {
        "traces": {"receivers": ["otlp"], "processors": ["batch/traces"], "exporters": ["awsxray"]}
    }
    assert "PortMappings" not in collector


def test_the_app_logs_json_and_traces_to_the_sidecar_under_its_service_name(
    synthesis: Synthesis,
) -> None:
    web = _environment(_container(synthesis, "WebTask"))
    migrate = _environment(_container(synthesis, "MigrateTask"))

    assert web["LOG_FORMAT"] == "json"
    assert web["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert web["OTEL_SERVICE_NAME"] == "anycompany-support"
    assert migrate["LOG_FORMAT"] == "json"
    # One-off commands have no collector next to them.
    assert set(_containers(synthesis, "MigrateTask")) == {"web"}
    assert not [name for name in migrate if name.startswith("OTEL_")]


def test_the_task_role_writes_traces_and_media_but_no_static_files(synthesis: Synthesis) -> None:
    policies = [
        p["Properties"]
        for logical_id, p in resources(synthesis.template(SERVICE), "AWS::IAM::Policy").items()
        if logical_id.startswith("TaskRole")
    ]
    statements = {
        statement["Sid"]: statement
        for policy in policies
        for statement in policy["PolicyDocument"]["Statement"]
    }
    assert statements["WriteTraces"]["Action"] == "xray:PutTraceSegments"
    assert statements["WriteTraces"]["Resource"] == "*"
    s3_resources = json.dumps(statements["ReadWriteMedia"]["Resource"])
    assert "/media/*" in s3_resources
    assert "/static/" not in json.dumps(statements)
    # The static files are in the image, so the app needs no AWS_* static settings either.
    environment = _environment(_container(synthesis, "WebTask"))
    assert "STATIC_STORAGE" not in environment
    assert "AWS_S3_CUSTOM_DOMAIN" not in environment
