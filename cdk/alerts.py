"""The alert pipeline around the Chalice app's handlers (functions/chalicelib/alerts.py):
the Spaces stream feeding HandleSpaceChanges, the fan-out and delivery queues with
their dead-letter queues, the WebSocket API's id for the delivery's live updates, and
the SNS platform applications when push credentials are given as context.

Chalice's decorators name placeholder sources and cannot ask for partial batch
responses; both are set here on the synthesized event sources, as for the media
events (cdk/api.py)."""

from __future__ import annotations

from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import custom_resources as cr
from chalice.cdk import Chalice
from constructs import Construct

from cdk.messaging import consumed_queue, dead_letter_queue
from chalicelib.queues import (
    ALERT_DELIVERY,
    ALERT_FANOUT,
    SPACE_CHANGES_FAILURES,
    STREAM_MAX_RETRIES,
)


class PlatformApplication(Construct):
    """An SNS platform application. CloudFormation has no resource type for one, so
    it is made through the SNS API; the credentials sit in the template's custom
    resource properties: pass them as context only from where secrets may be."""

    def __init__(self, scope: Construct, construct_id: str, *, name: str, platform: str,
                 attributes: dict[str, str]) -> None:
        super().__init__(scope, construct_id)
        created = cr.PhysicalResourceId.from_response("PlatformApplicationArn")
        resource = cr.AwsCustomResource(
            self, "Resource",
            on_create=cr.AwsSdkCall(
                service="SNS", action="createPlatformApplication",
                parameters={"Name": name, "Platform": platform, "Attributes": attributes},
                physical_resource_id=created),
            on_update=cr.AwsSdkCall(
                service="SNS", action="setPlatformApplicationAttributes",
                parameters={"PlatformApplicationArn": cr.PhysicalResourceIdReference(),
                            "Attributes": attributes},
                physical_resource_id=created),
            on_delete=cr.AwsSdkCall(
                service="SNS", action="deletePlatformApplication",
                parameters={"PlatformApplicationArn": cr.PhysicalResourceIdReference()}),
            policy=cr.AwsCustomResourcePolicy.from_sdk_calls(
                resources=cr.AwsCustomResourcePolicy.ANY_RESOURCE),
            install_latest_aws_sdk=False,
        )
        self.arn = resource.get_response_field("PlatformApplicationArn")


class Alerts(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, chalice: Chalice,
                 spaces: dynamodb.Table, push_credentials: dict[str, Any]) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.fanout, self.fanout_dlq = consumed_queue(self, ALERT_FANOUT)
        self.delivery, self.delivery_dlq = consumed_queue(self, ALERT_DELIVERY)
        # Stream batches that keep failing are described here (Lambda's on-failure
        # destination), so no change of a Space is dropped unseen.
        self.stream_dlq = dead_letter_queue(self, SPACE_CHANGES_FAILURES.logical_name)
        Validations.of(self.stream_dlq).acknowledge(Acknowledgment(
            id="AwsSolutions::AwsSolutions-SQS3",
            reason="This queue is the stream handler's on-failure destination: a "
                   "dead-letter queue that no redrive policy names"))
        role = chalice.get_role("DefaultRole")
        for queue in (self.fanout, self.delivery):
            queue.grant_send_messages(role)
            queue.grant_consume_messages(role)
        self.stream_dlq.grant_send_messages(role)
        spaces.grant_stream_read(role)

        changes = chalice.get_resource("HandleSpaceChanges")
        source = "Events.HandleSpaceChangesDynamodbEventSource.Properties"
        assert spaces.table_stream_arn is not None
        changes.add_property_override(f"{source}.Stream", spaces.table_stream_arn)
        changes.add_property_override(f"{source}.FunctionResponseTypes",
                                      ["ReportBatchItemFailures"])
        changes.add_property_override(f"{source}.MaximumRetryAttempts",
                                      STREAM_MAX_RETRIES)
        changes.add_property_override(f"{source}.BisectBatchOnFunctionError", True)
        changes.add_property_override(f"{source}.DestinationConfig", {
            "OnFailure": {"Type": "SQS", "Destination": self.stream_dlq.queue_arn}})
        for spec, queue in ((ALERT_FANOUT, self.fanout), (ALERT_DELIVERY, self.delivery)):
            function = spec.consumer
            assert function is not None
            handler = chalice.get_resource(function)
            source = f"Events.{function}SqsEventSource.Properties"
            handler.add_property_override(f"{source}.Queue", queue.queue_arn)
            handler.add_property_override(f"{source}.FunctionResponseTypes",
                                          ["ReportBatchItemFailures"])

        environment = {
            str(ALERT_FANOUT.url_variable): self.fanout.queue_url,
            str(ALERT_DELIVERY.url_variable): self.delivery.queue_url,
        }
        for function in ("HandleSpaceChanges", "FanOutAlerts", "DeliverAlerts"):
            for name, value in environment.items():
                chalice.add_environment_variable(name, value, function)
        # The role may post to connections already: Chalice's generated policy grants it.
        chalice.add_environment_variable("WEBSOCKET_API_ID",
                                         chalice.get_resource("WebsocketAPI").ref,
                                         "DeliverAlerts")

        self.applications: dict[str, str] = {}
        platforms = (("apns", "APNS", "APNS_APPLICATION_ARN"),
                     ("fcm", "GCM", "FCM_APPLICATION_ARN"))
        for key, platform, variable in platforms:
            attributes = push_credentials.get(key)
            if not attributes:
                continue
            app = PlatformApplication(self, f"{platform.capitalize()}Application",
                                      name=f"{stack.stack_name}-{key}", platform=platform,
                                      attributes=dict(attributes))
            self.applications[key] = app.arn
            for function in ("APIHandler", "DeliverAlerts"):
                chalice.add_environment_variable(variable, app.arn, function)
            # Endpoints are made at run time, one per device, under their application.
            role.add_to_principal_policy(iam.PolicyStatement(
                actions=["sns:CreatePlatformEndpoint", "sns:DeleteEndpoint", "sns:Publish"],
                resources=[app.arn, stack.format_arn(
                    service="sns", resource=f"endpoint/{platform}/{stack.stack_name}-{key}",
                    resource_name="*")]))
