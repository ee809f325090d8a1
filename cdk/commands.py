"""Commands to the media nodes, derived from committed state (functions/chalicelib/
commands.py): the dispatchers on the Members and Spaces tables' streams, their on-failure
queue, and the media nodes' read-only view of the two tables they reconcile with
(docs/media-contract.md, sections 4 and 8). The abandoned-Space sweep's schedule is
Chalice's (an EventBridge rule from `app.schedule`); its role is set here.

As for the alert pipeline (cdk/alerts.py), Chalice's decorators name placeholder streams
and cannot ask for partial batch responses: both are set on the synthesized sources."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk.api import Api
from cdk.media import Media
from cdk.messaging import dead_letter_queue
from chalicelib.platform.queues import COMMAND_FAILURES, STREAM_MAX_RETRIES

# (function, its stream event source, the table whose stream it reads)
DISPATCHERS = (
    ("DispatchMemberCommands", "DispatchMemberCommandsDynamodbEventSource", "MEMBERS_TABLE"),
    ("DispatchSpaceCommands", "DispatchSpaceCommandsDynamodbEventSource", "SPACES_TABLE"),
)
SWEEP = "EndAbandonedSpaces"


class Commands(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, api: Api,
                 tables: dict[str, dynamodb.Table]) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        # Batches that keep failing are described here, so no committed change whose
        # command could not be sent goes unseen (the nodes' reconciliation repairs it).
        self.failures = dead_letter_queue(self, COMMAND_FAILURES.logical_name)
        Validations.of(self.failures).acknowledge(Acknowledgment(
            id="AwsSolutions::AwsSolutions-SQS3",
            reason="This queue is the command dispatchers' on-failure destination: a "
                   "dead-letter queue that no redrive policy names"))
        for function, source, table_variable in DISPATCHERS:
            role = api.roles[function]
            table = tables[table_variable]
            assert table.table_stream_arn is not None
            table.grant_stream_read(role)
            self.failures.grant_send_messages(role)
            Media.grant_commands(role, stack)
            resource = api.chalice.get_resource(function)
            prefix = f"Events.{source}.Properties"
            resource.add_property_override(f"{prefix}.Stream", table.table_stream_arn)
            resource.add_property_override(f"{prefix}.FunctionResponseTypes",
                                           ["ReportBatchItemFailures"])
            resource.add_property_override(f"{prefix}.MaximumRetryAttempts",
                                           STREAM_MAX_RETRIES)
            resource.add_property_override(f"{prefix}.BisectBatchOnFunctionError", True)
            resource.add_property_override(f"{prefix}.DestinationConfig", {
                "OnFailure": {"Type": "SQS", "Destination": self.failures.queue_arn}})

    @staticmethod
    def let_nodes_read(container: ecs.ContainerDefinition,
                       tables: dict[str, dynamodb.Table]) -> None:
        """The media nodes read, never write, the Spaces and Members they hold."""
        for variable in ("SPACES_TABLE", "MEMBERS_TABLE"):
            table = tables[variable]
            container.task_definition.task_role.add_to_principal_policy(iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:BatchGetItem"],
                resources=[table.table_arn]))
            container.add_environment(variable, table.table_name)
