"""ICE candidates as the outside world must see them.

On Fargate the task's interface holds only a private address, while clients reach the
task through its public one (a 1:1 NAT). Like other media servers' "announced address",
the node writes that public address into its answer's host candidates; the NAT maps the
clients' connectivity checks back to the socket bound on the private address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
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


@dataclass(frozen=True)
class TaskInterface:
    """The task's network interface, as the task metadata endpoint v4 describes it."""

    private_address: str
    mac_address: str | None


async def ecs_task_interface(metadata_uri: str) -> TaskInterface:
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(f"{metadata_uri}/task") as r,
    ):
        r.raise_for_status()
        task = await r.json(content_type=None)
    for container in task.get("Containers", []):
        for network in container.get("Networks", []):
            addresses = network.get("IPv4Addresses", [])
            if addresses:
                mac = network.get("MACAddress")
                return TaskInterface(str(addresses[0]), str(mac).lower() if mac else None)
    raise RuntimeError("the task metadata lists no IPv4 address")


async def ecs_private_address(metadata_uri: str) -> str:
    """The private IPv4 address of this Fargate task's network interface, from the task
    metadata endpoint v4: where other nodes of the VPC reach it."""
    return (await ecs_task_interface(metadata_uri)).private_address


async def discover_ecs_public_address(metadata_uri: str, ec2: Any) -> str:
    """The public IPv4 address of this Fargate task, known only once the task runs.

    The task metadata endpoint gives the private address and MAC of the task's network
    interface; EC2 tells which public address is associated with that interface. The
    private address alone does not name it: many VPCs of an account share ranges such
    as 10.0.0.0/16, so the region may hold several interfaces with this address, and
    announcing another's public address would leave every client unable to connect.
    The MAC does name it."""
    task = await ecs_task_interface(metadata_uri)
    interfaces = ec2.describe_network_interfaces(
        Filters=[{"Name": "addresses.private-ip-address", "Values": [task.private_address]}]
    )["NetworkInterfaces"]
    if task.mac_address is not None:
        interfaces = [i for i in interfaces
                      if str(i.get("MacAddress", "")).lower() == task.mac_address]
    elif len(interfaces) > 1:
        raise RuntimeError(
            f"{len(interfaces)} network interfaces have the address {task.private_address}, "
            "and the task metadata gives no MAC address to tell which is this task's")
    for interface in interfaces:
        public = interface.get("Association", {}).get("PublicIp")
        if public:
            return str(public)
    raise RuntimeError(
        f"no public IP is associated with this task's interface ({task.private_address}, "
        f"{task.mac_address or 'no MAC'}): is assignPublicIp on?")
