"""The service's alarms and the encrypted topic they notify."""

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions


def service_alarms(
    stack: Stack,
    *,
    alarm_email: str | None,
    load_balancer: elbv2.ApplicationLoadBalancer,
    target_group: elbv2.ApplicationTargetGroup,
    database: rds.DatabaseInstance,
) -> sns.Topic:
    """Alarms on 5xx, unhealthy tasks and the database, each notifying (and clearing) the topic.

    The constructs are created in ``stack`` itself, so their logical ids are those of a stack
    that always held them.
    """
    key = kms.Key(
        stack,
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
            conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
        )
    )
    topic = sns.Topic(
        stack,
        "AlarmTopic",
        display_name="AnyCompany Support alarms",
        master_key=key,
        enforce_ssl=True,
    )
    if alarm_email:
        topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
    action = cloudwatch_actions.SnsAction(topic)

    at_least = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
    not_breaching = cloudwatch.TreatMissingData.NOT_BREACHING
    lb_metrics = load_balancer.metrics
    five_minutes = Duration.minutes(5)
    alarms = [
        cloudwatch.Alarm(
            stack,
            "LoadBalancer5xx",
            alarm_description="The load balancer itself answered with 5xx (no healthy task?)",
            metric=lb_metrics.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, period=five_minutes),
            threshold=10,
            evaluation_periods=1,
            comparison_operator=at_least,
            treat_missing_data=not_breaching,
        ),
        cloudwatch.Alarm(
            stack,
            "Target5xx",
            alarm_description="The app answered with 5xx",
            metric=lb_metrics.http_code_target(
                elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=five_minutes
            ),
            threshold=10,
            evaluation_periods=1,
            comparison_operator=at_least,
            treat_missing_data=not_breaching,
        ),
        cloudwatch.Alarm(
            stack,
            "UnhealthyTargets",
            alarm_description="At least one task fails the load balancer health check",
            metric=target_group.metrics.unhealthy_host_count(
                statistic=cloudwatch.Stats.MAXIMUM, period=Duration.minutes(1)
            ),
            threshold=1,
            evaluation_periods=3,
            comparison_operator=at_least,
            treat_missing_data=not_breaching,
        ),
        cloudwatch.Alarm(
            stack,
            "DatabaseCpu",
            alarm_description="PostgreSQL CPU above 80% for 15 minutes",
            metric=database.metric_cpu_utilization(period=five_minutes),
            threshold=80,
            evaluation_periods=3,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        ),
        cloudwatch.Alarm(
            stack,
            "DatabaseFreeStorage",
            alarm_description="PostgreSQL has less than 2 GiB of free storage",
            metric=database.metric_free_storage_space(period=five_minutes),
            threshold=2 * 1024**3,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        ),
    ]
    for alarm in alarms:
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
    return topic
