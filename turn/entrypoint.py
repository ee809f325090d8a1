"""Starts coturn on Fargate with the task's public address and the shared secret.

A Fargate task's interface has only its private address; coturn must announce the
public one in relayed addresses (`--external-ip public/private`), so it is read from
EC2 before coturn starts. Settings come from the environment (cdk/turn.py)."""

from __future__ import annotations

import json
import os
import urllib.request

import boto3

# Peers that a relay may never reach: the VPC, link-local (the instance metadata
# service), loopback and the other private ranges.
DENIED_PEERS = ("0.0.0.0-0.255.255.255", "10.0.0.0-10.255.255.255",
                "100.64.0.0-100.127.255.255", "127.0.0.0-127.255.255.255",
                "169.254.0.0-169.254.255.255", "172.16.0.0-172.31.255.255",
                "192.168.0.0-192.168.255.255")


def addresses() -> tuple[str, str]:
    """(public, private) IPv4 addresses of this task."""
    url = os.environ["ECS_CONTAINER_METADATA_URI_V4"] + "/task"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (task metadata)
        task = json.load(response)
    private = next(address for container in task["Containers"]
                   for network in container.get("Networks", [])
                   for address in network.get("IPv4Addresses", []))
    interfaces = boto3.client("ec2").describe_network_interfaces(
        Filters=[{"Name": "addresses.private-ip-address", "Values": [private]}],
    )["NetworkInterfaces"]
    public = next(i["Association"]["PublicIp"] for i in interfaces if "Association" in i)
    return public, private


def main() -> None:
    public, private = addresses()
    arguments = [
        "/usr/bin/turnserver", "--log-file=stdout", "--simple-log", "--no-cli",
        f"--listening-port={os.environ['TURN_PORT']}", f"--listening-ip={private}",
        f"--relay-ip={private}", f"--external-ip={public}/{private}",
        f"--min-port={os.environ['RELAY_MIN_PORT']}",
        f"--max-port={os.environ['RELAY_MAX_PORT']}",
        f"--realm={os.environ['TURN_REALM']}",
        "--use-auth-secret", f"--static-auth-secret={os.environ['TURN_SECRET']}",
        # TLS ends at the load balancer; relays carry UDP only (WebRTC media).
        "--no-tls", "--no-dtls", "--no-tcp-relay", "--no-multicast-peers",
        "--fingerprint", "--stale-nonce=600", "--no-software-attribute",
        *(f"--denied-peer-ip={peers}" for peers in DENIED_PEERS),
    ]
    os.execv(arguments[0], arguments)  # noqa: S606 (a fixed program, no shell)


if __name__ == "__main__":
    main()
