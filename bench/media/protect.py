"""The fast path's SRTP step alone, libsrtp against the stream's own AES-GCM (one
OpenSSL cipher context per stream), in one run: `python -m bench.media.protect`
(results in bench/results/media-protect.json).

One process, pinned to one CPU: `count` C streams, each with its own SRTP session
(AEAD_AES_256_GCM, what aiortc negotiates first) and its own duplicate of a loopback
socket, as a worker's listeners have. Each tick sends one 80-byte payload (the mix's
Opus packets are about that) to every stream with `_fanout.send`, the call a room makes;
the CPU time of those calls, per packet, is the figure. The two ways of protecting
alternate tick blocks within each round, so a noisy machine slows both alike; the
ratio is taken within a round, then its median. Sending still includes the kernel's
UDP path on loopback (the receiver's queue included), the same in both.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import time
from pathlib import Path
from typing import Any

from pylibsrtp import Policy, Session

from media_node.transport import aiortc_seams as seams
from media_node.transport import srtp_gcm
from media_node.transport.fanout import Stream as NativeStream
from media_node.transport.fanout import send_to_all

from .harness import NODE_CPU, RESULTS, write_results

PAYLOAD = bytes(80)
# AEAD_AES_256_GCM: a 32-byte master key and a 12-byte master salt.
MASTER_KEY_SIZE = 32
MASTER_SALT_SIZE = 12


def make_streams(count: int, own_gcm: bool, sink: tuple[str, int], fd: int) -> list[Any]:
    """`count` streams to `sink`, protected by libsrtp or (`own_gcm`) by the stream's
    own AES-GCM, as RtpStream keys a stream for an AEAD profile."""
    streams = []
    for ssrc in range(1, count + 1):
        master = os.urandom(MASTER_KEY_SIZE + MASTER_SALT_SIZE)
        policy = Policy(
            key=master,
            ssrc_type=Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
        )
        session = Session(policy)
        stream = NativeStream(
            owner=session,
            session=seams.srtp_context(session),
            ssrc=ssrc,
            sequence=random.getrandbits(15),
            timestamp_origin=random.getrandbits(32),
        )
        if own_gcm:
            stream.use_gcm(
                *srtp_gcm.session_keys(master[:MASTER_KEY_SIZE], master[MASTER_KEY_SIZE:])
            )
        stream.configure(payload_type=111, extension=b"", cname=b"bench")
        stream.route(*sink, fd=fd)
        streams.append(stream)
    return streams


def drain(sink: socket.socket) -> int:
    received = 0
    while True:
        try:
            sink.recv(2048)
        except BlockingIOError:
            return received
        received += 1


def timed_block(streams: list[Any], sink: socket.socket, ticks: int, pts: int) -> float:
    """CPU seconds of `ticks` sends to every stream (the draining not counted)."""
    spent = 0.0
    for tick in range(ticks):
        started = time.process_time()
        sent = send_to_all(streams, PAYLOAD, pts + 960 * tick)
        spent += time.process_time() - started
        assert sent == len(streams), f"{sent} of {len(streams)} sent"
        drain(sink)
    return spent


def run(count: int, rounds: int, ticks: int) -> dict[str, Any]:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    source = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    source.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    source.bind(("127.0.0.1", 0))
    address = sink.getsockname()
    ways = {
        "libsrtp": make_streams(count, False, address, source.fileno()),
        "openssl_gcm": make_streams(count, True, address, source.fileno()),
    }
    each_round: list[dict[str, float]] = []
    for number in range(rounds):
        spent = dict.fromkeys(ways, 0.0)
        # Blocks of ticks, alternating, the order flipped every round.
        order = list(ways) if number % 2 == 0 else list(reversed(ways))
        for block in range(10):
            for way in order:
                spent[way] += timed_block(ways[way], sink, ticks // 10, block * ticks)
        us = {way: 1e6 * spent[way] / (ticks // 10 * 10 * count) for way in ways}
        each_round.append(
            {**{f"{way}_us": round(value, 3) for way, value in us.items()},
             "libsrtp_over_openssl": round(us["libsrtp"] / us["openssl_gcm"], 3)}
        )
        print(json.dumps(each_round[-1]), flush=True)
    return {
        "streams": count,
        "ticks_per_round": ticks,
        "rounds": rounds,
        "payload_bytes": len(PAYLOAD),
        "profile": "AEAD_AES_256_GCM",
        "us_per_packet": {
            way: statistics.median(r[f"{way}_us"] for r in each_round) for way in ways
        },
        "libsrtp_over_openssl": statistics.median(r["libsrtp_over_openssl"] for r in each_round),
        "each_round": each_round,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ticks", type=int, default=500)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.sched_setaffinity(0, {NODE_CPU})
    started = time.time()
    measured = run(args.streams, args.rounds, args.ticks)
    write_results(
        args.out, "media-protect.json", "python -m bench.media.protect", started, measured
    )


if __name__ == "__main__":
    main()
