"""A browser as a listener: Chromium decrypts and plays what the fast path sends it, and
keeps its ICE consent, answered and checked by the fast path's C, well past 30 s."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import NodeProcess
from .peers import Peer, post_offer

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-gpu",
    "--autoplay-policy=no-user-gesture-required",
]

# Offers receive-only audio with every candidate gathered (the node takes no trickle),
# and plays what arrives, as the web client does.
OFFER = """async () => {
    const pc = new RTCPeerConnection();
    window.pc = pc;
    pc.addTransceiver("audio", {direction: "recvonly"});
    pc.ontrack = (event) => {
        const audio = new Audio();
        audio.srcObject = event.streams[0] || new MediaStream([event.track]);
        audio.play();
    };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
        if (pc.iceGatheringState === "complete") return resolve();
        pc.addEventListener("icegatheringstatechange", () => {
            if (pc.iceGatheringState === "complete") resolve();
        });
    });
    return pc.localDescription.sdp;
}"""

STATS = """async () => {
    const found = {iceConnectionState: window.pc.iceConnectionState};
    const stats = await window.pc.getStats();
    stats.forEach((report) => {
        if (report.type === "inbound-rtp" && report.kind === "audio") {
            found.packetsReceived = report.packetsReceived;
            found.packetsLost = report.packetsLost;
            found.totalAudioEnergy = report.totalAudioEnergy;
        }
        if (report.type === "transport") {
            found.srtpCipher = report.srtpCipher;
            // The nominated pair: the node's consent checks arrive on it as requests,
            // and Chromium's own come back answered on it.
            const pair = stats.get(report.selectedCandidatePairId);
            if (pair) {
                found.requestsReceived = pair.requestsReceived;
                found.responsesSent = pair.responsesSent;
                found.requestsSent = pair.requestsSent;
                found.responsesReceived = pair.responsesReceived;
            }
        }
        if (report.type === "remote-outbound-rtp") found.reportsSent = report.reportsSent;
    });
    return found;
}"""
# Past RFC 7675's 30 s, with its production timers on both sides: Chromium would have
# dropped a node that stopped answering its checks, and the node one that stopped
# answering the node's.
CONSENT_SECONDS = 35


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make test installs it)")
def test_chromium_decrypts_and_plays_the_fast_paths_audio(node: NodeProcess, space: str) -> None:
    from playwright.async_api import async_playwright

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], float]:
        speaker = Peer(node.url, space, tone_hz=440)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                await speaker.join(node.token("u_speaker", space, "host"))
                await speaker.connected()
                page = await browser.new_page()
                offer = await page.evaluate(OFFER)
                status, answer, _ = await post_offer(
                    node.url, space, node.token("u_chromium", space), offer
                )
                assert status == 201, answer
                await page.evaluate(
                    "(sdp) => window.pc.setRemoteDescription({type: 'answer', sdp})", answer
                )
                joined = time.monotonic()
                early: dict[str, Any] = {}
                for _ in range(100):
                    await asyncio.sleep(0.1)
                    early = await page.evaluate(STATS)
                    # The sender report comes within 5 s of the stream's start.
                    if early.get("packetsReceived", 0) > 100 and early.get("reportsSent"):
                        break
                await asyncio.sleep(max(0.0, CONSENT_SECONDS - (time.monotonic() - joined)))
                late = await page.evaluate(STATS)
                seconds = time.monotonic() - joined
                # Leaves as a browser tab does: DTLS's close_notify tells the node.
                await page.evaluate("() => window.pc.close()")
                return early, late, seconds
            finally:
                await browser.close()
                await speaker.close()

    early, late, seconds = asyncio.run(scenario())
    # Chromium counts a packet received only once SRTP authenticated and decrypted it.
    assert early.get("packetsReceived", 0) > 100, early
    assert early["packetsLost"] == 0, early
    assert early["totalAudioEnergy"] > 0, early
    assert early.get("reportsSent", 0) >= 1, early
    # Still connected, still hearing every packet, after the node's C has answered
    # Chromium's checks and sent its own for more than 30 s.
    assert seconds > 30
    assert late["iceConnectionState"] in ("connected", "completed"), late
    assert late["packetsLost"] == 0, late
    assert late["packetsReceived"] - early["packetsReceived"] >= 0.9 * 50 * (seconds - 10), late
    # The node's checks, every 4-6 s, reached Chromium, which answered them...
    assert late["requestsReceived"] - early["requestsReceived"] >= 4, (early, late)
    assert late["responsesSent"] >= late["requestsReceived"] - 1, late
    # ...and Chromium's own checks were answered.
    assert late["responsesReceived"] - early["responsesReceived"] >= 4, (early, late)
    # By the node's C, which says so when the browser leaves.
    outbound: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while not outbound and time.monotonic() < deadline:
        time.sleep(0.2)
        outbound = [
            line
            for line in node.log_lines()
            if line.get("message") == "outbound stream" and line.get("user_id") == "u_chromium"
        ]
    assert outbound, "the node never logged the browser's stream"
    assert outbound[0]["consent_answers"] >= late["responsesReceived"] - 2, outbound
    assert outbound[0]["consent_checks"] >= 6, outbound
    assert outbound[0]["consent_responses"] >= outbound[0]["consent_checks"] - 1, outbound
    assert outbound[0]["consent_expired"] is False
