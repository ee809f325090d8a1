"""The Chalice app in Lambda behind API Gateway, brought in with chalice.cdk.Chalice,
and the Cognito user pool whose tokens it verifies.

Every function runs under a role of its own (`roles`), made here rather than by Chalice:
Chalice reads per-function settings only from `.chalice/config.json` on disk, not from
the construct's stage config, so the stage config turns Chalice's role off and each
function's `Role` is pointed at its own role below. Each function waits for its role's
policy (DependsOn), so no event source mapping or custom resource calls a function
whose permissions do not exist yet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import CfnResource, Fn, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sam as sam
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from chalice.cdk import Chalice
from constructs import Construct

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
STAGE = "api"
# The function behind every REST route, and the one that makes the join-token keys.
API_FUNCTION = "APIHandler"
KEY_PROVISIONER = "ProvisionJoinTokenKeys"
# Chalice needs some role ARN when it does not manage roles; every function's Role is
# replaced by its own role's ARN, and the infra tests check that none is left.
_NO_ROLE = "arn:aws:iam::000000000000:role/replaced-by-cdk-api"
# Lambda allows 64 characters in a function name: "<stack>-WebsocketDisconnect".
_LONGEST_FUNCTION = len("WebsocketDisconnect")
# Per-account defaults are far higher; these keep one noisy client from running up a
# bill while leaving room for a busy Space's burst of joins. Per-client limits are the
# web ACLs' (cdk/edge.py).
THROTTLE_RATE = 200
THROTTLE_BURST = 400
_ACCESS_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId", "ip": "$context.identity.sourceIp",
    "method": "$context.httpMethod", "path": "$context.path", "status": "$context.status",
    "latencyMs": "$context.responseLatency", "time": "$context.requestTime",
    "waf": "$context.waf.status",
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
                 ice_servers: list[dict[str, Any]] | None = None,
                 ses: cognito.UserPoolEmail | None = None) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        if len(stack.stack_name) + 1 + _LONGEST_FUNCTION > 64:
            raise ValueError(f"the stack name {stack.stack_name!r} is too long: its function "
                             f"names ('<stack>-<handler>') must fit Lambda's 64 characters, "
                             f"so use at most {63 - _LONGEST_FUNCTION} characters")
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
            # Cognito's own sender allows 50 e-mails a day for the account: enough to
            # try Parlor, not to run it (docs/deploy.md). SES (`ses_from_email`) lifts it.
            email=ses,
        )
        self.issuer = f"https://cognito-idp.{stack.region}.amazonaws.com/{self.user_pool.user_pool_id}"
        environment = {name: table.table_name for name, table in tables.items()}
        environment.update({
            "AUTH_ISSUER": self.issuer,
            "HOSTING_FOLLOWER_THRESHOLD": str(hosting_follower_threshold),
            "ICE_SERVERS": json.dumps(ice_servers or []),
        })
        self.chalice = Chalice(
            self, "App", source_dir=str(FUNCTIONS),
            stage_config={
                "api_gateway_stage": STAGE,
                # Reached only through CloudFront (cdk/edge.py), which is the edge.
                "api_gateway_endpoint_type": "REGIONAL",
                "environment_variables": environment,
                "xray": True,
                "manage_iam_role": False,
                "iam_role_arn": _NO_ROLE,
            },
        )
        self.roles: dict[str, iam.Role] = {}
        self.function_names: dict[str, str] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        for name in self.functions():
            self._own_role_and_name(name)
        for name, role in self.roles.items():
            if name == KEY_PROVISIONER:
                continue  # it writes two secrets and reads no table (cdk/keys.py)
            for table in tables.values():
                table.grant_read_write_data(role)
        media_events.grant_consume_messages(self.roles["HandleMediaEvents"])
        # The decorator names the queue before the stack has made it, and cannot ask for
        # partial batch responses (the handler returns them): both are set here, on the
        # event source itself, whatever the app read when it was imported.
        self.set_event_source("HandleMediaEvents", "HandleMediaEventsSqsEventSource",
                              media_events.queue_arn)
        self._name_the_rest_api_function()
        self._limit_and_log_the_rest_api()

    @property
    def role(self) -> iam.Role:
        """The API function's role."""
        return self.roles[API_FUNCTION]

    @property
    def websocket_url(self) -> str:
        api_id = self.chalice.get_resource("WebsocketAPI").ref
        return f"wss://{api_id}.execute-api.{Stack.of(self).region}.amazonaws.com/{STAGE}"

    @property
    def rest_api_id(self) -> str:
        return self.chalice.get_resource("RestAPI").ref

    @property
    def rest_api_name(self) -> str:
        """The REST API's name: API Gateway's metrics are per name (ApiName)."""
        return f"{Stack.of(self).stack_name}-api"

    @staticmethod
    def rest_api_stage_arn() -> str:
        """The REST API's stage. `RestAPI.Stage` is SAM's reference to the stage its
        transform makes, so whatever names this ARN waits for that stage."""
        return Fn.sub("arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/"
                      "${RestAPI}/stages/${RestAPI.Stage}")

    def functions(self) -> list[str]:
        """Every Lambda function of the app, by logical id (Chalice's handler names)."""
        return [child.node.id for child in self.chalice.sam_template.node.children
                if isinstance(child, CfnResource)
                and child.cfn_resource_type == "AWS::Serverless::Function"]

    def set_event_source(self, function: str, source: str, arn: str,
                         partial_failures: bool = True) -> None:
        prefix = f"Events.{source}.Properties"
        resource = self.chalice.get_resource(function)
        key = "Stream" if ":dynamodb:" in arn or "/stream/" in arn else "Queue"
        resource.add_property_override(f"{prefix}.{key}", arn)
        if partial_failures:
            resource.add_property_override(f"{prefix}.FunctionResponseTypes",
                                           ["ReportBatchItemFailures"])

    def set_environment(self, name: str, value: str, *functions: str) -> None:
        for function in functions:
            self.chalice.add_environment_variable(name, value, function)

    def use_join_token_key(self, private_key: secretsmanager.ISecret) -> None:
        """The API function mints join tokens: it alone reads the signing key."""
        private_key.grant_read(self.role)
        self.set_environment("JOIN_TOKEN_SECRET_ARN", private_key.secret_arn, API_FUNCTION)

    def grant(self, statement: iam.PolicyStatement) -> None:
        self.role.add_to_principal_policy(statement)

    def _own_role_and_name(self, name: str) -> None:
        """A role for one function, its fixed name and its log group. The name is fixed
        (`<stack>-<handler>`) so the log group, the role's log permission and the REST
        API's integration can name the function without referring to it: the function
        itself waits for its role's policy, and the REST API is an origin of the site
        whose URL the web client (named in the API function's settings) needs."""
        stack = Stack.of(self)
        function_name = f"{stack.stack_name}-{name}"
        resource = self.chalice.get_resource(name)
        resource.add_property_override("FunctionName", function_name)
        role = iam.Role(self, f"{name}Role",
                        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description=f"Parlor's {name} function")
        resource.add_property_override("Role", role.role_arn)
        resource.node.add_dependency(role)
        self.log_groups[name] = logs.LogGroup(
            self, f"{name}Logs", log_group_name=f"/aws/lambda/{function_name}",
            retention=logs.RetentionDays.ONE_MONTH)
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[self.log_groups[name].log_group_arn]))
        # Tracing (Chalice's `xray`) sends segments; X-Ray has no resource-level scope.
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"], resources=["*"]))
        self.roles[name] = role
        self.function_names[name] = function_name

    def _name_the_rest_api_function(self) -> None:
        """Chalice's routes call `${APIHandler.Arn}`; they call the same function by its
        fixed name instead, so the REST API does not wait for the function (which waits
        for the web client, whose callback is the site in front of this REST API)."""
        api = self.chalice.get_resource("RestAPI")
        assert isinstance(api, sam.CfnApi)
        body = api.definition_body
        assert isinstance(body, dict)
        by_name = ("arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"
                   + self.function_names[API_FUNCTION])
        stack = Stack.of(self)
        for methods in body["paths"].values():
            for method in methods.values():
                integration = method.get("x-amazon-apigateway-integration", {})
                # CfnInclude holds each URI as a token of its Fn::Sub.
                uri = stack.resolve(integration.get("uri"))
                if isinstance(uri, dict) and isinstance(uri.get("Fn::Sub"), str):
                    integration["uri"] = {"Fn::Sub": uri["Fn::Sub"].replace(
                        f"${{{API_FUNCTION}.Arn}}", by_name)}
        api.definition_body = body
        api.name = self.rest_api_name

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
        # A stage that logs needs the account's API Gateway logging role, which a
        # fresh account or region does not have: the first deploy would fail without it.
        account = self._account_logging_role()
        api.node.add_dependency(account)
        stage.node.add_dependency(account)

    def _account_logging_role(self) -> apigateway.CfnAccount:
        """API Gateway's account-level CloudWatch Logs role (one per account and region).
        The role is kept when the stack goes: the account setting still names it, and
        another stack in the account may log through it."""
        role = iam.Role(
            self, "ApiGatewayLogging",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="API Gateway's account-level role for access and execution logs",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(
                "service-role/AmazonAPIGatewayPushToCloudWatchLogs")])
        role.apply_removal_policy(RemovalPolicy.RETAIN)
        return apigateway.CfnAccount(self, "ApiGatewayAccount",
                                     cloud_watch_role_arn=role.role_arn)
