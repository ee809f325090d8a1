"""HLS in the template: the private bucket and its lifecycle rules, CloudFront's two
behaviors for /hls/* with origin access control and their cache policies, and who may
do what with the objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from cdk.stack import ParlorStack
from tests.infra.templates import actions, one, role_of, statements_of, variables

pytestmark = pytest.mark.slow


def _bucket(template: Template) -> tuple[str, dict[str, Any]]:
    found = {k: v for k, v in template.find_resources("AWS::S3::Bucket").items()
             if k.startswith("HlsSegments")}
    assert len(found) == 1, list(found)
    return next(iter(found.items()))


def _rules(bucket: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["Id"]: r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}


def test_the_bucket_is_private_encrypted_logged_and_kept(template: Template) -> None:
    logical, bucket = _bucket(template)
    props = bucket["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True}
    assert props["LoggingConfiguration"]["LogFilePrefix"] == "s3-hls/"
    assert bucket["DeletionPolicy"] == "Retain"
    policy = one(template, "AWS::S3::BucketPolicy", {"Bucket": {"Ref": logical}})
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}} for s in statements)
    # CloudFront, and only this distribution, reads objects (origin access control).
    reads = [s for s in statements if s["Effect"] == "Allow"]
    assert len(reads) == 1
    assert reads[0]["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert reads[0]["Action"] == "s3:GetObject"
    assert "AWS:SourceArn" in json.dumps(reads[0]["Condition"])


def test_recordings_are_kept_thirty_days_and_the_rest_a_day(template: Template) -> None:
    rules = _rules(_bucket(template)[1])
    assert rules["replays"]["ExpirationInDays"] == 30
    assert rules["replays"]["TagFilters"] == [{"Key": "recorded", "Value": "true"}]
    assert rules["replays"]["Prefix"] == "hls/"
    assert rules["unrecorded"]["ExpirationInDays"] == 1
    assert rules["unrecorded"]["TagFilters"] == [{"Key": "recorded", "Value": "false"}]
    assert rules["uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert rules["uploads"]["Prefix"] == "hls/"
    assert all(r["Status"] == "Enabled" for r in rules.values())


def test_the_retention_and_the_webrtc_limit_are_context(tmp_path: Path) -> None:
    app = cdk.App(outdir=str(tmp_path), context={"replay_retention_days": 7,
                                                 "webrtc_listener_limit": 250})
    template = Template.from_stack(ParlorStack(app, "Parlor",
                                               env=cdk.Environment(region="us-east-1")))
    assert _rules(_bucket(template)[1])["replays"]["ExpirationInDays"] == 7
    assert variables(template, "APIHandler")["WEBRTC_LISTENER_LIMIT"] == "250"
    assert variables(template, "APIHandler")["REPLAY_RETENTION_DAYS"] == "7"


def _behaviors(template: Template) -> dict[str, dict[str, Any]]:
    config = one(template, "AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"]
    return {b["PathPattern"]: b for b in config["CacheBehaviors"]}


def _policy(template: Template, ref: dict[str, Any]) -> dict[str, Any]:
    return template.find_resources("AWS::CloudFront::CachePolicy")[ref["Ref"]]["Properties"][
        "CachePolicyConfig"]  # type: ignore[no-any-return]


def test_cloudfront_serves_hls_with_a_second_for_playlists_and_forever_for_segments(
        template: Template) -> None:
    config = one(template, "AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"]
    patterns = [b["PathPattern"] for b in config["CacheBehaviors"]]
    # The first behavior that matches wins: playlists before everything else under /hls.
    assert patterns.index("/hls/*.m3u8") < patterns.index("/hls/*")
    behaviors = _behaviors(template)
    playlists = _policy(template, behaviors["/hls/*.m3u8"]["CachePolicyId"])
    assert (playlists["MinTTL"], playlists["DefaultTTL"], playlists["MaxTTL"]) == (0, 1, 1)
    segments = _policy(template, behaviors["/hls/*"]["CachePolicyId"])
    year = 365 * 24 * 3600
    assert (segments["MinTTL"], segments["DefaultTTL"], segments["MaxTTL"]) == (year,) * 3
    bucket = _bucket(template)[0]
    origins = {o["Id"]: o for o in config["Origins"]}
    for pattern in ("/hls/*.m3u8", "/hls/*"):
        behavior = behaviors[pattern]
        assert behavior["ViewerProtocolPolicy"] == "https-only"
        assert behavior["AllowedMethods"] == ["GET", "HEAD"]
        origin = origins[behavior["TargetOriginId"]]
        assert origin["DomainName"] == {"Fn::GetAtt": [bucket, "RegionalDomainName"]}
        assert "OriginAccessControlId" in origin
    assert {"ErrorCode": 404, "ErrorCachingMinTTL": 1} in config["CustomErrorResponses"]
    assert {"ErrorCode": 403, "ErrorCachingMinTTL": 1} in config["CustomErrorResponses"]


def _object_statements(template: Template, role: str) -> list[dict[str, Any]]:
    """The role's S3 statements about the HLS bucket (the API also has the avatars')."""
    bucket = _bucket(template)[0]
    return [s for s in statements_of(template, role)
            if any(a.startswith("s3:") for a in actions(s)) and bucket in json.dumps(s)]


def test_nodes_write_and_read_objects_under_hls_only(template: Template) -> None:
    _, task = next(iter(template.find_resources("AWS::ECS::TaskDefinition").items()))
    role = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    s3 = _object_statements(template, role)
    assert len(s3) == 1
    assert sorted(actions(s3[0])) == ["s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"]
    assert s3[0]["Resource"] == {"Fn::Join": ["", [
        {"Fn::GetAtt": [_bucket(template)[0], "Arn"]}, "/hls/*"]]}
    environment = {e["Name"]: e["Value"] for e in
                   task["Properties"]["ContainerDefinitions"][0]["Environment"]}
    assert environment["HLS_BUCKET"] == {"Ref": _bucket(template)[0]}
    assert environment["HLS_PREFIX"] == "hls"


def test_the_functions_that_settle_a_spaces_hls_and_only_they_touch_the_bucket(
        template: Template) -> None:
    bucket = _bucket(template)[0]
    settlers = {"HandleMediaEvents", "SettleHls", "APIHandler"}
    for name in settlers:
        s3 = _object_statements(template, role_of(template, name))
        by_action = {a: s for s in s3 for a in actions(s)}
        assert set(by_action) == {"s3:PutObject", "s3:PutObjectTagging", "s3:DeleteObject",
                                  "s3:GetObject", "s3:ListBucket"}, name
        assert by_action["s3:ListBucket"]["Condition"] == {
            "StringLike": {"s3:prefix": ["hls/*"]}}
        assert by_action["s3:DeleteObject"]["Resource"] == {"Fn::Join": ["", [
            {"Fn::GetAtt": [bucket, "Arn"]}, "/hls/*"]]}
        found = variables(template, name)
        assert found["HLS_BUCKET"] == {"Ref": bucket}
        assert found["REPLAY_RETENTION_DAYS"] == "30"
        assert "/hls" in json.dumps(found["HLS_BASE_URL"])
    others = set(template.find_resources("AWS::Serverless::Function")) - settlers
    for name in others:
        assert not any(bucket in json.dumps(s) for s in statements_of(
            template, role_of(template, name))), name


def test_the_sweep_runs_every_minute(template: Template) -> None:
    events = template.find_resources("AWS::Serverless::Function")["SettleHls"][
        "Properties"]["Events"]
    schedules = [e for e in events.values() if e["Type"] == "Schedule"]
    assert [e["Properties"]["Schedule"] for e in schedules] == ["rate(1 minute)"]
