"""What the browser client needs of the stack beyond its files: avatars, the client's
own paths, and Web Push keys.

- Avatars: a private bucket the browser uploads to with a presigned POST (the API signs
  it; CORS allows the POST), served by CloudFront at `/avatars/*` through origin access
  control, with `nosniff` and the other security headers.
- The client's paths (`/spaces/{id}`, `/@handle`, `/settings`) are pages of one page:
  a CloudFront Function answers them with `/index.html`, so a copied link opens.
- The VAPID key pair of Web Push, made at deploy time by the deploy-time key provisioner
  (the join-token keys' Lambda, asked with `Keys: vapid`) into a Secrets Manager secret
  that only the app's role reads, with the VAPID subject."""

from __future__ import annotations

from aws_cdk import (
    Acknowledgment,
    CustomResource,
    RemovalPolicy,
    Stack,
    Validations,
)
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import custom_resources as cr
from constructs import Construct

from cdk.api import Api
from cdk.web import Web

# The paths of local/web.py's APP_PATHS, as a CloudFront Function matches them.
APP_PATHS = r"^\/(spaces\/sp_[a-z0-9]{20}|@[A-Za-z0-9_]{1,15}|settings)\/?$"
_APP_PATHS_FUNCTION = "\n".join((
    "function handler(event) {",
    "  var request = event.request;",
    f"  if (/{APP_PATHS}/.test(request.uri)) {{",
    "    request.uri = '/index.html';",
    "  }",
    "  return request;",
    "}"))
# The only functions that use these: the API (avatars, the public key) and the delivery.
_AVATARS_USERS = ("APIHandler",)
_PUSH_USERS = ("APIHandler", "DeliverAlerts")


class BrowserClient(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, api: Api, web: Web,
                 provisioner: lambda_.IFunction, provisioner_role: iam.IRole,
                 vapid_generation: str = "1") -> None:
        super().__init__(scope, construct_id)
        self._avatars(api, web)
        self._app_paths(web)
        self._web_push(api, web, provisioner, provisioner_role, vapid_generation)

    def _avatars(self, api: Api, web: Web) -> None:
        self.avatars = s3.Bucket(
            self, "Avatars", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            server_access_logs_bucket=web.logs, server_access_logs_prefix="avatars/",
            # Presigned POSTs from the site's pages. The signed policy is the permission;
            # the site's address is not known before CloudFront is made, which needs
            # this bucket first.
            cors=[s3.CorsRule(allowed_methods=[s3.HttpMethods.POST], allowed_origins=["*"],
                              allowed_headers=["*"], max_age=3600)],
            # People's pictures are their data, as the tables are.
            removal_policy=RemovalPolicy.RETAIN)
        web.distribution.add_behavior(
            "/avatars/*", web.bucket_origin(self.avatars),
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
            cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
            response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS)
        self.avatars.grant_put(api.role, "avatars/*")
        self.avatars.grant_read(api.role, "avatars/*")
        self.avatars.grant_delete(api.role, "avatars/*")
        for name in _AVATARS_USERS:
            api.chalice.add_environment_variable("AVATARS_BUCKET", self.avatars.bucket_name, name)
        Validations.of(Stack.of(self)).acknowledge(Acknowledgment(
            id="AwsSolutions::AwsSolutions-IAM5[Resource::<"
               f"{Stack.of(self).get_logical_id(self.avatars.node.default_child)}"  # type: ignore[arg-type]
               ".Arn>/avatars/*]",
            reason="Each avatar upload has a key of its own under avatars/, made per upload"))

    def _app_paths(self, web: Web) -> None:
        self.app_paths = cloudfront.Function(
            self, "AppPaths", runtime=cloudfront.FunctionRuntime.JS_2_0,
            comment="The browser client's own paths are its index.html",
            code=cloudfront.FunctionCode.from_inline(_APP_PATHS_FUNCTION))
        distribution = web.distribution.node.default_child
        assert isinstance(distribution, cloudfront.CfnDistribution)
        distribution.add_property_override(
            "DistributionConfig.DefaultCacheBehavior.FunctionAssociations",
            [{"EventType": "viewer-request", "FunctionARN": self.app_paths.function_arn}])

    def _web_push(self, api: Api, web: Web, provisioner: lambda_.IFunction,
                  provisioner_role: iam.IRole, generation: str) -> None:
        self.vapid = secretsmanager.Secret(
            self, "VapidKeys", description="Parlor Web Push VAPID key pair (P-256, JSON)",
            removal_policy=RemovalPolicy.DESTROY)
        # Written when made; read back when only the subject changes (webpush.py).
        self.vapid.grant_write(provisioner_role)
        self.vapid.grant_read(provisioner_role)
        provider = cr.Provider(self, "Provider", on_event_handler=provisioner)
        # VAPID's subject tells the push services who sends: `-c web_push_subject=
        # mailto:...` or, by default, the site. It goes into the secret with the keys: as
        # an environment variable of the API it would make the API depend on the site,
        # which depends on the API.
        subject = self.node.try_get_context("web_push_subject") or web.url
        self.vapid_keys = CustomResource(
            self, "KeyPair", service_token=provider.service_token,
            resource_type="Custom::WebPushKeys",
            properties={"Keys": "vapid", "SecretArn": self.vapid.secret_arn,
                        "Generation": generation, "Subject": subject})
        for name in _PUSH_USERS:
            self.vapid.grant_read(api.roles[name])
            api.chalice.add_environment_variable("WEB_PUSH_SECRET_ARN", self.vapid.secret_arn,
                                                 name)
