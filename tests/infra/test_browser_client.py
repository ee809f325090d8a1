"""What the browser client needs of the stack (cdk/browser.py, cdk/web.py): the avatars
bucket and its CloudFront behavior, the client's paths answered with index.html, the
Web Push VAPID keys made at deploy time, and hls.js published beside the client (the
`template` fixture: conftest.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from cdk.browser import APP_PATHS
from cdk.web import HLS_JS_DIST, HLS_JS_FILE, VENDOR_PREFIX, WEB
from tests.infra.templates import role_of, statements_of

pytestmark = pytest.mark.slow


def _only(found: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    assert len(found) == 1, list(found)
    return next(iter(found.items()))


def _avatars(template: Template) -> str:
    logical_id, _ = _only(template.find_resources("AWS::S3::Bucket", {"Properties": {
        "CorsConfiguration": Match.any_value()}}))
    return logical_id


def _distribution(template: Template) -> dict[str, Any]:
    _, distribution = _only(template.find_resources("AWS::CloudFront::Distribution"))
    config: dict[str, Any] = distribution["Properties"]["DistributionConfig"]
    return config


def _statements(template: Template, function: str = "APIHandler") -> str:
    """Every statement of the policies of one function's role (each has its own)."""
    return json.dumps(statements_of(template, role_of(template, function)))


def _variables(template: Template, function: str) -> dict[str, Any]:
    resource = template.find_resources("AWS::Serverless::Function")[function]
    variables: dict[str, Any] = resource["Properties"]["Environment"]["Variables"]
    return variables


def test_avatars_are_private_uploaded_by_presigned_post_and_kept(template: Template) -> None:
    bucket = _avatars(template)
    resource = template.find_resources("AWS::S3::Bucket")[bucket]
    assert resource["DeletionPolicy"] == "Retain"
    properties = resource["Properties"]
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True}
    assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert properties["LoggingConfiguration"]["LogFilePrefix"] == "avatars/"
    (rule,) = properties["CorsConfiguration"]["CorsRules"]
    assert rule["AllowedMethods"] == ["POST"]
    # The app's role signs the POST (PutObject), checks and deletes uploads, under
    # avatars/ only; and the API is told the bucket.
    statements = _statements(template)
    for action in ("s3:PutObject", "s3:GetObject*", "s3:DeleteObject*"):
        assert action in statements
    assert f'"{bucket}", "Arn"]}}, "/avatars/*"' in statements
    assert _variables(template, "APIHandler")["AVATARS_BUCKET"] == {"Ref": bucket}


def test_cloudfront_serves_avatars_through_the_sites_access_control(template: Template) -> None:
    config = _distribution(template)
    (behavior,) = [b for b in config["CacheBehaviors"] if b["PathPattern"] == "/avatars/*"]
    assert behavior["ViewerProtocolPolicy"] == "redirect-to-https"
    assert behavior.get("AllowedMethods", ["GET", "HEAD"]) == ["GET", "HEAD"]  # the default
    # CloudFront's managed SecurityHeadersPolicy: nosniff among them.
    assert behavior["ResponseHeadersPolicyId"] == "67f7725c-6f97-4210-82d7-5512b31e9d03"
    (origin,) = [o for o in config["Origins"] if o["Id"] == behavior["TargetOriginId"]]
    assert origin["DomainName"] == {"Fn::GetAtt": [_avatars(template),
                                                   "RegionalDomainName"]}
    # The site bucket's origin access control serves the avatars too.
    (site,) = [o for o in config["Origins"] if o["Id"] == config["DefaultCacheBehavior"][
        "TargetOriginId"]]
    assert origin["OriginAccessControlId"] == site["OriginAccessControlId"]
    template.has_resource_properties("AWS::S3::BucketPolicy", {
        "Bucket": {"Ref": _avatars(template)},
        "PolicyDocument": {"Statement": Match.array_with([Match.object_like({
            "Principal": {"Service": "cloudfront.amazonaws.com"},
            "Action": "s3:GetObject"})])}})


