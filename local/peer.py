"""A command-line participant: joins a Space through the API, connects to its media node
over WebRTC, speaks a tone if it may, and reports what it hears.

    python -m local.peer --as u-alice --space sp_... --tone 440   # the host hums
    python -m local.peer --as u-bob --space sp_...                # a listener hears it

It is what a client does, in the open: the API's join call, then a WHEP/WHIP-shaped
POST of the SDP offer with the join token. Each second it prints the level and the
loudest frequency it heard, and the room events from the data channel."""

from __future__ import annotations

import argparse
import asyncio
import fractions
import time
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame
from yarl import URL

from local import settings
from local.issuer import LocalIssuer

SAMPLE_RATE = 48000
FRAME = 960
PUBLISHING_ROLES = ("host", "co_host", "speaker")


class Tone(MediaStreamTrack):
    """A microphone that hums one frequency, paced in real time."""

    kind = "audio"

    def __init__(self, hz: float) -> None:
        super().__init__()
        self._hz = hz
        self._sent = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        await asyncio.sleep(max(0.0, self._start + self._sent / SAMPLE_RATE - time.monotonic()))
        t = (self._sent + np.arange(FRAME)) / SAMPLE_RATE
        wave = (0.25 * 32767 * np.sin(2 * np.pi * self._hz * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._sent += FRAME
        return frame


async def join(http: aiohttp.ClientSession, api: str, token: str,
               space_id: str) -> dict[str, Any]:
    async with http.post(f"{api}/spaces/{space_id}/join",
                         headers={"Authorization": f"Bearer {token}",
                                  "Content-Type": "application/json"}) as response:
        body: dict[str, Any] = await response.json()
        if response.status != 200:
            raise SystemExit(f"the API refused to join: {response.status} {body}")
        return body


def describe(samples: np.ndarray) -> str:
    if samples.size < FRAME:
        return "silence (nothing received)"
    rms = float(np.sqrt(np.mean(np.square(samples))) / 32768)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    peak = float(np.fft.rfftfreq(samples.size, 1 / SAMPLE_RATE)[int(np.argmax(spectrum))])
    return f"level {rms:.3f}, loudest at {peak:.0f} Hz" if rms > 0.001 else "silence"


async def run(api: str, token: str, space_id: str, tone_hz: float, seconds: float) -> int:
    async with aiohttp.ClientSession() as http:
        joined = await join(http, api, token, space_id)
        return await connect(http, joined, space_id, tone_hz, seconds)


async def connect(http: aiohttp.ClientSession, joined: dict[str, Any], space_id: str,
                  tone_hz: float, seconds: float) -> int:
    role = joined["role"]
    ice = [RTCIceServer(**server) for server in joined["media"]["ice_servers"]]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=ice))
    channel = pc.createDataChannel("events")
    channel.on("message", lambda message: print(f"event: {message}", flush=True))
    heard: list[np.ndarray] = []

    async def listen(track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, AudioFrame)
            heard.append(frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0])

    readers: list[asyncio.Task[None]] = []
    pc.on("track", lambda track: readers.append(asyncio.create_task(listen(track))))
    if role in PUBLISHING_ROLES:
        pc.addTransceiver(Tone(tone_hz), direction="sendrecv")
    else:
        pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(joined["media"]["url"], data=pc.localDescription.sdp, headers={
            "Authorization": f"Bearer {joined['token']}",
            "Content-Type": "application/sdp"}) as response:
        answer = await response.text()
        if response.status != 201:
            print(f"the media node refused: {response.status} {answer}")
            await pc.close()
            return 1
        session = response.url.join(URL(response.headers["Location"]))
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    speaking = f", humming {tone_hz:.0f} Hz" if role in PUBLISHING_ROLES else ""
    print(f"joined {space_id} as {role} on {joined['node_id']}{speaking}", flush=True)
    started = time.monotonic()
    while time.monotonic() - started < seconds and pc.connectionState != "closed":
        await asyncio.sleep(1)
        window, heard[:] = (np.concatenate(heard) if heard else np.zeros(0)), []
        print(f"heard: {describe(window.astype(np.float64))}", flush=True)
    async with http.delete(session):
        pass
    for reader in readers:
        reader.cancel()
    await pc.close()
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description="Join a Space's audio from the terminal")
    parser.add_argument("--as", dest="user_id", required=True, help="a user id, e.g. u-bob")
    parser.add_argument("--space", required=True, help="the Space id")
    parser.add_argument("--tone", type=float, default=440.0, help="Hz to hum when on stage")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--api", default=f"http://{settings.HOST}:{settings.WEB_PORT}/api")
    args = parser.parse_args()
    token = LocalIssuer.load_or_create(settings.ISSUER_KEY).mint(args.user_id)
    raise SystemExit(asyncio.run(run(args.api, token, args.space, args.tone, args.seconds)))


if __name__ == "__main__":
    main()
