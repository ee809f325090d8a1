"""Which of an offer's ICE candidates the node will send to.

A client's offer names the addresses the node's ICE agent then sends connectivity
checks to; without limits an offer could point a node at hundreds of addresses, or at
services inside its own network (other tasks of the VPC, metadata endpoints) that no
client can reach itself. So an offer brings at most MAX_REMOTE_CANDIDATES candidates
(more is refused, 400 `too_many_candidates`), and candidates inside the node's own
private networks (`PRIVATE_NETWORKS`, the VPC's CIDR in AWS) or at addresses no peer has
(link-local, multicast, unspecified) are dropped before ICE starts: the node never
initiates a check there. A peer that really is at such an address still connects, as
ICE learns its address from its own checks (a peer-reflexive candidate).

The deployment's own TURN servers may sit inside the private networks
(`TRUSTED_RELAY_NETWORKS`): a relay candidate there is kept."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Browsers offer a candidate or two per interface and transport, and one relay per TURN
# server and transport: a real offer has far fewer than this.
MAX_REMOTE_CANDIDATES = 32
# Never a peer's address, whatever the deployment: these are refused everywhere.
NEVER_PEERS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "fe80::/10", "ff00::/8",
))


def parse_networks(raw: str, name: str) -> tuple[Network, ...]:
    """Comma- or space-separated CIDRs; a ValueError names the variable."""
    networks = []
    for part in raw.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{name} must list CIDRs (e.g. 10.0.0.0/16), got {part!r}") from None
    return tuple(networks)


@dataclass(frozen=True)
class CandidatePolicy:
    private_networks: tuple[Network, ...] = ()
    trusted_relays: tuple[Network, ...] = ()

    def allows(self, address: str, kind: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            # An mDNS name (`<uuid>.local`): a browser's host address, reachable on its
            # own LAN only, resolved by multicast on the node's. Only where the node
            # has no private networks to keep clients from (one machine, tests).
            return not self.private_networks
        if any(ip in network for network in NEVER_PEERS):
            return False
        if any(ip in network for network in self.private_networks):
            return kind == "relay" and any(ip in network for network in self.trusted_relays)
        return True

    def screen(self, sdp: str) -> tuple[str, int]:
        """`sdp` without the candidates this policy refuses, and how many those were."""
        kept, dropped = [], 0
        for line in sdp.splitlines():
            if line.startswith("a=candidate:"):
                # a=candidate:<foundation> <component> <transport> <priority> <address>
                #   <port> typ <type> ...
                fields = line.split()
                kind = fields[7] if len(fields) > 7 and fields[6] == "typ" else ""
                if len(fields) < 8 or not self.allows(fields[4], kind):
                    dropped += 1
                    continue
            kept.append(line)
        return "\r\n".join(kept) + "\r\n", dropped
