"""The Chalice app in Lambda behind API Gateway, brought in with chalice.cdk.Chalice,
and the Cognito user pool whose tokens it verifies."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Stack
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_sqs as sqs
from chalice.cdk import Chalice
from constructs import Construct

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


class Api(Construct):
    def __init__(self, scope: Construct, construct_id: str, *,
                 tables: dict[str, dynamodb.Table], media_events: sqs.Queue,
                 hosting_follower_threshold: int) -> None:
        super().__init__(scope, construct_id)
        region = Stack.of(self).region
        self.user_pool = cognito.UserPool(
            self, "Users",
            self_sign_up_enabled=True,
            sign_in_aliases=cognito.SignInAliases(email=True),
            password_policy=cognito.PasswordPolicy(min_length=12),
        )
        self.user_pool_client = self.user_pool.add_client(
            "WebClient", auth_flows=cognito.AuthFlow(user_srp=True))
        issuer = f"https://cognito-idp.{region}.amazonaws.com/{self.user_pool.user_pool_id}"
        environment = {name: table.table_name for name, table in tables.items()}
        environment.update({
            "AUTH_ISSUER": issuer,
            "AUTH_AUDIENCE": self.user_pool_client.user_pool_client_id,
            "HOSTING_FOLLOWER_THRESHOLD": str(hosting_follower_threshold),
        })
        self.chalice = Chalice(
            self, "App", source_dir=str(FUNCTIONS),
            stage_config={"api_gateway_stage": "api", "environment_variables": environment},
        )
        role = self.chalice.get_role("DefaultRole")
        for table in tables.values():
            table.grant_read_write_data(role)
        media_events.grant_consume_messages(role)
        # The decorator names the queue before the stack has made it, and cannot ask for
        # partial batch responses (the handler returns them): both are set here, on the
        # event source itself, whatever the app read when it was imported.
        source = "Events.HandleMediaEventsSqsEventSource.Properties"
        handler = self.chalice.get_resource("HandleMediaEvents")
        handler.add_property_override(f"{source}.Queue", media_events.queue_arn)
        handler.add_property_override(f"{source}.FunctionResponseTypes",
                                      ["ReportBatchItemFailures"])
