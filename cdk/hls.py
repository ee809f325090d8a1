"""HLS: every live Space's mix as AAC segments and playlists in a private S3 bucket,
served by the site's CloudFront at /hls/* (docs/hls.md, docs/media-contract.md section 9).

- The bucket: private, encrypted, TLS only, access-logged; objects are tagged
  `recorded=true|false` by whoever writes them, and the lifecycle rules keep a
  recording's objects `replay_retention_days` (30 by default) and the others a day at
  most (the control plane deletes them when their Space ends; the rule catches any it
  missed).
- CloudFront reaches it with origin access control; playlists are cached about a second
  (`/hls/*.m3u8`), segments as immutable (`/hls/*`: a segment's key is never written
  twice), and a missing object (a playlist not written yet) is remembered a second only.
- The media nodes may write and read objects under `hls/` (the live playlist is read
  back by a room opened again after a crash), nothing else; the control plane's
  functions that settle a Space's HLS (the replay, or the deletion of its segments) may
  list `hls/` and read, write and delete under it. Deleting is theirs alone: a node
  never deletes (a Space's end is the control plane's to know)."""

from __future__ import annotations

from typing import Any

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk.api import API_FUNCTION, Api
from cdk.media import Media
from cdk.web import Web
from chalicelib.rooms.hls import lifecycle_rules

PREFIX = "hls"
# The functions that settle a Space's HLS: the media-events consumer (a node said its
# room's HLS finished), the sweep, and the API (a host deleting a recording).
SETTLERS = ("HandleMediaEvents", "SettleHls", API_FUNCTION)
PLAYLIST_TTL = Duration.seconds(1)
SEGMENT_TTL = Duration.days(365)


def _rule(rule: dict[str, Any]) -> s3.LifecycleRule:
    """One of chalicelib.rooms.hls.lifecycle_rules (S3's API terms) as CDK writes it."""
    selection = rule["Filter"].get("And", rule["Filter"])
    tags = {tag["Key"]: tag["Value"] for tag in selection.get("Tags", [])}
    expiration = rule.get("Expiration", {}).get("Days")
    abort = rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation")
    return s3.LifecycleRule(
        id=rule["ID"], prefix=selection.get("Prefix"), tag_filters=tags or None,
        expiration=Duration.days(expiration) if expiration else None,
        abort_incomplete_multipart_upload_after=Duration.days(abort) if abort else None)


class Hls(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, web: Web, media: Media,
                 api: Api, replay_days: int, webrtc_listener_limit: int = 0) -> None:
        super().__init__(scope, construct_id)
        if replay_days < 1:
            raise ValueError(f"replay_retention_days must be at least 1, got {replay_days}")
        self.bucket = s3.Bucket(
            self, "Segments", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=web.logs, server_access_logs_prefix="s3-hls/",
            lifecycle_rules=[_rule(r) for r in lifecycle_rules(PREFIX, replay_days)],
            # Recordings are the hosts' data, as the tables are.
            removal_policy=RemovalPolicy.RETAIN)
        self.playlists = cloudfront.CachePolicy(
            self, "Playlists", comment="Parlor HLS playlists: rewritten every segment",
            default_ttl=PLAYLIST_TTL, max_ttl=PLAYLIST_TTL, min_ttl=Duration.seconds(0),
            enable_accept_encoding_gzip=True, enable_accept_encoding_brotli=True)
        self.segments = cloudfront.CachePolicy(
            self, "SegmentsCache", comment="Parlor HLS segments: never rewritten",
            default_ttl=SEGMENT_TTL, max_ttl=SEGMENT_TTL, min_ttl=SEGMENT_TTL)
        origin = web.bucket_origin(self.bucket)
        common: dict[str, Any] = {
            "viewer_protocol_policy": cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
            "allowed_methods": cloudfront.AllowedMethods.ALLOW_GET_HEAD,
            "compress": True,
        }
        # The playlists' pattern first: CloudFront takes the first behavior that matches.
        web.distribution.add_behavior(f"/{PREFIX}/*.m3u8", origin,
                                      cache_policy=self.playlists, **common)
        web.distribution.add_behavior(f"/{PREFIX}/*", origin, cache_policy=self.segments,
                                      **common)
        distribution = web.distribution.node.default_child
        assert isinstance(distribution, cloudfront.CfnDistribution)
        # A live playlist asked for before its first segment is written must not stay
        # missing for CloudFront's default ten seconds.
        distribution.add_property_override("DistributionConfig.CustomErrorResponses", [
            {"ErrorCode": code, "ErrorCachingMinTTL": 1} for code in (403, 404)])

        objects = self.bucket.arn_for_objects(f"{PREFIX}/*")
        media.container.task_definition.task_role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:PutObject", "s3:PutObjectTagging", "s3:GetObject"],
            resources=[objects]))
        media.container.add_environment("HLS_BUCKET", self.bucket.bucket_name)
        media.container.add_environment("HLS_PREFIX", PREFIX)
        for function in SETTLERS:
            role = api.roles[function]
            role.add_to_principal_policy(iam.PolicyStatement(
                actions=["s3:PutObject", "s3:PutObjectTagging", "s3:DeleteObject",
                         "s3:GetObject"],
                resources=[objects]))
            role.add_to_principal_policy(iam.PolicyStatement(
                actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{PREFIX}/*"]}}))
        settings = {"HLS_BUCKET": self.bucket.bucket_name, "HLS_PREFIX": PREFIX,
                    "HLS_BASE_URL": f"{web.url}/{PREFIX}",
                    "REPLAY_RETENTION_DAYS": str(replay_days)}
        for name, value in settings.items():
            api.set_environment(name, value, *SETTLERS)
        stack = Stack.of(self)
        bucket_id = stack.get_logical_id(self.bucket.node.default_child)  # type: ignore[arg-type]
        Validations.of(stack).acknowledge(Acknowledgment(
            id=f"AwsSolutions::AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{PREFIX}/*]",
            reason="A Space's HLS objects are named at run time (its id, the run, each "
                   "segment); the grants stay under the HLS prefix"))
        if webrtc_listener_limit:
            api.set_environment("WEBRTC_LISTENER_LIMIT", str(webrtc_listener_limit),
                                API_FUNCTION)
