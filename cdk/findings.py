"""cdk-nag's AwsSolutions findings that Parlor accepts, each with its reason.

Everything else the pack reports is fixed in the constructs; tests/infra fails on any
finding that is neither fixed nor listed here."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Token, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_s3 as s3

from cdk.api import STAGE
from cdk.media import COMMAND_QUEUE_PREFIX

ACCEPTED: dict[str, str] = {
    "AwsSolutions::AwsSolutions-COG2":
        "MFA is offered (TOTP) but not required: anyone may sign up to listen",
    "AwsSolutions::AwsSolutions-COG8":
        "The Plus feature plan costs per active user; the pool's threat protection is an "
        "option for operators who want it",
    "AwsSolutions::AwsSolutions-APIG4":
        "The WebSocket connect handler verifies the caller's bearer token itself, with the "
        "same code as the REST API",
    "AwsSolutions::AwsSolutions-IAM5[Resource::*]":
        "X-Ray's PutTraceSegments and PutTelemetryRecords, ec2:DescribeNetworkInterfaces "
        "(the media node and the TURN server read their own public address) and "
        "dynamodb:ListStreams have no resource-level permissions",
    "AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
    "service-role/AmazonAPIGatewayPushToCloudWatchLogs]":
        "API Gateway's account-level logging role: AWS's own policy for exactly that role",
    "AwsSolutions::AwsSolutions-SMG4":
        "The join-token keys rotate by deploying a new `join_token_key_generation`, the "
        "origin header's secret by `origin_secret_generation` (docs/deploy.md): a "
        "scheduled rotation would cut join tokens in flight, or reach CloudFront and the "
        "web ACL only at the next deploy; TURN's secret signs credentials valid minutes",
    "AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
    "service-role/AWSLambdaBasicExecutionRole]":
        "CDK's own deployment helpers (custom resource provider, bucket deployment, "
        "auto-delete) use the basic execution role for their logs",
    "AwsSolutions::AwsSolutions-L1":
        "The runtime of CDK's own deployment helpers is chosen by CDK",
    "AwsSolutions::AwsSolutions-ECS2":
        "The media node's and TURN server's environments hold names, ports and URLs "
        "only; their secrets come from Secrets Manager",
    "AwsSolutions::AwsSolutions-EC23":
        "WebRTC media must reach nodes from any address on their workers' UDP ports, "
        "and TURN clients and peers the TURN server on 3478 and its relay ports",
    "CloudFormation-Validate::W2508":
        "The open UDP ranges are WebRTC media and TURN relays; nothing else listens there",
    "AwsSolutions::AwsSolutions-ELB2":
        "The signaling load balancer is reached only through CloudFront, which logs every "
        "request; the TURN load balancer passes UDP, which access logs do not record",
    "AwsSolutions::AwsSolutions-CFR1": "Spaces are for a worldwide audience",
    "AwsSolutions::AwsSolutions-CFR4":
        "Without a custom domain CloudFront serves its default certificate, whose policy "
        "cannot be raised; with a domain, set TLSv1.2_2021",
}

_WHY_DEPLOYMENT = "CDK's bucket deployment copies the client into the site bucket"


def _own_wildcards(stack: Stack, tables: list[dynamodb.Table], site: s3.Bucket,
                   cluster: ecs.ICluster, provisioner: str) -> dict[str, str]:
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
    found[f"{iam5}[Resource::arn:<AWS::Partition>:execute-api:{region}:<AWS::AccountId>:"
          f"<WebsocketAPI>/{STAGE}/*/@connections/*]"] = (
        "The alert delivery posts to the WebSocket API's connections, which exist only "
        "at run time, on this API's stage alone")
    cluster_id = stack.get_logical_id(cluster.node.default_child)  # type: ignore[arg-type]
    found[f"{iam5}[Resource::arn:<AWS::Partition>:ecs:{region}:<AWS::AccountId>:"
          f"task/<{cluster_id}>/*]"] = (
        "A node protects its own task from scale-in; task ids exist only at run time, "
        "and the grant stays within the media cluster")
    return found


def acknowledge(stack: Stack, *, tables: list[dynamodb.Table], site: s3.Bucket,
                cluster: ecs.ICluster, provisioner: str) -> None:
    """Acknowledges every accepted finding on the stack, with its reason."""
    validations = Validations.of(stack)
    accepted = {**ACCEPTED, **_own_wildcards(stack, tables, site, cluster, provisioner)}
    for finding, reason in accepted.items():
        validations.acknowledge(Acknowledgment(id=finding, reason=reason))