@pytest.mark.parametrize(("uri", "page"), [
    ("/spaces/sp_0123456789abcdefghij", True),
    ("/spaces/sp_0123456789abcdefghij/", True),
    ("/@alice", True),
    ("/@Alice_2", True),
    ("/settings", True),
    ("/", False),  # the default root object already
    ("/js/app.js", False),
    ("/config.json", False),
    ("/api/me", False),
    ("/avatars/u-alice/0123456789abcdef.png", False),
    ("/spaces/sp_short", False),
    ("/settings/x", False),
])
def test_the_clients_own_paths_are_answered_with_index_html(
    template: Template, uri: str, page: bool
) -> None:
    config = _distribution(template)
    (association,) = config["DefaultCacheBehavior"]["FunctionAssociations"]
    assert association["EventType"] == "viewer-request"
    function_id = association["FunctionARN"]["Fn::GetAtt"][0]
    function = template.find_resources("AWS::CloudFront::Function")[function_id]
    code = function["Properties"]["FunctionCode"]
    assert function["Properties"]["FunctionConfig"]["Runtime"] == "cloudfront-js-2.0"
    assert f"/{APP_PATHS}/.test(request.uri)" in code
    assert "request.uri = '/index.html'" in code
    assert bool(re.match(APP_PATHS, uri)) is page


def test_vapid_keys_are_made_at_deploy_time_and_read_by_the_app(template: Template) -> None:
    secrets = template.find_resources("AWS::SecretsManager::Secret")
    (secret_id,) = [k for k, v in secrets.items() if "VAPID" in v["Properties"]["Description"]]
    assert "SecretString" not in secrets[secret_id]["Properties"]
    _, keys = _only(template.find_resources("Custom::WebPushKeys"))
    assert keys["Properties"]["Keys"] == "vapid"
    assert keys["Properties"]["SecretArn"] == {"Ref": secret_id}
    # VAPID's subject: the site (https://<distribution>), kept in the secret with the keys.
    assert "Fn::Join" in json.dumps(keys["Properties"]["Subject"])
    # The same deploy-time provisioner as the join-token keys' (functions/app.py).
    provider_function = keys["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    framework = template.find_resources("AWS::Lambda::Function")[provider_function]
    assert "ProvisionJoinTokenKeys" in json.dumps(framework["Properties"]["Environment"])
    assert "secretsmanager:PutSecretValue" in _statements(template, "ProvisionJoinTokenKeys")
    for function in ("APIHandler", "DeliverAlerts"):
        assert "secretsmanager:GetSecretValue" in _statements(template, function)
        variables = _variables(template, function)
        assert variables["WEB_PUSH_SECRET_ARN"] == {"Ref": secret_id}


def _deployments(template: Template) -> tuple[dict[str, Any], dict[str, Any]]:
    """The client's deployment and hls.js's."""
    found = template.find_resources("Custom::CDKBucketDeployment")
    vendor = [d["Properties"] for d in found.values()
              if d["Properties"].get("DestinationBucketKeyPrefix") == VENDOR_PREFIX]
    site = [d["Properties"] for d in found.values()
            if "DestinationBucketKeyPrefix" not in d["Properties"]]
    assert (len(site), len(vendor)) == (1, 1), list(found)
    return site[0], vendor[0]


def test_hls_js_is_published_under_vendor_as_javascript(
    template: Template, assets: dict[str, Any], template_dir: Path
) -> None:
    site, vendor = _deployments(template)
    assert vendor["DestinationBucketName"] == site["DestinationBucketName"]
    # A module script is refused unless it is served as JavaScript.
    assert vendor["SystemMetadata"]["content-type"] == "text/javascript; charset=utf-8"
    assert vendor["DistributionPaths"] == [f"/{VENDOR_PREFIX}*"]
    # The client's deployment prunes what it did not upload, but never vendor/.
    assert site["Exclude"] == [f"{VENDOR_PREFIX}*"]
    assert site.get("Prune", True) is True
    # The asset holds the one file the client imports, as npm installed it.
    (key,) = vendor["SourceObjectKeys"]
    (asset,) = [entry for digest, entry in assets["files"].items() if digest in json.dumps(key)]
    staged = template_dir / asset["source"]["path"]
    assert sorted(path.name for path in staged.iterdir()) == [HLS_JS_FILE]
    assert (staged / HLS_JS_FILE).read_bytes() == (HLS_JS_DIST / HLS_JS_FILE).read_bytes()
    assert f'"/{VENDOR_PREFIX}{HLS_JS_FILE}"' in (WEB / "js" / "player.js").read_text()
