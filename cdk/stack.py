"""The Parlor stack: every construct composed in one place."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import CfnOutput, Fn, Stack
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from cdk import findings
from cdk.alerts import Alerts
from cdk.api import Api
from cdk.browser import BrowserClient
from cdk.data import Data
from cdk.keys import JoinTokenKeys
from cdk.media import ORIGIN_HEADER, Media
from cdk.messaging import Messaging
from cdk.operations import Operations
from cdk.web import Web


class ParlorStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        context = self.node.try_get_context
        threshold = int(context("hosting_follower_threshold") or 600)
        # From cdk.json a list; from `cdk deploy -c ice_servers='[...]'` a JSON string.
        ice_servers = context("ice_servers") or []
        if isinstance(ice_servers, str):
            ice_servers = json.loads(ice_servers)
        # Unique per stack and unknown outside the account: the shared secret CloudFront
        # sends the load balancer, and the Cognito domain's suffix.
        stack_uuid = Fn.select(2, Fn.split("/", self.stack_id))

        data = Data(self, "Data")
        messaging = Messaging(self, "Messaging")
        api = Api(self, "Api", tables=data.tables, media_events=messaging.media_events,
                  hosting_follower_threshold=threshold, ice_servers=ice_servers)
        keys = JoinTokenKeys(
            self, "JoinTokenKeys",
            provisioner=api.chalice.get_function("ProvisionJoinTokenKeys"),
            provisioner_role=api.role,
            generation=str(context("join_token_key_generation") or "1"))
        api.use_join_token_key(keys.private_key)
        # Push credentials: `-c push='{"apns": {...}, "fcm": {...}}'`, each the SNS
        # platform application's attributes (e.g. PlatformCredential, PlatformPrincipal).
        push = context("push") or {}
        alerts = Alerts(self, "Alerts", chalice=api.chalice,
                        spaces=data.tables["SPACES_TABLE"],
                        push_credentials=json.loads(push) if isinstance(push, str) else push)

        media = Media(self, "Media", nodes_table=data.tables["NODES_TABLE"],
                      media_events=messaging.media_events, public_key=keys.public_key,
                      origin_secret=stack_uuid,
                      max_nodes=int(context("max_media_nodes") or 4),
                      vcpus=int(context("media_node_vcpus") or 1))
        media.service.node.add_dependency(keys.resource)
        Media.grant_commands(api.role, self)

        web = Web(self, "Web", rest_api_id=api.rest_api_id,
                  load_balancer=media.load_balancer, origin_header=ORIGIN_HEADER,
                  origin_secret=stack_uuid)
        media.container.add_environment("PUBLIC_URL", web.url)

        domain = api.user_pool.add_domain("SignIn", cognito_domain=cognito.CognitoDomainOptions(
            domain_prefix=Fn.join("-", ["parlor", Fn.select(0, Fn.split("-", stack_uuid))])))
        client = api.user_pool.add_client(
            "WebClient", generate_secret=False,
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL],
                callback_urls=[f"{web.url}/"], logout_urls=[f"{web.url}/"]))
        web.publish({
            "auth": {"mode": "cognito", "cognito": {
                "domain": domain.base_url(), "client_id": client.user_pool_client_id}},
            "api_url": "/api",
            "websocket_url": api.websocket_url,
            "demo_users": [],
        })

        BrowserClient(self, "BrowserClient", api=api, web=web, provisioner_role=api.role,
                      provisioner=api.chalice.get_function("ProvisionJoinTokenKeys"))

        operations = Operations(self, "Operations")
        for name, function_name in api.functions().items():
            operations.watch_function(name, function_name)
        operations.watch_dead_letters("MediaEvents", messaging.media_events_dlq)
        for name, dlq in (("AlertFanout", alerts.fanout_dlq),
                          ("AlertDelivery", alerts.delivery_dlq),
                          ("SpaceChanges", alerts.stream_dlq)):
            operations.watch_dead_letters(name, dlq)
        operations.watch_lag("AlertDelivery", alerts.delivery)
        operations.watch_service("MediaNodes", media.service, Media.participants_metric())

        findings.acknowledge(self, tables=list(data.tables.values()), site=web.bucket,
                             provisioner="ProvisionJoinTokenKeys")
        CfnOutput(self, "SiteUrl", value=web.url)
        CfnOutput(self, "UserPoolId", value=api.user_pool.user_pool_id)
        CfnOutput(self, "UserPoolClientId", value=client.user_pool_client_id)
