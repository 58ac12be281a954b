"""State: PostgreSQL, Redis, the static/media bucket, the log bucket and the Django secret key."""

from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_iam as iam
from aws_cdk import aws_rds as rds
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk.region_info import FactName
from constructs import Construct

from anycompany_infra.nag import acknowledge

ALB_LOG_PREFIX = "alb"
DATABASE_NAME = "anycompany"
DATABASE_USER = "anycompany"
REDIS_PORT = 6379


class DataStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, vpc: ec2.IVpc, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        private = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)

        # --- Buckets ---------------------------------------------------------------------------
        # Load balancers deliver access logs only to SSE-S3 buckets.
        self.log_bucket = s3.Bucket(
            self,
            "LogBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(365), noncurrent_version_expiration=Duration.days(30)
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.allow_load_balancer_logs(prefix=ALB_LOG_PREFIX)

        self.assets_bucket = s3.Bucket(
            self,
            "AssetsBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="s3/assets/",
            lifecycle_rules=[s3.LifecycleRule(noncurrent_version_expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN,
        )

        # --- Django's SECRET_KEY -----------------------------------------------------------------
        # The fallbacks are earlier keys Django still accepts for the sessions they signed,
        # comma-separated, so that a rotation signs nobody out (SECRET_KEY_FALLBACKS). They start
        # as a random key that signed nothing: no fallback until the runbook moves the old key.
        def random_key(construct_id: str, description: str) -> secretsmanager.Secret:
            return secretsmanager.Secret(
                self,
                construct_id,
                description=description,
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    password_length=64, exclude_punctuation=True
                ),
            )

        self.django_secret_key = random_key(
            "DjangoSecretKey",
            "Django SECRET_KEY for AnyCompany Support (signs sessions, CSRF tokens).",
        )
        self.django_secret_key_fallbacks = random_key(
            "DjangoSecretKeyFallbacks",
            "Earlier Django SECRET_KEYs still accepted, comma-separated (rotation).",
        )
        for secret in (self.django_secret_key, self.django_secret_key_fallbacks):
            acknowledge(
                secret,
                "AwsSolutions-SMG4",
                "The Django signing key is rotated on purpose by the documented runbook (the old "
                "key moves to the fallbacks for the sessions it signed), not on a timer.",
            )

        # --- PostgreSQL --------------------------------------------------------------------------
        self.database_security_group = ec2.SecurityGroup(
            self,
            "DatabaseSecurityGroup",
            vpc=vpc,
            description="PostgreSQL: reachable only from the app tasks and the rotation function",
            allow_all_outbound=False,
        )
        self.database = rds.DatabaseInstance(
            self,
            "Database",
            engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_17_9),
            instance_type=ec2.InstanceType.of(
                ec2.InstanceClass.BURSTABLE4_GRAVITON, ec2.InstanceSize.SMALL
            ),
            vpc=vpc,
            vpc_subnets=private,
            security_groups=[self.database_security_group],
            database_name=DATABASE_NAME,
            credentials=rds.Credentials.from_generated_secret(DATABASE_USER),
            multi_az=True,
            storage_encrypted=True,
            storage_type=rds.StorageType.GP3,
            allocated_storage=20,
            max_allocated_storage=100,
            backup_retention=Duration.days(7),
            deletion_protection=True,
            publicly_accessible=False,
            iam_authentication=True,
            auto_minor_version_upgrade=True,
            allow_major_version_upgrade=False,
            copy_tags_to_snapshot=True,
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        assert self.database.secret is not None
        self.database_secret = self.database.secret
        acknowledge(
            self.database,
            "AwsSolutions-RDS11",
            "The database accepts connections only from the app's security group, so moving it "
            "off the well-known port would add no protection.",
        )

        # Rotation is started on demand (see docs/deploy.md) and followed by a redeploy, because
        # ECS reads secrets only when a task starts.
        acknowledge(
            self.database.node.find_child("Secret"),
            "AwsSolutions-SMG4",
            "A rotation function is attached but started on demand by the runbook, because ECS "
            "reads the password only at task start and a timed rotation would lock tasks out.",
        )
        rotation_security_group = ec2.SecurityGroup(
            self,
            "DatabaseRotationSecurityGroup",
            vpc=vpc,
            description="Secrets Manager rotation function for the database password",
        )
        self.database_secret.add_rotation_schedule(
            "Rotation",
            hosted_rotation=secretsmanager.HostedRotation.postgre_sql_single_user(
                vpc=vpc, vpc_subnets=private, security_groups=[rotation_security_group]
            ),
            automatically_after=Duration.days(0),
            rotate_immediately_on_update=False,
        )
        self.database.connections.allow_default_port_from(
            rotation_security_group, "Secrets Manager rotation function"
        )

        # --- Redis -------------------------------------------------------------------------------
        self.redis_security_group = ec2.SecurityGroup(
            self,
            "RedisSecurityGroup",
            vpc=vpc,
            description="Redis: reachable only from the app tasks",
            allow_all_outbound=False,
        )
        redis_subnets = elasticache.CfnSubnetGroup(
            self,
            "RedisSubnets",
            description="Private subnets for the Channels layer and cache",
            subnet_ids=vpc.select_subnets(
                subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS
            ).subnet_ids,
        )
        self.redis = elasticache.CfnReplicationGroup(
            self,
            "Redis",
            replication_group_description="AnyCompany Support channel layer and cache",
            engine="redis",
            engine_version="7.1",
            cache_node_type="cache.t4g.small",
            num_cache_clusters=2,
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            port=REDIS_PORT,
            at_rest_encryption_enabled=True,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            cache_subnet_group_name=redis_subnets.ref,
            security_group_ids=[self.redis_security_group.security_group_id],
            snapshot_retention_limit=1,
            auto_minor_version_upgrade=True,
        )
        acknowledge(
            self.redis,
            "AwsSolutions-AEC5",
            "Redis accepts connections only from the app's security group, so moving it off the "
            "well-known port would add no protection.",
        )
        acknowledge(
            self.redis,
            "AwsSolutions-AEC6",
            "Redis holds only transient channel messages and cache entries, is reachable only "
            "from the app tasks' security group and requires TLS, so no AUTH token is configured.",
        )
        CfnOutput(self, "DatabaseSecretArn", value=self.database_secret.secret_arn)
        CfnOutput(self, "DjangoSecretKeyArn", value=self.django_secret_key.secret_arn)
        CfnOutput(
            self,
            "DjangoSecretKeyFallbacksArn",
            value=self.django_secret_key_fallbacks.secret_arn,
        )
        CfnOutput(self, "AssetsBucketName", value=self.assets_bucket.bucket_name)

        self.redis_url = (
            f"rediss://{self.redis.attr_primary_end_point_address}:"
            f"{self.redis.attr_primary_end_point_port}/0"
        )

    def allow_load_balancer_logs(self, *, prefix: str) -> None:
        """Let the regional Elastic Load Balancing account write access logs under ``prefix``.

        CDK's ``log_access_logs`` needs a concrete region to choose that account; a
        CloudFormation mapping keeps this stack environment-agnostic instead.
        """
        self.log_bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LoadBalancerAccessLogs",
                principals=[iam.AccountPrincipal(self.regional_fact(FactName.ELBV2_ACCOUNT))],
                actions=["s3:PutObject"],
                resources=[self.log_bucket.arn_for_objects(f"{prefix}/AWSLogs/{self.account}/*")],
            )
        )
