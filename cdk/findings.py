"""cdk-nag's AwsSolutions findings that Parlor accepts, each with its reason.

Everything else the pack reports is fixed in the constructs; tests/infra fails on any
finding that is neither fixed nor listed here."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Token, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3

from cdk.media import COMMAND_QUEUE_PREFIX

_WHY_CHALICE_POLICY = (
    "Chalice generates the app role's policy from the boto3 calls it finds: CloudWatch "
    "Logs for its own log groups, and calls whose resources (SNS endpoints, WebSocket "
    "connections, node queues) are only known at run time")

ACCEPTED: dict[str, str] = {
    "AwsSolutions::AwsSolutions-COG2":
        "MFA is offered (TOTP) but not required: anyone may sign up to listen",
    "AwsSolutions::AwsSolutions-COG8":
        "The Plus feature plan costs per active user; the pool's threat protection is an "
        "option for operators who want it",
    "AwsSolutions::AwsSolutions-APIG4":
        "The WebSocket connect handler verifies the caller's bearer token itself, with the "
        "same code as the REST API",
    "AwsSolutions::AwsSolutions-IAM5[Resource::arn:*:logs:*:*:*]": _WHY_CHALICE_POLICY,
    "AwsSolutions::AwsSolutions-IAM5[Resource::*]":
        _WHY_CHALICE_POLICY + "; ec2:DescribeNetworkInterfaces has no resource-level "
        "permissions (the node reads its own public IP)",
    "AwsSolutions::AwsSolutions-IAM5[Resource::arn:*:execute-api:*:*:*/@connections/*]":
        "Posting to WebSocket connections needs the connections path; the API id is "
        "Chalice's own",
    "AwsSolutions::AwsSolutions-SMG4":
        "The join-token keys rotate by deploying a new `join_token_key_generation`: a "
        "scheduled rotation would cut every join token in flight at an arbitrary time",
    "AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
    "service-role/AWSLambdaBasicExecutionRole]":
        "CDK's own deployment helpers (custom resource provider, bucket deployment, "
        "auto-delete) use the basic execution role for their logs",
    "AwsSolutions::AwsSolutions-L1":
        "The runtime of CDK's own deployment helpers is chosen by CDK",
    "AwsSolutions::AwsSolutions-ECS2":
        "The media node's environment holds names and URLs only; its key comes from "
        "Secrets Manager",
    "AwsSolutions::AwsSolutions-EC23":
        "WebRTC media must reach nodes from any address on the UDP range their ICE agent "
        "picks; the load balancer accepts any address on port 80 but forwards only "
        "requests carrying CloudFront's per-stack secret header",
    "CloudFormation-Validate::W2508":
        "The open UDP range is the WebRTC media range; nothing else listens on the nodes",
    "AwsSolutions::AwsSolutions-ELB2":
        "The load balancer carries signaling only, and CloudFront logs every request "
        "that reaches it",
    "AwsSolutions::AwsSolutions-CFR1": "Spaces are for a worldwide audience",
    "AwsSolutions::AwsSolutions-CFR2":
        "AWS WAF is an operator's choice with its own cost; API Gateway throttles requests",
    "AwsSolutions::AwsSolutions-CFR4":
        "Without a custom domain CloudFront serves its default certificate, whose policy "
        "cannot be raised; with a domain, set TLSv1.2_2021",
    "AwsSolutions::AwsSolutions-CFR5":
        "CloudFront reaches the signaling load balancer over HTTP because it has no "
        "certificate without a custom domain; it forwards only requests with the secret "
        "header",
}

_WHY_DEPLOYMENT = "CDK's bucket deployment copies the client into the site bucket"


def _own_wildcards(stack: Stack, tables: list[dynamodb.Table], site: s3.Bucket,
                   provisioner: str) -> dict[str, str]:
    """Wildcards over the stack's own resources, named as cdk-nag names them."""
    iam5 = "AwsSolutions::AwsSolutions-IAM5"
    region = stack.region if not Token.is_unresolved(stack.region) else "<AWS::Region>"
    site_id = stack.get_logical_id(site.node.default_child)  # type: ignore[arg-type]
    found = {
        f"{iam5}[Resource::<{stack.get_logical_id(t.node.default_child)}.Arn>/index/*]":  # type: ignore[arg-type]
            "Reading and writing a table includes its own indexes"
        for t in tables
    }
    found.update({f"{iam5}[Action::s3:{action}]": _WHY_DEPLOYMENT
                  for action in ("GetObject*", "GetBucket*", "List*", "DeleteObject*",
                                 "Abort*")})
    found[f"{iam5}[Resource::<{site_id}.Arn>/*]"] = _WHY_DEPLOYMENT
    found[f"{iam5}[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-"
          f"<AWS::AccountId>-{region}/*]"] = "The bucket deployment reads CDK's assets"
    found[f"{iam5}[Resource::arn:<AWS::Partition>:sqs:{region}:<AWS::AccountId>:"
          f"{COMMAND_QUEUE_PREFIX}*]"] = (
        "Each media node creates its own command queue at start, named for its id; the "
        "prefix is the narrowest name known before the node runs")
    found[f"{iam5}[Resource::<{provisioner}.Arn>:*]"] = (
        "CDK's custom resource provider may invoke any version of the key provisioner")
    return found


def acknowledge(stack: Stack, *, tables: list[dynamodb.Table], site: s3.Bucket,
                provisioner: str) -> None:
    """Acknowledges every accepted finding on the stack, with its reason."""
    validations = Validations.of(stack)
    accepted = {**ACCEPTED, **_own_wildcards(stack, tables, site, provisioner)}
    for finding, reason in accepted.items():
        validations.acknowledge(Acknowledgment(id=finding, reason=reason))
