"""The VPC, the Bedrock endpoint, and the stateful resources."""

import json

import pytest

from tests.infra.conftest import Synthesis, only, resources

pytestmark = pytest.mark.infra

NETWORK = "AnyCompanySupportNetwork"
DATA = "AnyCompanySupportData"
SERVICE = "AnyCompanySupportService"
INVOKE_ACTIONS = {"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"}


def _as_list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def test_vpc_spans_two_zones_with_public_and_private_subnets_and_one_nat(
    synthesis: Synthesis,
) -> None:
    template = synthesis.template(NETWORK)
    subnets = [r["Properties"] for r in resources(template, "AWS::EC2::Subnet").values()]
    public = [s for s in subnets if s.get("MapPublicIpOnLaunch")]
    assert len(subnets) == 4
    assert len(public) == 2
    assert len({json.dumps(s["AvailabilityZone"]) for s in subnets}) == 2
    assert len(resources(template, "AWS::EC2::NatGateway")) == 1
    assert resources(template, "AWS::EC2::FlowLog")


def test_bedrock_endpoint_uses_private_dns_and_allows_only_model_invocation(
    synthesis: Synthesis,
) -> None:
    endpoints = resources(synthesis.template(NETWORK), "AWS::EC2::VPCEndpoint")
    bedrock = [
        e["Properties"]
        for e in endpoints.values()
        if "bedrock-runtime" in json.dumps(e["Properties"]["ServiceName"])
    ]
    assert len(bedrock) == 1
    endpoint = bedrock[0]
    assert endpoint["PrivateDnsEnabled"] is True
    statements = endpoint["PolicyDocument"]["Statement"]
    assert {s["Effect"] for s in statements} == {"Allow"}
    assert {a for s in statements for a in _as_list(s["Action"])} == INVOKE_ACTIONS
    arns = json.dumps([s["Resource"] for s in statements])
    assert "foundation-model/*" in arns
    assert "inference-profile/*" in arns
    assert all("aws:PrincipalAccount" in s["Condition"]["StringEquals"] for s in statements)


def test_task_role_may_invoke_only_the_configured_model_and_only_through_the_endpoint(
    synthesis: Synthesis,
) -> None:
    policies = resources(synthesis.template(SERVICE), "AWS::IAM::Policy")
    bedrock_statements = [
        statement
        for policy in policies.values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if any(a.startswith("bedrock:") for a in _as_list(statement["Action"]))
    ]
    assert len(bedrock_statements) == 1
    statement = bedrock_statements[0]
    assert set(statement["Action"]) == INVOKE_ACTIONS
    source_vpce = statement["Condition"]["StringEquals"]["aws:sourceVpce"]
    assert "BedrockRuntime" in source_vpce["Fn::ImportValue"]
    resources_json = json.dumps(statement["Resource"])
    model_id = synthesis.stacks.config.bedrock_model_id
    assert f"inference-profile/{model_id}" in resources_json
    assert f"foundation-model/{synthesis.stacks.config.foundation_model_id}" in resources_json
    assert '"*"' not in resources_json


def test_database_is_current_postgres_encrypted_private_backed_up_and_protected(
    synthesis: Synthesis,
) -> None:
    database = only(synthesis.template(DATA), "AWS::RDS::DBInstance")
    assert database["Engine"] == "postgres"
    assert database["EngineVersion"].split(".")[0] == "17"
    assert database["StorageEncrypted"] is True
    assert database["BackupRetentionPeriod"] >= 7
    assert database["PubliclyAccessible"] is False
    assert database["DeletionProtection"] is True
    assert database["MultiAZ"] is True
    # Credentials come from a generated Secrets Manager secret, never from the template.
    assert "resolve:secretsmanager" in json.dumps(database["MasterUserPassword"])


def test_database_password_has_a_rotation_function(synthesis: Synthesis) -> None:
    schedule = only(synthesis.template(DATA), "AWS::SecretsManager::RotationSchedule")
    assert schedule["HostedRotationLambda"]["RotationType"] == "PostgreSQLSingleUser"


def test_redis_encrypts_in_transit_and_at_rest_across_two_zones(synthesis: Synthesis) -> None:
    redis = only(synthesis.template(DATA), "AWS::ElastiCache::ReplicationGroup")
    assert redis["TransitEncryptionEnabled"] is True
    assert redis["TransitEncryptionMode"] == "required"
    assert redis["AtRestEncryptionEnabled"] is True
    assert redis["MultiAZEnabled"] is True
    assert redis["AutomaticFailoverEnabled"] is True


def test_buckets_block_public_access_encrypt_and_keep_versions(synthesis: Synthesis) -> None:
    buckets = resources(synthesis.template(DATA), "AWS::S3::Bucket")
    assert len(buckets) == 2
    for bucket in buckets.values():
        properties = bucket["Properties"]
        assert set(properties["PublicAccessBlockConfiguration"].values()) == {True}
        assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert properties["VersioningConfiguration"]["Status"] == "Enabled"


def test_bucket_policies_refuse_plain_http(synthesis: Synthesis) -> None:
    policies = resources(synthesis.template(DATA), "AWS::S3::BucketPolicy")
    assert len(policies) == 2
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny"
            and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            for s in statements
        )


def test_log_bucket_admits_load_balancer_access_logs(synthesis: Synthesis) -> None:
    template = synthesis.template(DATA)
    statements = [
        s
        for policy in resources(template, "AWS::S3::BucketPolicy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "LoadBalancerAccessLogs"
    ]
    assert len(statements) == 1
    # The regional load balancing account is looked up at deploy time.
    assert "Fn::FindInMap" in json.dumps(statements[0]["Principal"])
    assert "alb/AWSLogs/" in json.dumps(statements[0]["Resource"])
    assert template["Mappings"]


def test_database_and_redis_admit_only_the_tasks_and_the_rotation_function(
    synthesis: Synthesis,
) -> None:
    data, service = synthesis.template(DATA), synthesis.template(SERVICE)
    for group in resources(data, "AWS::EC2::SecurityGroup").values():
        assert "SecurityGroupIngress" not in group["Properties"]
    rules = [
        r["Properties"]
        for template in (data, service)
        for r in resources(template, "AWS::EC2::SecurityGroupIngress").values()
    ]
    assert all("CidrIp" not in rule and "CidrIpv6" not in rule for rule in rules)
    to_database = [r for r in rules if "DatabaseSecurityGroup" in json.dumps(r["GroupId"])]
    to_redis = [r for r in rules if "RedisSecurityGroup" in json.dumps(r["GroupId"])]
    assert {json.dumps(r["SourceSecurityGroupId"]) for r in to_redis} == {
        json.dumps({"Fn::GetAtt": ["ServiceSecurityGroup61DE1A49", "GroupId"]})
    }
    sources = {json.dumps(r["SourceSecurityGroupId"]) for r in to_database}
    assert len(sources) == 2
    assert all("ServiceSecurityGroup" in s or "DatabaseRotationSecurityGroup" in s for s in sources)
