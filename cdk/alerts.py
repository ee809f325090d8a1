"""The alert pipeline around the Chalice app's handlers (functions/chalicelib/alerts/messages.py):
the Spaces stream feeding HandleSpaceChanges, the fan-out and delivery queues with
their dead-letter queues, the WebSocket API's id for the delivery's live updates, and
the SNS platform applications when the operator names a secret that holds push
credentials (`-c push_secret=...`).

Chalice's decorators name placeholder sources and cannot ask for partial batch
responses; both are set here on the synthesized event sources, as for the media
events (cdk/api.py)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Acknowledgment, CustomResource, Duration, Stack, Token, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import custom_resources as cr
from constructs import Construct

from cdk.api import STAGE, Api
from cdk.messaging import consumed_queue, dead_letter_queue
from chalicelib.platform.queues import (
    ALERT_DELIVERY,
    ALERT_FANOUT,
    SPACE_CHANGES_FAILURES,
    STREAM_MAX_RETRIES,
)

PROVIDER = Path(__file__).resolve().parent / "push_applications"


class PlatformApplication(Construct):
    """An SNS platform application whose credentials never enter a template: the
    operator keeps them in a Secrets Manager secret, and the provider function
    (cdk/push_applications) reads them there while CloudFormation runs it."""

    def __init__(self, scope: Construct, construct_id: str, *, name: str, platform: str,
                 secret: secretsmanager.ISecret, key: str, generation: str,
                 provider: cr.Provider) -> None:
        super().__init__(scope, construct_id)
        resource = CustomResource(
            self, "Resource", service_token=provider.service_token,
            resource_type="Custom::SnsPlatformApplication",
            properties={"Name": name, "Platform": platform, "SecretArn": secret.secret_arn,
                        "Key": key,
                        # The secret's contents are not in the template: a new
                        # generation makes CloudFormation read them again.
                        "Generation": generation})
        self.arn = resource.get_att_string("Arn")


class Alerts(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, api: Api,
                 spaces: dynamodb.Table, push_secret: secretsmanager.ISecret | None,
                 push_generation: str = "1") -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        chalice = api.chalice
        self.fanout, self.fanout_dlq = consumed_queue(self, ALERT_FANOUT)
        self.delivery, self.delivery_dlq = consumed_queue(self, ALERT_DELIVERY)
        # Stream batches that keep failing are described here (Lambda's on-failure
        # destination), so no change of a Space is dropped unseen.
        self.stream_dlq = dead_letter_queue(self, SPACE_CHANGES_FAILURES.logical_name)
        Validations.of(self.stream_dlq).acknowledge(Acknowledgment(
            id="AwsSolutions::AwsSolutions-SQS3",
            reason="This queue is the stream handler's on-failure destination: a "
                   "dead-letter queue that no redrive policy names"))
        # Triggers and fan-out pages enqueue fan-out continuations and delivery pages.
        for function in ("HandleSpaceChanges", "FanOutAlerts", "DeliverAlerts"):
            for queue in (self.fanout, self.delivery):
                queue.grant_send_messages(api.roles[function])
        self.fanout.grant_consume_messages(api.roles["FanOutAlerts"])
        self.delivery.grant_consume_messages(api.roles["DeliverAlerts"])
        changes_role = api.roles["HandleSpaceChanges"]
        self.stream_dlq.grant_send_messages(changes_role)
        spaces.grant_stream_read(changes_role)

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
            consumer = spec.consumer
            assert consumer is not None
            handler = chalice.get_resource(consumer)
            source = f"Events.{consumer}SqsEventSource.Properties"
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
        websocket_api = chalice.get_resource("WebsocketAPI").ref
        chalice.add_environment_variable("WEBSOCKET_API_ID", websocket_api, "DeliverAlerts")
        # The delivery posts to connections; the connect handler closes a user's oldest
        # past their limit (chalicelib/alerts/connections.py).
        for function in ("DeliverAlerts", "WebsocketConnect"):
            api.roles[function].add_to_principal_policy(iam.PolicyStatement(
                actions=["execute-api:ManageConnections"],
                resources=[stack.format_arn(service="execute-api", resource=websocket_api,
                                            resource_name=f"{STAGE}/*/@connections/*")]))

        self.applications: dict[str, str] = {}
        if push_secret is None:
            return
        provider = self._provider(push_secret)
        for key, platform, variable in (("apns", "APNS", "APNS_APPLICATION_ARN"),
                                        ("fcm", "GCM", "FCM_APPLICATION_ARN")):
            name = f"{stack.stack_name}-{key}"
            app = PlatformApplication(self, f"{platform.capitalize()}Application",
                                      name=name, platform=platform, secret=push_secret,
                                      key=key, generation=push_generation,
                                      provider=provider)
            self.applications[key] = app.arn
            for function in ("APIHandler", "DeliverAlerts"):
                chalice.add_environment_variable(variable, app.arn, function)
            # Endpoints are made at run time, one per device, under their application:
            # the API registers and removes devices, the delivery pushes to them and
            # forgets the ones SNS reports disabled.
            endpoints = stack.format_arn(service="sns", resource=f"endpoint/{platform}/{name}",
                                         resource_name="*")
            api.roles["APIHandler"].add_to_principal_policy(iam.PolicyStatement(
                actions=["sns:CreatePlatformEndpoint", "sns:DeleteEndpoint"],
                resources=[app.arn, endpoints]))
            api.roles["DeliverAlerts"].add_to_principal_policy(iam.PolicyStatement(
                actions=["sns:Publish", "sns:DeleteEndpoint"], resources=[endpoints]))
            Validations.of(stack).acknowledge(Acknowledgment(
                id=f"AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sns:"
                   f"{_nag_region(stack)}:<AWS::AccountId>:endpoint/{platform}/{name}/*]",
                reason="SNS makes one endpoint per device at run time, under this "
                       "application's name"))

    def _provider(self, push_secret: secretsmanager.ISecret) -> cr.Provider:
        """The function that makes the platform applications from the secret: it reads
        that one secret and manages only applications named for this stack."""
        stack = Stack.of(self)
        function = lambda_.Function(
            self, "PushApplications", runtime=lambda_.Runtime.PYTHON_3_14,
            handler="index.on_event", code=lambda_.Code.from_asset(str(PROVIDER)),
            timeout=Duration.seconds(30), description="Parlor's SNS platform applications",
            log_group=logs.LogGroup(self, "PushApplicationsLogs",
                                    retention=logs.RetentionDays.ONE_MONTH))
        push_secret.grant_read(function)
        assert function.role is not None
        function.role.add_to_principal_policy(iam.PolicyStatement(
            actions=["sns:CreatePlatformApplication", "sns:SetPlatformApplicationAttributes",
                     "sns:DeletePlatformApplication"],
            resources=[stack.format_arn(service="sns", resource=f"app/{platform}",
                                        resource_name=f"{stack.stack_name}-{key}")
                       for key, platform in (("apns", "APNS"), ("fcm", "GCM"))]))
        function_id = stack.get_logical_id(function.node.default_child)  # type: ignore[arg-type]
        Validations.of(self).acknowledge(Acknowledgment(
            id=f"AwsSolutions::AwsSolutions-IAM5[Resource::<{function_id}.Arn>:*]",
            reason="CDK's custom resource provider may invoke any version of its handler"))
        return cr.Provider(self, "PushProvider", on_event_handler=function)


def _nag_region(stack: Stack) -> str:
    """The region as cdk-nag writes it in a finding's id."""
    return "<AWS::Region>" if Token.is_unresolved(stack.region) else stack.region
