"""The closed edge: AWS WAF in front of everything, and a secret that proves a request
came through CloudFront.

CloudFront adds the origin header (`ORIGIN_HEADER`) to what it sends the API and the
signaling load balancer; its value is a random string that Secrets Manager generates
at deploy time, so it is in no template (CloudFormation resolves the dynamic reference
while it deploys). The REST API's regional web ACL blocks any request without it
before API Gateway runs the function, and the load balancer forwards only requests
that carry it.

Rotation (`-c origin_secret_generation=N`) makes generation N's secret and keeps N-1's:
the web ACL and the load balancer accept both, so requests that edge locations still
sign with the old value pass while CloudFront rolls the new one out. A leaked value is
gone after two rotations.

CloudFront's web ACL must live in us-east-1 whatever the stack's region: a stack
elsewhere gets a small companion stack there (`EdgeStack`), read across regions."""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

ORIGIN_HEADER = "X-Parlor-Origin"
# Requests per client address in WAF's five-minute window. A listener's client makes a
# few calls a minute and a host's a few more; these leave room for many people behind
# one address (a campus, a mobile carrier's NAT) while stopping one machine's flood.
SITE_REQUESTS_PER_IP = 3000
API_REQUESTS_PER_IP = 1000
WINDOW_SECONDS = 300
_RATE_LIMITED = "rate_limited"
_NOT_FROM_CLOUDFRONT = "forbidden"
_BODIES = {
    _RATE_LIMITED: '{"error": "rate_limited", "message": "Too many requests: wait a '
                   'minute and try again"}',
    _NOT_FROM_CLOUDFRONT: '{"error": "forbidden", "message": "Use the Parlor site"}',
}


class OriginSecret(Construct):
    """The origin header's accepted values: generation N's secret, and N-1's."""

    def __init__(self, scope: Construct, construct_id: str, *, generation: int) -> None:
        super().__init__(scope, construct_id)
        if generation < 1:
            raise ValueError(f"origin_secret_generation must be 1 or more, got {generation}")
        self.header = ORIGIN_HEADER
        self.current = self._secret(generation)
        self.previous = self._secret(generation - 1) if generation > 1 else None

    def _secret(self, generation: int) -> secretsmanager.Secret:
        return secretsmanager.Secret(
            self, f"Generation{generation}",
            description=f"Parlor: the header CloudFront adds to reach the API and "
                        f"signaling (generation {generation})",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=48, exclude_punctuation=True, include_space=False),
            removal_policy=RemovalPolicy.DESTROY)

    @property
    def secrets(self) -> list[secretsmanager.Secret]:
        return [s for s in (self.current, self.previous) if s is not None]

    @property
    def value(self) -> str:
        """What CloudFront sends: a dynamic reference, resolved at deploy time."""
        return self.current.secret_value.unsafe_unwrap()

    @property
    def accepted(self) -> list[str]:
        return [s.secret_value.unsafe_unwrap() for s in self.secrets]


# Rules are written as CloudFormation writes them: WAF's statements nest deeply, and
# the template is where they are read and checked (tests/infra/test_edge.py).


def _visibility(name: str) -> dict[str, Any]:
    return {"CloudWatchMetricsEnabled": True, "MetricName": name,
            "SampledRequestsEnabled": True}


def _block(status: int, body: str) -> dict[str, Any]:
    return {"Block": {"CustomResponse": {"ResponseCode": status,
                                         "CustomResponseBodyKey": body}}}


def _rate_rule(name: str, priority: int, limit: int, metric: str,
               statement: dict[str, Any]) -> dict[str, Any]:
    return {"Name": name, "Priority": priority, "Action": _block(429, _RATE_LIMITED),
            "Statement": {"RateBasedStatement": {
                "Limit": limit, "EvaluationWindowSec": WINDOW_SECONDS, **statement}},
            "VisibilityConfig": _visibility(metric)}


def _header_is(header: str, value: str) -> dict[str, Any]:
    return {"ByteMatchStatement": {
        "FieldToMatch": {"SingleHeader": {"Name": header.lower()}},
        "PositionalConstraint": "EXACTLY", "SearchString": value,
        "TextTransformations": [{"Priority": 0, "Type": "NONE"}]}}


