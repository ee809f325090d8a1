"""The speaker jitter buffer on a simulated network and clock, with real Opus packets."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from media_node.audio.jitter import MAX_CONCEALED, JitterBuffer, OpusDecoder, concealment_packet
from media_node.audio.mixer import FRAME_SAMPLES, SAMPLE_RATE, level_dbfs
from peer.tones import CYCLE_FRAMES, opus_tone, tone_level

FRAME = FRAME_SAMPLES / SAMPLE_RATE
SSRC = 0x1234
FIRST_SEQUENCE = 65530  # wraps within the first packets
FIRST_TIMESTAMP = 2**32 - 5 * FRAME_SAMPLES
# The clock runs on past the last packet, whose end is concealed like any stall.
TAIL = MAX_CONCEALED


def encode(seconds: float, ms: int = 20, bursts: bool = True) -> list[bytes]:
    """A 440 Hz tone (in bursts, or steady) as Opus packets of `ms` each, mono 32 kbit/s."""
    options = {"application": "voip", "frame_duration": str(ms)}
    return opus_tone(440, int(seconds / FRAME), bursts=bursts, options=options)


@pytest.fixture(scope="module")
def bursts() -> list[bytes]:
    return encode(12.0)


def decoded(payloads: Sequence[bytes]) -> np.ndarray:
    """What a decoder that got every packet in order plays."""
    decoder = OpusDecoder()
    return np.concatenate([decoder.decode(p) for p in payloads])


@dataclass
class Sent:
    index: int
    sequence: int
    timestamp: int
    payload: bytes
    sent: float
    arrival: float


def send(
    payloads: Sequence[bytes],
    delay: Callable[[int], float | None] = lambda index: 0.03,
    samples: int = FRAME_SAMPLES,
) -> list[Sent]:
    """Packets as a speaker sends them every `samples`, arriving `delay(index)` later
    (None: lost); the list is in arrival order."""
    packets = []
    for index, payload in enumerate(payloads):
        late = delay(index)
        if late is None:
            continue
        sent = index * samples / SAMPLE_RATE
        packets.append(
            Sent(
                index,
                (FIRST_SEQUENCE + index) & 0xFFFF,
                (FIRST_TIMESTAMP + index * samples) & 0xFFFFFFFF,
                payload,
                sent,
                sent + late,
            )
        )
    return sorted(packets, key=lambda p: p.arrival)


def play(
    buffer: JitterBuffer,
    packets: Sequence[Sent],
    seconds: float,
    phase: float = 0.0137,
    stall: tuple[float, float] | None = None,
    skip: bool = False,
) -> list[tuple[float, np.ndarray | None]]:
    """Run the room's clock over the packets: what the buffer yields at each tick.

    During a `stall` (start, end) of the node itself nothing runs: the packets that come
    in are handled at its end, and the ticks due in it then run one after the other,
    unless the room `skip`s them: its clock then goes on from the stall's end.
    """
    out: list[tuple[float, np.ndarray | None]] = []
    queue = list(packets)
    ticks = [phase + tick * FRAME for tick in range(int(seconds / FRAME))]
    if stall is not None and skip:
        ticks = [t for t in ticks if t < stall[0]]
        ticks += [stall[1] + k * FRAME for k in range(int((seconds - stall[1]) / FRAME))]
    for now in ticks:
        if stall is not None and stall[0] <= now < stall[1]:
            now = stall[1] + (now - stall[0]) / 1000
        while queue and queue[0].arrival <= now:
            packet = queue.pop(0)
            handled = packet.arrival
            if stall is not None and stall[0] <= handled < stall[1]:
                handled = stall[1]
            buffer.push(SSRC, packet.sequence, packet.timestamp, packet.payload, handled)
        frame = buffer.pop_frame(now)
        assert frame is None or frame.shape == (FRAME_SAMPLES,)
        out.append((now, frame))
    return out


def played(out: list[tuple[float, np.ndarray | None]]) -> np.ndarray:
    return np.concatenate([frame for _, frame in out if frame is not None])


def onsets(
    out: list[tuple[float, np.ndarray | None]], packets: Sequence[Sent]
) -> list[tuple[float, float]]:
    """For each tone burst heard: when, and how long after its first packet was sent."""
    sent = sorted(p.sent for p in packets if p.index % CYCLE_FRAMES == 0)
    found = []
    loud = False
    for now, frame in out:
        now_loud = frame is not None and level_dbfs(frame) > -30
        if now_loud and not loud:
            before = [s for s in sent if s <= now]
            if before and now - before[-1] < 0.3:
                found.append((now, now - before[-1]))
        loud = now_loud
    return found


def latencies(out: list[tuple[float, np.ndarray | None]], packets: Sequence[Sent]) -> list[float]:
    return [latency for _, latency in onsets(out, packets)]


def test_a_clean_stream_plays_every_packet_once_in_order_at_the_next_tick(
    bursts: list[bytes],
) -> None:
    buffer = JitterBuffer()
    packets = send(bursts)
    out = play(buffer, packets, 12.5)
    reference = decoded(bursts)
    assert np.array_equal(played(out)[: reference.size], reference)
    # Nothing buffered beyond the wait for the room's clock and the margin.
    heard = latencies(out, packets)
    assert len(heard) >= 20
    assert max(heard) - 0.03 < FRAME + 0.005
    assert buffer.stats.concealed == TAIL
    assert buffer.stats.starts == 1


def test_reordered_packets_play_in_order_without_concealment(bursts: list[bytes]) -> None:
    buffer = JitterBuffer()
    # Every fifth packet is overtaken by the next one, by 5 ms, from the first on (a
    # reordering never seen before costs one concealed frame while the delay grows).
    packets = send(bursts, lambda i: 0.03 + (0.025 if i % 5 == 0 else 0.0))
    assert [p.index for p in packets[:7]] == [1, 0, 2, 3, 4, 6, 5]
    out = play(buffer, packets, 12.5)
    reference = decoded(bursts)
    assert np.array_equal(played(out)[: reference.size], reference)
    assert buffer.stats.concealed == TAIL
    assert buffer.stats.late == 0


def test_lost_packets_are_concealed_in_place_and_the_rest_plays_on_time(
    bursts: list[bytes],
) -> None:
    lost = {40, 41, 103, 260}
    buffer = JitterBuffer()
    packets = send(bursts, lambda i: None if i in lost else 0.03)
    out = play(buffer, packets, 12.5)
    audio = played(out)
    reference = decoded(bursts)
    assert audio.size == reference.size + TAIL * FRAME_SAMPLES
    assert buffer.stats.concealed == len(lost) + TAIL
    # Before the first loss the audio is the decoder's own; each lost frame inside a
    # burst is filled by concealment that carries the tone on, not by silence.
    assert np.array_equal(audio[: 40 * FRAME_SAMPLES], reference[: 40 * FRAME_SAMPLES])
    for index in (103,):
        frame = audio[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES]
        assert tone_level(frame.astype(np.float64), 440) > 0.05
    assert max(latencies(out, packets)) - 0.03 < FRAME + 0.005


def test_a_stalled_speaker_is_concealed_briefly_then_yields_nothing_then_restarts(
    bursts: list[bytes],
) -> None:
    buffer = JitterBuffer()
    # Nothing arrives from 2 s to 3.5 s; what was sent then is lost.
    packets = send(bursts, lambda i: None if 100 <= i < 175 else 0.03)
    out = play(buffer, packets, 6.0)
    frames = [frame for _, frame in out]
    first_missing = next(
        i for i, (now, _) in enumerate(out) if now > 100 * FRAME + 0.03 + FRAME + 0.005
    )
    gap = frames[first_missing : first_missing + 60]
    yielded = [frame for frame in gap if frame is not None]
    assert len(yielded) <= MAX_CONCEALED
    assert any(frame is None for frame in gap)
    assert buffer.stats.starts == 2
    # The restart is clean: the tone bursts after it are heard as soon as before.
    assert latencies(out, packets)[-1] - 0.03 < FRAME + 0.005


def test_a_stall_of_the_node_itself_does_not_grow_the_delay(bursts: list[bytes]) -> None:
    buffer = JitterBuffer()
    packets = send(bursts)
    out = play(buffer, packets, 12.5, stall=(3.03, 3.18))
    reference = decoded(bursts)
    # Every packet made its tick, late as the tick was: nothing concealed or moved.
    assert np.array_equal(played(out)[: reference.size], reference)
    assert buffer.stats.concealed == TAIL
    assert buffer.stats.repeated == 0
    after = [latency for at, latency in onsets(out, packets) if at > 3.3]
    assert max(after) - 0.03 < FRAME + 0.005


def test_after_the_room_skips_ahead_the_delay_is_as_before(bursts: list[bytes]) -> None:
    buffer = JitterBuffer()
    packets = send(bursts)
    # Short of the room's 200 ms limit: the buffer's own reading of the clock has to
    # see that the room's ticks now run later.
    out = play(buffer, packets, 12.5, stall=(3.03, 3.187), skip=True)
    after = [latency for at, latency in onsets(out, packets) if at > 4.5]
    assert max(after) - 0.03 < FRAME + 0.005
    assert buffer.stats.concealed <= TAIL + 1


def test_a_very_late_packet_is_not_played_out_of_its_place(bursts: list[bytes]) -> None:
    buffer = JitterBuffer()
    packets = send(bursts[:100], lambda i: 1.0 if i == 50 else 0.03)
    play(buffer, packets, 2.5)
    assert buffer.stats.late == 1
    assert buffer.stats.concealed == 1 + TAIL


def test_the_delay_grows_with_jitter_and_comes_back_down_once_it_is_gone(
    bursts: list[bytes],
) -> None:
    rng = random.Random(7)

    def delay(index: int) -> float:
        # Up to 60 ms of jitter for the first 5 s, then a clean path.
        return 0.03 + (rng.uniform(0, 0.06) if index < 250 else 0.0)

    buffer = JitterBuffer()
    packets = send(bursts, delay)
    out = play(buffer, packets, 12.5)
    # Concealment only while the buffer learns the jitter, never a hole in a burst.
    assert buffer.stats.concealed <= TAIL + 6
    last = max(p.arrival for p in packets)
    assert all(frame is not None for now, frame in out[10:] if now < last)
    heard = onsets(out, packets)
    jittery = [latency for at, latency in heard if 1.0 < at < 5.0]
    clean = [latency for at, latency in heard if at > 10.5]
    assert min(jittery) - 0.03 > 0.04
    assert max(clean) - 0.03 < FRAME + 0.005
    assert buffer.stats.shed >= 2


@pytest.mark.parametrize("ms", [10, 40, 60])
def test_other_packet_durations_play_as_whole_20_ms_frames(ms: int) -> None:
    payloads = encode(3.0, ms=ms, bursts=False)
    buffer = JitterBuffer()
    packets = send(payloads, samples=ms * SAMPLE_RATE // 1000)
    out = play(buffer, packets, 3.5)
    reference = decoded(payloads)
    audio = played(out)
    assert audio.size >= reference.size - FRAME_SAMPLES
    assert np.array_equal(audio[: reference.size], reference[: audio.size])
    assert buffer.stats.concealed == TAIL


@pytest.mark.parametrize("ms", [10, 20, 40, 60])
def test_concealment_lasts_as_long_as_the_lost_packet(ms: int) -> None:
    payloads = encode(0.2, ms=ms, bursts=False)
    decoder = OpusDecoder()
    for payload in payloads[:-1]:
        decoder.decode(payload)
    concealed = decoder.decode(concealment_packet(payloads[-1]))
    assert concealed.size == ms * SAMPLE_RATE // 1000
    assert tone_level(concealed.astype(np.float64), 440) > 0.05


def test_a_new_ssrc_starts_a_new_stream(bursts: list[bytes]) -> None:
    buffer = JitterBuffer()
    for index, payload in enumerate(bursts[:10]):
        buffer.push(SSRC, 100 + index, 5000 + index * FRAME_SAMPLES, payload, index * FRAME)
    assert buffer.pop_frame(0.25) is not None
    buffer.push(SSRC + 1, 40000, 99, bursts[10], 0.26)
    assert buffer.stats.starts == 1
    assert buffer.pop_frame(0.27) is not None
    assert buffer.stats.starts == 2


def test_clear_drops_what_is_buffered(bursts: list[bytes]) -> None:
    buffer = JitterBuffer()
    for index, payload in enumerate(bursts[:5]):
        buffer.push(SSRC, index, index * FRAME_SAMPLES, payload, index * FRAME)
    assert buffer.pop_frame(0.1) is not None
    buffer.clear()
    assert buffer.pop_frame(0.12) is None
