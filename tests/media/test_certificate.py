"""One DTLS certificate per worker: shared by peer connections, renewed before expiry."""

from __future__ import annotations

import asyncio

import aiortc.rtcdtlstransport
import aiortc.rtcpeerconnection
import pytest
from aiortc import RTCPeerConnection

from media_node.transport.aiortc_seams import WorkerCertificate, share_one_certificate

from .conftest import NodeProcess
from .peers import Peer, post_offer


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch) -> None:
    # Recorded first, so that the patch is undone for the other tests of this process.
    monkeypatch.setattr(
        aiortc.rtcpeerconnection, "RTCCertificate", aiortc.rtcpeerconnection.RTCCertificate
    )
    monkeypatch.setattr(WorkerCertificate, "_current", None)
    monkeypatch.setattr(WorkerCertificate, "_renew_at", 0.0)
    share_one_certificate()


def fingerprints(sdp: str) -> set[str]:
    return {line for line in sdp.splitlines() if line.startswith("a=fingerprint:")}


def offer_fingerprints() -> set[str]:
    async def offer() -> set[str]:
        pc = RTCPeerConnection()
        try:
            pc.addTransceiver("audio")
            await pc.setLocalDescription(await pc.createOffer())
            return fingerprints(pc.localDescription.sdp)
        finally:
            await pc.close()

    return asyncio.run(offer())


@pytest.mark.usefixtures("shared")
def test_peer_connections_share_the_workers_certificate_until_it_is_renewed() -> None:
    first = offer_fingerprints()
    assert first
    assert offer_fingerprints() == first

    certificate = WorkerCertificate.generateCertificate()
    assert certificate.getFingerprints() is certificate.getFingerprints()
    profiles = aiortc.rtcdtlstransport.SRTP_PROFILES
    assert certificate.ssl_context(profiles) is certificate.ssl_context(profiles)

    # A day before expiry, the next peer connection gets a new one.
    WorkerCertificate.forget()
    renewed = offer_fingerprints()
    assert renewed
    assert renewed != first
    assert WorkerCertificate._renew_at > 0


@pytest.mark.slow
def test_the_node_answers_every_peer_with_one_certificate(node: NodeProcess, space: str) -> None:
    async def scenario() -> list[set[str]]:
        peers = [Peer(node.url, space) for _ in range(2)]
        answers = []
        try:
            for index, peer in enumerate(peers):
                status, answer, _ = await post_offer(
                    node.url, space, node.token(f"u_{index}", space), await peer.offer()
                )
                assert status == 201
                answers.append(fingerprints(answer))
        finally:
            await asyncio.gather(*(peer.close() for peer in peers))
        return answers

    first, second = asyncio.run(scenario())
    assert first
    assert first == second
