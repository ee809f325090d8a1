"""The product's one HTTPS origin: CloudFront in front of the browser client (a private
S3 bucket, reached through origin access control), the API (`/api/*`, API Gateway's
`api` stage, over HTTPS) and media-node signaling (`/media/*`, an internal load balancer
reached through a CloudFront VPC origin, so join tokens and SDP never cross the
internet: CloudFront reaches the load balancer's private address inside AWS's network).
One origin means no CORS and one certificate. AWS WAF (cdk/edge.py) guards it.

The client has no build step: besides its own files, the site serves the one library it
loads, hls.js (its ES module from npm, pinned in package-lock.json), at
`/vendor/hls.min.mjs`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from cdk.edge import OriginSecret

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
# hls.js's ES module, as `npm ci` installs it, and where the site serves it.
HLS_JS_DIST = ROOT / "node_modules" / "hls.js" / "dist"
HLS_JS_FILE = "hls.min.mjs"
VENDOR_PREFIX = "vendor/"


class Web(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, rest_api_id: str,
                 load_balancer: elbv2.IApplicationLoadBalancer, origin: OriginSecret,
                 web_acl_arn: str) -> None:
        super().__init__(scope, construct_id)
        region = Stack.of(self).region
        self.logs = s3.Bucket(
            self, "Logs", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            # CloudFront writes its standard logs with an ACL.
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.DESTROY, auto_delete_objects=True)
        self.bucket = s3.Bucket(
            self, "Client", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            server_access_logs_bucket=self.logs, server_access_logs_prefix="s3/",
            removal_policy=RemovalPolicy.DESTROY, auto_delete_objects=True)
        uncached: dict[str, Any] = {
            "cache_policy": cloudfront.CachePolicy.CACHING_DISABLED,
            "allowed_methods": cloudfront.AllowedMethods.ALLOW_ALL,
            "viewer_protocol_policy": cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
        }
        signed = {origin.header: origin.value}
        api = origins.HttpOrigin(f"{rest_api_id}.execute-api.{region}.amazonaws.com",
                                 protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
                                 origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
                                 custom_headers=signed)
        # HTTP to the load balancer's private address: a VPC origin has no public name
        # that a certificate could cover, and its traffic stays on AWS's network.
        signaling = origins.VpcOrigin.with_application_load_balancer(
            load_balancer, protocol_policy=cloudfront.OriginProtocolPolicy.HTTP_ONLY,
            http_port=80, custom_headers=signed,
            vpc_origin_name=f"{Stack.of(self).stack_name}-signaling")
        # One origin access control for every private bucket the site serves (the
        # client, avatars, HLS): CloudFront signs its reads, each bucket's policy
        # admits this distribution alone.
        self._access_control = cloudfront.S3OriginAccessControl(self, "BucketAccess")
        self.distribution = cloudfront.Distribution(
            self, "Site",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=self.bucket_origin(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS),
            additional_behaviors={
                # API Gateway must see its own Host header, so the viewer's is not sent.
                "/api/*": cloudfront.BehaviorOptions(
                    origin=api, **uncached,
                    origin_request_policy=cloudfront.OriginRequestPolicy
                    .ALL_VIEWER_EXCEPT_HOST_HEADER),
                "/media/*": cloudfront.BehaviorOptions(
                    origin=signaling, **uncached,
                    origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER),
            },
            enable_logging=True, log_bucket=self.logs, log_file_prefix="cloudfront/",
            web_acl_id=web_acl_arn,
        )
        self.url = f"https://{self.distribution.distribution_domain_name}"

    def bucket_origin(self, bucket: s3.IBucket) -> cloudfront.IOrigin:
        """A private bucket as an origin of the site, read through its access control."""
        return origins.S3BucketOrigin.with_origin_access_control(
            bucket, origin_access_control=self._access_control)

    def publish(self, config: dict[str, Any]) -> s3deploy.BucketDeployment:
        """Uploads the client and its config.json, and refreshes CloudFront's copies;
        and hls.js under vendor/."""
        site = s3deploy.BucketDeployment(
            self, "Publish", destination_bucket=self.bucket,
            sources=[s3deploy.Source.asset(str(WEB)),
                     s3deploy.Source.json_data("config.json", config)],
            # What the vendor deployment uploads is not the client's to prune.
            exclude=[f"{VENDOR_PREFIX}*"],
            distribution=self.distribution, distribution_paths=["/*"])
        # A deployment of its own: a module script must arrive as JavaScript, and the
        # uploader guesses types from extensions, which may not include `.mjs`.
        s3deploy.BucketDeployment(
            self, "PublishVendor", destination_bucket=self.bucket,
            destination_key_prefix=VENDOR_PREFIX,
            sources=[s3deploy.Source.asset(str(HLS_JS_DIST),
                                           exclude=["*", f"!{HLS_JS_FILE}"])],
            content_type="text/javascript; charset=utf-8",
            distribution=self.distribution, distribution_paths=[f"/{VENDOR_PREFIX}*"])
        return site