def _web_acl(scope: Construct, scope_name: str, metric: str,
             rules: list[dict[str, Any]]) -> wafv2.CfnWebACL:
    web_acl = wafv2.CfnWebACL(
        scope, "WebAcl", scope=scope_name,
        default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
        custom_response_bodies={key: wafv2.CfnWebACL.CustomResponseBodyProperty(
            content=body, content_type="APPLICATION_JSON") for key, body in _BODIES.items()},
        visibility_config=wafv2.CfnWebACL.VisibilityConfigProperty(
            cloud_watch_metrics_enabled=True, metric_name=metric,
            sampled_requests_enabled=True))
    web_acl.add_property_override("Rules", rules)
    return web_acl


class CloudFrontFirewall(Construct):
    """CloudFront's web ACL (scope CLOUDFRONT, so in us-east-1): AWS's common rule set,
    and per-client-address rate limits on the whole site and, lower, on the API.
    CloudFront sees each viewer's own address, so these are the per-client limits that
    no client can dodge by the headers it sends."""

    def __init__(self, scope: Construct, construct_id: str, *, prefix: str) -> None:
        super().__init__(scope, construct_id)
        if Stack.of(self).region != "us-east-1":
            raise ValueError("CloudFront's web ACL must be made in us-east-1")
        common = {
            "Name": "AWSManagedRulesCommonRuleSet", "Priority": 0,
            "OverrideAction": {"None": {}},
            "Statement": {"ManagedRuleGroupStatement": {
                "VendorName": "AWS", "Name": "AWSManagedRulesCommonRuleSet",
                # An SDP offer with many ICE candidates can pass the group's 8 KB body
                # limit; API Gateway and the media node bound bodies themselves.
                "RuleActionOverrides": [{"Name": "SizeRestrictions_BODY",
                                         "ActionToUse": {"Count": {}}}]}},
            "VisibilityConfig": _visibility(f"{prefix}-common")}
        per_client = _rate_rule("PerClientSite", 1, SITE_REQUESTS_PER_IP,
                                f"{prefix}-per-client-site", {"AggregateKeyType": "IP"})
        per_client_api = _rate_rule(
            "PerClientApi", 2, API_REQUESTS_PER_IP, f"{prefix}-per-client-api",
            {"AggregateKeyType": "IP", "ScopeDownStatement": {"ByteMatchStatement": {
                "FieldToMatch": {"UriPath": {}}, "PositionalConstraint": "STARTS_WITH",
                "SearchString": "/api/",
                "TextTransformations": [{"Priority": 0, "Type": "NONE"}]}}})
        self.web_acl = _web_acl(self, "CLOUDFRONT", f"{prefix}-cloudfront",
                                [common, per_client, per_client_api])
        self.arn = self.web_acl.attr_arn


class ApiFirewall(Construct):
    """The REST API stage's regional web ACL: a request without CloudFront's header is
    refused before the function runs (so unsigned floods cannot use up the stage's
    throttle), and a second per-client limit counts the address CloudFront forwards
    (the first in X-Forwarded-For, which a client can prefix: the unspoofable per-client
    limit is CloudFront's, this one is a backstop)."""

    def __init__(self, scope: Construct, construct_id: str, *, origin: OriginSecret,
                 stage_arn: str, prefix: str) -> None:
        super().__init__(scope, construct_id)
        matches = [_header_is(origin.header, value) for value in origin.accepted]
        signed = matches[0] if len(matches) == 1 else {"OrStatement": {"Statements": matches}}
        from_cloudfront = {
            "Name": "OnlyFromCloudFront", "Priority": 0,
            "Action": _block(403, _NOT_FROM_CLOUDFRONT),
            "Statement": {"NotStatement": {"Statement": signed}},
            "VisibilityConfig": _visibility(f"{prefix}-not-from-cloudfront")}
        self.per_client_metric = f"{prefix}-per-client"
        per_client = _rate_rule(
            "PerClient", 1, API_REQUESTS_PER_IP, self.per_client_metric,
            {"AggregateKeyType": "FORWARDED_IP", "ForwardedIPConfig": {
                "HeaderName": "X-Forwarded-For", "FallbackBehavior": "MATCH"}})
        self.metric_name = f"{prefix}-api"
        self.web_acl = _web_acl(self, "REGIONAL", self.metric_name,
                                [from_cloudfront, per_client])
        wafv2.CfnWebACLAssociation(self, "Stage", resource_arn=stage_arn,
                                   web_acl_arn=self.web_acl.attr_arn)


class EdgeStack(Stack):
    """CloudFront's web ACL for a Parlor stack in another region than us-east-1."""

    def __init__(self, scope: Construct, construct_id: str, *, prefix: str,
                 **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.firewall = CloudFrontFirewall(self, "Firewall", prefix=prefix)
