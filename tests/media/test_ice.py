"""The address the node announces in its ICE candidates."""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
import pytest
from aiohttp import web

from media_node.ice import announce_address, discover_ecs_public_address

from .conftest import Aws

ANSWER = (
    "v=0\r\n"
    "o=- 1 1 IN IP4 0.0.0.0\r\n"
    "m=audio 40000 UDP/TLS/RTP/SAVPF 111\r\n"
    "c=IN IP4 10.0.1.23\r\n"
    "a=candidate:a 1 udp 2130706431 10.0.1.23 40000 typ host\r\n"
    "a=candidate:b 1 udp 2130706431 2600:1f18::7 40001 typ host\r\n"
    "a=candidate:c 1 udp 1694498815 198.51.100.9 40002 typ srflx raddr 10.0.1.23 rport 40000\r\n"
    "a=end-of-candidates\r\n"
)


def test_announced_address_replaces_private_ipv4_host_candidates_only() -> None:
    lines = announce_address(ANSWER, "203.0.113.5").split("\r\n")
    assert "c=IN IP4 203.0.113.5" in lines
    assert "a=candidate:a 1 udp 2130706431 203.0.113.5 40000 typ host" in lines
    assert "a=candidate:b 1 udp 2130706431 2600:1f18::7 40001 typ host" in lines
    assert any(line.startswith("a=candidate:c 1 udp 1694498815 198.51.100.9") for line in lines)
    assert "o=- 1 1 IN IP4 0.0.0.0" in lines


def _interface_with_public_ip(ec2: Any, cidr: str, private: str) -> tuple[str, str]:
    """A VPC with an interface at `private` that has an Elastic IP: (MAC, public IP)."""
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr.replace("/16", "/24"))["Subnet"]
    interface = ec2.create_network_interface(SubnetId=subnet["SubnetId"],
                                             PrivateIpAddress=private)["NetworkInterface"]
    allocation = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=allocation["AllocationId"],
                          NetworkInterfaceId=interface["NetworkInterfaceId"])
    return interface["MacAddress"], allocation["PublicIp"]


def _discover(ec2: Any, network: dict[str, Any]) -> str:
    async def task_metadata(request: web.Request) -> web.Response:
        # The shape of Fargate's task metadata endpoint v4, trimmed to what is read.
        return web.json_response({"Containers": [{"Name": "media", "Networks": [network]}]})

    async def scenario() -> str:
        app = web.Application()
        app.router.add_get("/v4/abc/task", task_metadata)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            return await discover_ecs_public_address(f"http://127.0.0.1:{port}/v4/abc", ec2)
        finally:
            await runner.cleanup()

    return asyncio.run(scenario())


def test_a_fargate_task_finds_its_public_address(aws: Aws) -> None:
    ec2: Any = boto3.client("ec2", endpoint_url=aws.endpoint, region_name="us-east-1")
    mac, public = _interface_with_public_ip(ec2, "10.9.0.0/16", "10.9.0.17")
    network = {"NetworkMode": "awsvpc", "IPv4Addresses": ["10.9.0.17"], "MACAddress": mac}
    assert _discover(ec2, network) == public


def test_a_task_tells_its_interface_from_another_vpcs_with_the_same_address(
    aws: Aws,
) -> None:
    ec2: Any = boto3.client("ec2", endpoint_url=aws.endpoint, region_name="us-east-1")
    # Two VPCs of the account on the same range, an interface at the same address in
    # each: the task is the second one's.
    _, elsewhere = _interface_with_public_ip(ec2, "10.7.0.0/16", "10.7.0.40")
    mac, ours = _interface_with_public_ip(ec2, "10.7.0.0/16", "10.7.0.40")
    network = {"NetworkMode": "awsvpc", "IPv4Addresses": ["10.7.0.40"],
               "MACAddress": mac.upper()}
    assert _discover(ec2, network) == ours != elsewhere
    # Without a MAC to tell them apart, the node refuses to guess.
    with pytest.raises(RuntimeError, match="2 network interfaces have the address"):
        _discover(ec2, {"NetworkMode": "awsvpc", "IPv4Addresses": ["10.7.0.40"]})
