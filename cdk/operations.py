"""What an operator watches: alarms on Lambda errors, dead-letter queues, node CPU and
alert fan-out lag, all on one SNS topic, and a dashboard."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct


class Operations(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self, "Alarms", display_name="Parlor alarms", enforce_ssl=True,
            master_key=kms.Alias.from_alias_name(self, "SnsKey", "alias/aws/sns"))
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name="Parlor")
        self.alarms: list[cloudwatch.Alarm] = []

    def _alarm(self, name: str, metric: cloudwatch.IMetric, threshold: float,
               description: str, periods: int = 1) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self, name, metric=metric, threshold=threshold, evaluation_periods=periods,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description)
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)
        self.dashboard.add_widgets(cloudwatch.GraphWidget(title=description, left=[metric]))
        return alarm

    def watch_function(self, name: str, function_name: str) -> None:
        errors = cloudwatch.Metric(namespace="AWS/Lambda", metric_name="Errors",
                                   dimensions_map={"FunctionName": function_name},
                                   statistic="Sum", period=Duration.minutes(5))
        self._alarm(f"{name}Errors", errors, 1, f"{name}: Lambda errors")

    def watch_dead_letters(self, name: str, queue: sqs.IQueue) -> None:
        self._alarm(f"{name}DeadLetters", queue.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(5)), 1, f"{name}: messages in the dead-letter queue")

    def watch_lag(self, name: str, queue: sqs.IQueue, seconds: int = 60) -> None:
        self._alarm(f"{name}Lag", queue.metric_approximate_age_of_oldest_message(
            period=Duration.minutes(1)), seconds, f"{name}: oldest message waiting (s)",
            periods=3)

    def watch_service(self, name: str, service: ecs.FargateService,
                      participants: cloudwatch.IMetric) -> None:
        self._alarm(f"{name}Cpu", service.metric_cpu_utilization(period=Duration.minutes(1)),
                    85, f"{name}: node CPU (%)", periods=3)
        self.dashboard.add_widgets(cloudwatch.GraphWidget(
            title=f"{name}: participants per node", left=[participants]))
