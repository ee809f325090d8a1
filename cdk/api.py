"""The Chalice app in Lambda behind API Gateway, brought in with chalice.cdk.Chalice,
and the Cognito user pool whose tokens it verifies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import CfnResource, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from chalice.cdk import Chalice
from constructs import Construct

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
STAGE = "api"
# Per-account defaults are far higher; these keep one noisy client from running up a
# bill while leaving room for a busy Space's burst of joins.
THROTTLE_RATE = 200
THROTTLE_BURST = 400
_ACCESS_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId", "ip": "$context.identity.sourceIp",
    "method": "$context.httpMethod", "path": "$context.path", "status": "$context.status",
    "latencyMs": "$context.responseLatency", "time": "$context.requestTime",
})

_WEBSOCKET_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId", "ip": "$context.identity.sourceIp",
    "route": "$context.routeKey", "event": "$context.eventType",
    "status": "$context.status", "time": "$context.requestTime",
})


class Api(Construct):
    def __init__(self, scope: Construct, construct_id: str, *,
                 tables: dict[str, dynamodb.Table], media_events: sqs.Queue,
                 hosting_follower_threshold: int,
                 ice_servers: list[dict[str, Any]] | None = None) -> None:
        super().__init__(scope, construct_id)
        region = Stack.of(self).region
        self.user_pool = cognito.UserPool(
            self, "Users",
            self_sign_up_enabled=True,
            sign_in_aliases=cognito.SignInAliases(email=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            password_policy=cognito.PasswordPolicy(
                min_length=12, require_digits=True, require_lowercase=True,
                require_uppercase=True, require_symbols=True),
            mfa=cognito.Mfa.OPTIONAL,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
        )
        self.issuer = f"https://cognito-idp.{region}.amazonaws.com/{self.user_pool.user_pool_id}"
        # The pool's app client is made with the site (its callback URL is the site's), and
        # the site depends on this API: naming the client here would close a loop. The
        # pool holds only Parlor's own client, so the issuer check is what matters.
        environment = {name: table.table_name for name, table in tables.items()}
        environment.update({
            "AUTH_ISSUER": self.issuer,
            "HOSTING_FOLLOWER_THRESHOLD": str(hosting_follower_threshold),
            "ICE_SERVERS": json.dumps(ice_servers or []),
        })
        self.chalice = Chalice(
            self, "App", source_dir=str(FUNCTIONS),
            stage_config={"api_gateway_stage": STAGE, "environment_variables": environment},
        )
        self.role = self.chalice.get_role("DefaultRole")
        for table in tables.values():
            table.grant_read_write_data(self.role)
        media_events.grant_consume_messages(self.role)
        # The decorator names the queue before the stack has made it, and cannot ask for
        # partial batch responses (the handler returns them): both are set here, on the
        # event source itself, whatever the app read when it was imported.
        self.set_event_source("HandleMediaEvents", "HandleMediaEventsSqsEventSource",
                              media_events.queue_arn)
        self._limit_and_log_the_rest_api()
        self.log_groups = {
            name: logs.LogGroup(self, f"{name}Logs", log_group_name=f"/aws/lambda/{ref}",
                                retention=logs.RetentionDays.ONE_MONTH)
            for name, ref in self.functions().items()
        }

    @property
    def websocket_url(self) -> str:
        api_id = self.chalice.get_resource("WebsocketAPI").ref
        return f"wss://{api_id}.execute-api.{Stack.of(self).region}.amazonaws.com/{STAGE}"

    @property
    def rest_api_id(self) -> str:
        return self.chalice.get_resource("RestAPI").ref

    def functions(self) -> dict[str, str]:
        """Every Lambda function of the app: logical id -> function name (a reference)."""
        found = {}
        for child in self.chalice.sam_template.node.children:
            if isinstance(child, CfnResource) and \
                    child.cfn_resource_type == "AWS::Serverless::Function":
                found[child.node.id] = child.ref
        return found

    def set_event_source(self, function: str, source: str, arn: str,
                         partial_failures: bool = True) -> None:
        prefix = f"Events.{source}.Properties"
        resource = self.chalice.get_resource(function)
        key = "Stream" if ":dynamodb:" in arn or "/stream/" in arn else "Queue"
        resource.add_property_override(f"{prefix}.{key}", arn)
        if partial_failures:
            resource.add_property_override(f"{prefix}.FunctionResponseTypes",
                                           ["ReportBatchItemFailures"])

    def use_join_token_key(self, private_key: secretsmanager.ISecret) -> None:
        """The API, and nothing else in the stack, reads the signing key."""
        private_key.grant_read(self.role)
        for name in self.functions():
            self.chalice.add_environment_variable("JOIN_TOKEN_SECRET_ARN",
                                                  private_key.secret_arn, name)

    def grant(self, statement: iam.PolicyStatement) -> None:
        self.role.add_to_principal_policy(statement)

    def _limit_and_log_the_rest_api(self) -> None:
        access_logs = logs.LogGroup(self, "AccessLogs", retention=logs.RetentionDays.ONE_MONTH)
        api = self.chalice.get_resource("RestAPI")
        api.add_property_override("MethodSettings", [{
            "ResourcePath": "/*", "HttpMethod": "*",
            "ThrottlingRateLimit": THROTTLE_RATE, "ThrottlingBurstLimit": THROTTLE_BURST,
            "MetricsEnabled": True, "LoggingLevel": "OFF",
        }])
        api.add_property_override("AccessLogSetting", {
            "DestinationArn": access_logs.log_group_arn, "Format": _ACCESS_LOG_FORMAT})
        api.add_property_override("TracingEnabled", True)
        # Set on the typed resource (not as an override) so that checks reading the
        # construct, like cdk-nag's, see it too.
        stage = self.chalice.get_resource("WebsocketAPIStage")
        assert isinstance(stage, apigwv2.CfnStage)
        stage.access_log_settings = apigwv2.CfnStage.AccessLogSettingsProperty(
            destination_arn=access_logs.log_group_arn, format=_WEBSOCKET_LOG_FORMAT)
