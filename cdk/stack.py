"""The Parlor stack: every construct composed in one place."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import CfnOutput, Duration, Environment, Fn, Stack, Token
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk import findings
from cdk.alerts import Alerts
from cdk.api import API_FUNCTION, KEY_PROVISIONER, STAGE, Api
from cdk.browser import BrowserClient
from cdk.commands import Commands
from cdk.data import Data
from cdk.edge import ApiFirewall, CloudFrontFirewall, EdgeStack, OriginSecret
from cdk.hls import Hls
from cdk.keys import JoinTokenKeys
from cdk.media import Media
from cdk.messaging import Messaging
from cdk.operations import Operations
from cdk.turn import Turn
from cdk.web import Web

# CloudFront's web ACL lives here, whatever the stack's region.
EDGE_REGION = "us-east-1"


def _region_of(kwargs: dict[str, Any]) -> str | None:
    env = kwargs.get("env")
    region = env.region if isinstance(env, Environment) else None
    return region if region and not Token.is_unresolved(region) else None


class ParlorStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        region = _region_of(kwargs)
        if region is None:
            raise ValueError(
                "Parlor needs to know its region when it synthesizes (CloudFront's web ACL "
                "is made in us-east-1, beside the stack or in a companion stack): run the "
                "CDK command line with AWS credentials and a region (AWS_DEFAULT_REGION), "
                "or pass env=Environment(region=...) to ParlorStack")
        # Elsewhere than us-east-1, CloudFront's web ACL is a companion stack's, read
        # across regions (CDK keeps the reference in SSM parameters).
        companion = region != EDGE_REGION
        if companion:
            kwargs.setdefault("cross_region_references", True)
        super().__init__(scope, construct_id, **kwargs)
        context = self.node.try_get_context
        prefix = f"{self.stack_name}-{region}"
        threshold = int(context("hosting_follower_threshold") or 600)
        # From cdk.json a list; from `cdk deploy -c ice_servers='[...]'` a JSON string.
        ice_servers = context("ice_servers") or []
        if isinstance(ice_servers, str):
            ice_servers = json.loads(ice_servers)
        if context("push"):
            raise ValueError("push credentials are no longer taken as context (they ended "
                             "up in the template): put them in a Secrets Manager secret "
                             "and pass its name or ARN as -c push_secret=... "
                             "(docs/deploy.md)")
        # Unique per stack: the Cognito domain's suffix (public, and no secret).
        stack_uuid = Fn.select(2, Fn.split("/", self.stack_id))

        data = Data(self, "Data")
        messaging = Messaging(self, "Messaging")
        ses_from_email = context("ses_from_email")
        ses = cognito.UserPoolEmail.with_ses(
            from_email=ses_from_email, from_name="Parlor",
            ses_verified_domain=context("ses_verified_domain"),
            ses_region=context("ses_region")) if ses_from_email else None
        api = Api(self, "Api", tables=data.tables, media_events=messaging.media_events,
                  hosting_follower_threshold=threshold, ice_servers=ice_servers, ses=ses)
        keys = JoinTokenKeys(
            self, "JoinTokenKeys",
            provisioner=api.chalice.get_function(KEY_PROVISIONER),
            provisioner_role=api.roles[KEY_PROVISIONER],
            generation=str(context("join_token_key_generation") or "1"))
        api.use_join_token_key(keys.private_key)

        push_secret_name = context("push_secret")
        push_secret = None
        if push_secret_name:
            push_secret = (
                secretsmanager.Secret.from_secret_complete_arn(self, "PushSecret",
                                                               push_secret_name)
                if push_secret_name.startswith("arn:")
                else secretsmanager.Secret.from_secret_name_v2(self, "PushSecret",
                                                               push_secret_name))
        alerts = Alerts(self, "Alerts", api=api, spaces=data.tables["SPACES_TABLE"],
                        push_secret=push_secret,
                        push_generation=str(context("push_generation") or "1"))

        origin = OriginSecret(self, "OriginSecret",
                              generation=int(context("origin_secret_generation") or 1))
        media = Media(self, "Media", nodes_table=data.tables["NODES_TABLE"],
                      media_events=messaging.media_events, public_key=keys.public_key,
                      origin=origin, max_nodes=int(context("max_media_nodes") or 4),
                      vcpus=int(context("media_node_vcpus") or 1))
        media.service.node.add_dependency(keys.resource)
        commands = Commands(self, "Commands", api=api, tables=data.tables)
        Commands.let_nodes_read(media.container, data.tables)

        api_firewall = ApiFirewall(self, "ApiFirewall", origin=origin,
                                   stage_arn=api.rest_api_stage_arn(), prefix=prefix)
        for secret in origin.secrets:
            secret.grant_read(api.role)
        api.set_environment("ORIGIN_HEADER_NAME", origin.header, API_FUNCTION)
        api.set_environment("ORIGIN_SECRET_ARN", origin.current.secret_arn, API_FUNCTION)
        if origin.previous is not None:
            api.set_environment("ORIGIN_PREVIOUS_SECRET_ARN", origin.previous.secret_arn,
                                API_FUNCTION)
        if companion:
            edge = EdgeStack(scope, f"{construct_id}Edge", prefix=prefix,
                             env=Environment(account=self.account, region=EDGE_REGION))
            cloudfront_firewall = edge.firewall
        else:
            cloudfront_firewall = CloudFrontFirewall(self, "CloudFrontFirewall",
                                                     prefix=prefix)

        turn = Turn(self, "Turn", cluster=media.cluster, vpc=media.vpc,
                    certificate_arn=context("turn_certificate_arn"),
                    domain=context("turn_domain"))
        turn.secret.grant_read(api.role)
        api.set_environment("TURN_SECRET_ARN", turn.secret.secret_arn, API_FUNCTION)
        api.set_environment("TURN_URLS", turn.urls_json, API_FUNCTION)

        web = Web(self, "Web", rest_api_id=api.rest_api_id,
                  load_balancer=media.load_balancer, origin=origin,
                  web_acl_arn=cloudfront_firewall.arn)
        media.container.add_environment("PUBLIC_URL", web.url)
        Hls(self, "Hls", web=web, media=media, api=api,
            replay_days=int(context("replay_retention_days") or 30),
            webrtc_listener_limit=int(context("webrtc_listener_limit") or 0))

        domain = api.user_pool.add_domain("SignIn", cognito_domain=cognito.CognitoDomainOptions(
            domain_prefix=Fn.join("-", ["parlor", Fn.select(0, Fn.split("-", stack_uuid))])))
        # A browser app: the authorization code flow with PKCE (the client sends the
        # challenge; a public client has no secret), refresh tokens so a session
        # outlives the hour of its access token, rotated on every use.
        client = api.user_pool.add_client(
            "WebClient", generate_secret=False,
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL],
                callback_urls=[f"{web.url}/"], logout_urls=[f"{web.url}/"]),
            access_token_validity=Duration.hours(1), id_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.days(30),
            refresh_token_rotation_grace_period=Duration.seconds(60),
            enable_token_revocation=True, prevent_user_existence_errors=True)
        # Sign-in goes through the hosted pages only; the app itself only refreshes.
        web_client = client.node.default_child
        assert isinstance(web_client, cognito.CfnUserPoolClient)
        web_client.explicit_auth_flows = ["ALLOW_REFRESH_TOKEN_AUTH"]
        # The API and the WebSocket's connect handler check tokens were issued to this
        # client. Cognito's access tokens carry it as `client_id`, its ID tokens as `aud`.
        api.set_environment("AUTH_AUDIENCE", client.user_pool_client_id,
                            API_FUNCTION, "WebsocketConnect")
        web.publish({
            "auth": {"mode": "cognito", "cognito": {
                "domain": domain.base_url(), "client_id": client.user_pool_client_id}},
            "api_url": "/api",
            "websocket_url": api.websocket_url,
            "demo_users": [],
        })

        BrowserClient(self, "BrowserClient", api=api, web=web,
                      provisioner_role=api.roles[KEY_PROVISIONER],
                      provisioner=api.chalice.get_function(KEY_PROVISIONER))

        operations = Operations(self, "Operations", alarm_email=context("alarm_email"))
        for name, function_name in api.function_names.items():
            operations.watch_function(name, function_name)
        operations.watch_dead_letters("MediaEvents", messaging.media_events_dlq)
        for name, dlq in (("AlertFanout", alerts.fanout_dlq),
                          ("AlertDelivery", alerts.delivery_dlq),
                          ("SpaceChanges", alerts.stream_dlq),
                          ("Commands", commands.failures)):
            operations.watch_dead_letters(name, dlq)
        operations.watch_lag("AlertDelivery", alerts.delivery)
        operations.watch_rest_api(api.rest_api_name, STAGE)
        operations.watch_firewall("Api", api_firewall.metric_name,
                                  api_firewall.per_client_metric, region)
        operations.watch_tables(data.tables)
        operations.watch_load_balancer("Signaling", media.load_balancer, media.target_group)
        operations.watch_running_tasks("MediaNodes", media.service, media.min_nodes)
        operations.watch_running_tasks("Turn", turn.service, 1)
        operations.watch_media_nodes("MediaNodes", media.service,
                                     media.participants_metric("Maximum"), media.capacity)

        findings.acknowledge(self, tables=list(data.tables.values()), site=web.bucket,
                             cluster=media.cluster, provisioner=KEY_PROVISIONER)
        CfnOutput(self, "SiteUrl", value=web.url)
        CfnOutput(self, "UserPoolId", value=api.user_pool.user_pool_id)
        CfnOutput(self, "UserPoolClientId", value=client.user_pool_client_id)
        CfnOutput(self, "TurnLoadBalancer", value=turn.load_balancer.load_balancer_dns_name,
                  description="Point turn_domain's DNS record (CNAME) here")
