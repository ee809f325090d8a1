"""One DTLS certificate per worker process, not one per peer connection.

aiortc makes every RTCPeerConnection a fresh EC key pair and self-signed certificate,
then for every answer computes its three fingerprints (SHA-256/384/512) and for every
DTLS transport builds an OpenSSL context from it. A server has no reason to: the
certificate only has to match the fingerprint in the answer the peer got, and one key
serves any number of handshakes (each one's ECDHE keeps its own secrecy), as it does
for any TLS server. Together these were about 8% of the node's CPU during a join storm.

aiortc looks its certificate class up by name when a peer connection is made, so
`share_one_certificate` replaces that name with a class that hands out the worker's
certificate. A certificate is made again a day before it would expire (aiortc's are
valid for 30 days), so a long-lived worker never offers an expired one; connections
keep the one they started with.
"""

from __future__ import annotations

import time
from typing import ClassVar

import aiortc.rtcpeerconnection
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsFingerprint, SRTPProtectionProfile
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

RENEW_BEFORE_EXPIRY_SECONDS = 24 * 3600


class WorkerCertificate(RTCCertificate):
    _current: ClassVar[WorkerCertificate | None] = None
    _renew_at: ClassVar[float] = 0.0

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        super().__init__(key, cert)
        self._fingerprints: list[RTCDtlsFingerprint] | None = None
        self._contexts: dict[tuple[bytes, ...], SSL.Context] = {}

    @classmethod
    def generateCertificate(cls) -> WorkerCertificate:  # noqa: N802 - aiortc's name
        current = cls._current
        if current is None or time.time() >= cls._renew_at:
            current = super().generateCertificate()
            cls._current = current
            cls._renew_at = current.expires.timestamp() - RENEW_BEFORE_EXPIRY_SECONDS
        return current

    def getFingerprints(self) -> list[RTCDtlsFingerprint]:  # noqa: N802 - aiortc's name
        if self._fingerprints is None:
            self._fingerprints = super().getFingerprints()
        return self._fingerprints

    def _create_ssl_context(self, srtp_profiles: list[SRTPProtectionProfile]) -> SSL.Context:
        # A context only carries settings and the key; each connection's state is in
        # its own SSL.Connection, so one context per profile list serves them all.
        key = tuple(profile.openssl_profile for profile in srtp_profiles)
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = super()._create_ssl_context(srtp_profiles)
        return context


def share_one_certificate() -> None:
    """Make every RTCPeerConnection of this process use the worker's certificate."""
    aiortc.rtcpeerconnection.RTCCertificate = WorkerCertificate  # type: ignore[misc]
