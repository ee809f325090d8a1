"""ICE candidates as the outside world must see them.

On Fargate the task's interface holds only a private address, while clients reach the
task through its public one (a 1:1 NAT). Like other media servers' "announced address",
the node writes that public address into its answer's host candidates; the NAT maps the
clients' connectivity checks back to the socket bound on the private address.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import aiohttp

# ANNOUNCED_ADDRESS's (and PRIVATE_URL's) value that asks the node to find its task's
# public IP (private address) itself.
DISCOVER_ON_ECS = "ecs"


def announce_address(sdp: str, address: str) -> str:
    """Replace the private IPv4 address of every host candidate (and `c=` line) in `sdp`."""
    ipaddress.ip_address(address)
    lines = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            line = _announce_candidate(line, address)
        elif line.startswith("c=IN IP4 "):
            line = f"c=IN IP4 {address}"
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _announce_candidate(line: str, address: str) -> str:
    # a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type>
    fields = line.split(" ")
    if len(fields) < 8 or fields[6] != "typ" or fields[7] != "host":
        return line
    try:
        current = ipaddress.ip_address(fields[4])
    except ValueError:
        return line
    # IPv6 host addresses on a dual-stack task are already public: leave them reachable.
    if current.version != 4:
        return line
    fields[4] = address
    return " ".join(fields)


async def ecs_private_address(metadata_uri: str) -> str:
    """The private IPv4 address of this Fargate task's network interface, from the task
    metadata endpoint v4: where other nodes of the VPC reach it."""
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(f"{metadata_uri}/task") as r,
    ):
        r.raise_for_status()
        task = await r.json(content_type=None)
    private = [
        address
        for container in task.get("Containers", [])
        for network in container.get("Networks", [])
        for address in network.get("IPv4Addresses", [])
    ]
    if not private:
        raise RuntimeError("the task metadata lists no IPv4 address")
    return str(private[0])


async def discover_ecs_public_address(metadata_uri: str, ec2: Any) -> str:
    """The public IPv4 address of this Fargate task, known only once the task runs.

    The task metadata endpoint gives the private address of the task's network
    interface; EC2 tells which public address is associated with that interface.
    """
    private = await ecs_private_address(metadata_uri)
    interfaces = ec2.describe_network_interfaces(
        Filters=[{"Name": "addresses.private-ip-address", "Values": [private]}]
    )["NetworkInterfaces"]
    for interface in interfaces:
        public = interface.get("Association", {}).get("PublicIp")
        if public:
            return str(public)
    raise RuntimeError(f"no public IP is associated with {private}: is assignPublicIp on?")
