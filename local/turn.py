"""The local TURN server: Debian's coturn (`turnserver`), checking the per-join
credentials that the API mints with the shared secret kept in .local/, as a TURN
server does in AWS. Without coturn installed, `make up` says so and runs without TURN
(the join answers then carry no TURN server)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

REALM = "parlor.local"


def turn_urls(host: str, port: int) -> list[str]:
    # UDP first; TCP for clients whose network blocks UDP altogether.
    return [f"turn:{host}:{port}?transport=udp", f"turn:{host}:{port}?transport=tcp"]


def _config(state: Path, host: str, port: int, relay_ports: str, secret: str) -> Path:
    low, _, high = relay_ports.partition("-")
    lines = [
        f"listening-ip={host}",
        f"relay-ip={host}",
        f"listening-port={port}",
        f"min-port={int(low)}",
        f"max-port={int(high)}",
        # The TURN REST API: credentials are HMACs of the shared secret, never stored.
        "use-auth-secret",
        f"static-auth-secret={secret}",
        f"realm={REALM}",
        "fingerprint",
        "no-tls",
        "no-dtls",
        "no-cli",
        # Everything runs on this machine: the media node is a loopback (or this host's
        # own address) peer, which coturn refuses unless told.
        "allow-loopback-peers",
        "no-multicast-peers",
        "no-software-attribute",
        f"userdb={state / 'turndb'}",
        f"pidfile={state / 'turnserver.pid'}",
        "simple-log",
        f"log-file={state / 'turnserver.log'}",
    ]
    path = state / "turnserver.conf"
    if not path.exists():
        path.touch(mode=0o600)
    path.write_text("\n".join(lines) + "\n")
    return path


def start_coturn(state: Path, host: str, port: int, relay_ports: str,
                 secret: str) -> subprocess.Popen[bytes] | None:
    """coturn on `host:port` (UDP and TCP), or None when it is not installed."""
    binary = shutil.which("turnserver")
    if binary is None:
        return None
    config = _config(state, host, port, relay_ports, secret)
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(f"coturn did not start; see {state / 'turnserver.log'}")
