"""One measured room on the real node: a speaker and many listeners, from two load
generators that mint their own join tokens."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .harness import Aws, LoadGenerator, MediaNode, measure


def signing_keys() -> tuple[str, str]:
    """A join-token key pair for one run: the private key mints, the node verifies."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def node_run(
    aws: Aws,
    keys: tuple[str, str],
    fanout: str,
    listeners: int,
    seconds: float,
    logs: Path,
    on_window: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """One room, one speaker, `listeners` listeners, on one of the node's fan-out paths."""
    private_pem, public_pem = keys
    node = MediaNode(aws, public_pem, fanout, logs)
    space = f"sp_bench_{secrets.token_hex(3)}"
    generators: list[LoadGenerator] = []
    try:
        speaker = LoadGenerator(generator_settings(node, space, private_pem, "s"))
        generators.append(speaker)
        load = LoadGenerator(generator_settings(node, space, private_pem, "l"))
        generators.append(load)
        return {"fanout": fanout, **measure(node, speaker, load, listeners, seconds, on_window)}
    finally:
        for generator in generators:
            generator.stop()
        node.stop()


def generator_settings(node: MediaNode, space: str, private_pem: str, name: str) -> dict[str, Any]:
    """A load generator joining the node's Space with join tokens it mints itself."""
    return {
        "url": node.url,
        "space": space,
        "node_id": node.node_id,
        "private_key": private_pem,
        "name": name,
    }
