"""What an operator watches: alarms on one SNS topic (e-mailed to `alarm_email`), and a
dashboard named for the stack and its region.

The topic is encrypted with a key of the stack's own whose policy lets CloudWatch use
it: CloudWatch cannot publish to a topic under the AWS-managed SNS key, whose policy
no one can change."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

_FIVE_MINUTES = Duration.minutes(5)
_ABOVE = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
_BELOW = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD


class Operations(Construct):
    def __init__(self, scope: Construct, construct_id: str, *,
                 alarm_email: str | None = None) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        key = kms.Key(self, "AlarmsKey", enable_key_rotation=True,
                      description="Parlor: encrypts the alarm topic; CloudWatch may use it",
                      removal_policy=RemovalPolicy.DESTROY)
        key.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"], resources=["*"],
            conditions={"StringEquals": {"aws:SourceAccount": stack.account}}))
        self.topic = sns.Topic(self, "Alarms", display_name="Parlor alarms",
                               enforce_ssl=True, master_key=key)
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=f"{stack.stack_name}-{stack.region}")
        self.alarms: list[cloudwatch.Alarm] = []

    def _alarm(self, name: str, metric: cloudwatch.IMetric, threshold: float,
               description: str, periods: int = 1,
               comparison: cloudwatch.ComparisonOperator = _ABOVE,
               missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
               ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self, name, metric=metric, threshold=threshold, evaluation_periods=periods,
            comparison_operator=comparison, treat_missing_data=missing,
            alarm_description=description)
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)
        self.dashboard.add_widgets(cloudwatch.GraphWidget(title=description, left=[metric]))
        return alarm

    def watch_function(self, name: str, function_name: str) -> None:
        for metric_name, what in (("Errors", "errors"), ("Throttles", "throttled calls")):
            metric = cloudwatch.Metric(namespace="AWS/Lambda", metric_name=metric_name,
                                       dimensions_map={"FunctionName": function_name},
                                       statistic="Sum", period=_FIVE_MINUTES)
            self._alarm(f"{name}{metric_name}", metric, 1, f"{name}: Lambda {what}")

    def watch_dead_letters(self, name: str, queue: sqs.IQueue) -> None:
        self._alarm(f"{name}DeadLetters", queue.metric_approximate_number_of_messages_visible(
            period=_FIVE_MINUTES), 1, f"{name}: messages in the dead-letter queue")

    def watch_lag(self, name: str, queue: sqs.IQueue, seconds: int = 60) -> None:
        self._alarm(f"{name}Lag", queue.metric_approximate_age_of_oldest_message(
            period=Duration.minutes(1)), seconds, f"{name}: oldest message waiting (s)",
            periods=3)

    def watch_rest_api(self, api_name: str, stage: str) -> None:
        """5xx: any burst. 4xx (which counts throttled 429s): a fifth of all calls, for
        a quarter of an hour, is more than clients' own mistakes."""
        def metric(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace="AWS/ApiGateway", metric_name=name,
                                     dimensions_map={"ApiName": api_name, "Stage": stage},
                                     statistic=statistic, period=_FIVE_MINUTES)
        self._alarm("Api5xx", metric("5XXError", "Sum"), 5, "API: 5xx responses")
        self._alarm("Api4xx", metric("4XXError", "Average"), 0.2,
                    "API: share of 4xx responses, 429s included", periods=3)

    def watch_firewall(self, name: str, web_acl_name: str, rule_metric: str,
                       region: str) -> None:
        """Requests a web ACL's per-client limit refused (429s that API Gateway's own
        metrics never see)."""
        metric = cloudwatch.Metric(namespace="AWS/WAFV2", metric_name="BlockedRequests",
                                   dimensions_map={"WebACL": web_acl_name,
                                                   "Rule": rule_metric, "Region": region},
                                   statistic="Sum", period=_FIVE_MINUTES)
        self._alarm(f"{name}RateLimited", metric, 100,
                    f"{name}: requests refused by the per-client limit")

    def watch_tables(self, tables: dict[str, dynamodb.Table]) -> None:
        for name, table in tables.items():
            label = name.removesuffix("_TABLE").title().replace("_", "")
            throttled = cloudwatch.MathExpression(
                expression="reads + writes", label=f"{label}: throttled events",
                using_metrics={
                    "reads": table.metric("ReadThrottleEvents", statistic="Sum",
                                          period=_FIVE_MINUTES),
                    "writes": table.metric("WriteThrottleEvents", statistic="Sum",
                                           period=_FIVE_MINUTES)},
                period=_FIVE_MINUTES)
            self._alarm(f"{label}Throttles", throttled, 1,
                        f"{label} table: throttled reads and writes")

    def watch_load_balancer(self, name: str, load_balancer: elbv2.ApplicationLoadBalancer,
                            target_group: elbv2.ApplicationTargetGroup) -> None:
        metrics = load_balancer.metrics
        self._alarm(f"{name}Elb5xx", metrics.http_code_elb(
            elbv2.HttpCodeElb.ELB_5XX_COUNT, period=_FIVE_MINUTES), 5,
            f"{name}: 5xx from the load balancer")
        self._alarm(f"{name}Target5xx", metrics.http_code_target(
            elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=_FIVE_MINUTES), 5,
            f"{name}: 5xx from the nodes")
        self._alarm(f"{name}Unhealthy", target_group.metrics.unhealthy_host_count(
            statistic="Maximum", period=Duration.minutes(1)), 1,
            f"{name}: unhealthy nodes", periods=3)

    def watch_running_tasks(self, name: str, service: ecs.FargateService,
                            minimum: int) -> None:
        """Fewer tasks running than the service's minimum; no data means none runs."""
        running = cloudwatch.Metric(
            namespace="ECS/ContainerInsights", metric_name="RunningTaskCount",
            dimensions_map={"ClusterName": service.cluster.cluster_name,
                            "ServiceName": service.service_name},
            statistic="Minimum", period=Duration.minutes(1))
        self._alarm(f"{name}Running", running, minimum, f"{name}: running tasks",
                    periods=3, comparison=_BELOW,
                    missing=cloudwatch.TreatMissingData.BREACHING)

    def watch_media_nodes(self, name: str, service: ecs.FargateService,
                          participants: cloudwatch.IMetric, capacity: int) -> None:
        self._alarm(f"{name}Cpu", service.metric_cpu_utilization(period=Duration.minutes(1)),
                    85, f"{name}: node CPU (%)", periods=3)
        self._alarm(f"{name}NearCapacity", participants, capacity * 0.9,
                    f"{name}: participants on the busiest node (of {capacity})", periods=3)
