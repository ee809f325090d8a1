"""A browser as a listener: Chromium decrypts and plays what the fast path sends it."""

from __future__ import annotations

import asyncio
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
    const found = {};
    (await window.pc.getStats()).forEach((report) => {
        if (report.type === "inbound-rtp" && report.kind === "audio") {
            found.packetsReceived = report.packetsReceived;
            found.packetsLost = report.packetsLost;
            found.totalAudioEnergy = report.totalAudioEnergy;
        }
        if (report.type === "transport") found.srtpCipher = report.srtpCipher;
        if (report.type === "remote-outbound-rtp") found.reportsSent = report.reportsSent;
    });
    return found;
}"""


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make test installs it)")
def test_chromium_decrypts_and_plays_the_fast_paths_audio(node: NodeProcess, space: str) -> None:
    from playwright.async_api import async_playwright

    async def scenario() -> dict[str, Any]:
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
                stats: dict[str, Any] = {}
                for _ in range(100):
                    await asyncio.sleep(0.1)
                    stats = await page.evaluate(STATS)
                    # The sender report comes within 5 s of the stream's start.
                    if stats.get("packetsReceived", 0) > 100 and stats.get("reportsSent"):
                        break
                return stats
            finally:
                await browser.close()
                await speaker.close()

    stats = asyncio.run(scenario())
    # Chromium counts a packet received only once SRTP authenticated and decrypted it.
    assert stats.get("packetsReceived", 0) > 100, stats
    assert stats["packetsLost"] == 0, stats
    assert stats["totalAudioEnergy"] > 0, stats
    assert stats.get("reportsSent", 0) >= 1, stats
