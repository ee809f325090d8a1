"""HLS from a real node: the room's mix in S3 (moto) as AAC segments and a live playlist
while the Space is live, the stage as timed metadata, the end, and what happens when
S3 refuses for a while or the worker dies."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from tests.hls import Playlist, decode, parse_playlist, peak_hz, tone_level

from .conftest import Aws, MediaEvents, NodeProcess
from .outage import Outage
from .peers import Peer

pytestmark = pytest.mark.slow

BUCKET = "parlor-hls-test"


class Objects:
    """The test bucket, read as the control plane and CloudFront would."""

    def __init__(self, aws: Aws) -> None:
        self.s3 = boto3.client("s3", endpoint_url=aws.endpoint, region_name="us-east-1")

    def playlist(self, space: str) -> Playlist | None:
        try:
            body = self.s3.get_object(Bucket=BUCKET, Key=f"hls/{space}/live.m3u8")["Body"]
        except self.s3.exceptions.NoSuchKey:
            return None
        return parse_playlist(body.read().decode())

    def segment(self, space: str, uri: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=BUCKET, Key=f"hls/{space}/{uri}")["Body"].read())

    def keys(self, space: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=f"hls/{space}/")
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def head(self, key: str) -> dict[str, Any]:
        return dict(self.s3.head_object(Bucket=BUCKET, Key=key))

    def tags(self, key: str) -> dict[str, str]:
        tags = self.s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
        return {t["Key"]: t["Value"] for t in tags}


@pytest.fixture(scope="module")
def objects(aws: Aws) -> Objects:
    found = Objects(aws)
    found.s3.create_bucket(Bucket=BUCKET)
    return found


@pytest.fixture(scope="module")
def hls_node(start_node: Callable[..., NodeProcess], objects: Objects) -> NodeProcess:
    return start_node(HLS_BUCKET=BUCKET)


async def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await asyncio.to_thread(check)
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def _segments(objects: Objects, space: str, count: int) -> Callable[[], Playlist | None]:
    def check() -> Playlist | None:
        playlist = objects.playlist(space)
        return playlist if playlist is not None and len(playlist.segments) >= count else None
    return check


def test_a_recorded_room_is_live_hls_with_its_stage_and_ends_with_it(
        hls_node: NodeProcess, objects: Objects, media_events: MediaEvents, space: str) -> None:
    async def scenario() -> None:
        host = Peer(hls_node.url, space, tone_hz=440)
        listener = Peer(hls_node.url, space)
        try:
            await host.join(hls_node.token("u_host", space, "host", rec=True))
            await listener.join(hls_node.token("u_fan", space, rec=True))
            await asyncio.gather(host.connected(), listener.connected())
            welcome = next(m for m in listener.messages if m["type"] == "welcome")
            assert welcome["recording"] is True
            playlist = await _until(_segments(objects, space, 4), 20, "four segments")

            # One run, numbered from 0, each segment about a second, all of them decoding
            # to the host's tone (the first holds the encoder's start-up and the join).
            assert playlist.media_sequence == 0
            assert playlist.target_duration == 1
            assert all(0.9 < s.seconds < 1.1 for s in playlist.segments)
            audio = [decode(await asyncio.to_thread(objects.segment, space, s.uri))
                     for s in playlist.segments[1:]]
            for samples in audio:
                assert samples.size == 48128
                assert abs(peak_hz(samples) - 440) <= 2
                assert tone_level(samples, 440) > 0.1
            # Consecutive segments are consecutive in time.
            for before, after in zip(playlist.segments, playlist.segments[1:], strict=False):
                assert before.program_date is not None
                assert after.program_date is not None
                assert abs(before.program_date + before.seconds - after.program_date) < 0.002

            stage = playlist.date_ranges[-1]
            assert stage["CLASS"] == "com.parlor.stage"
            assert stage["END-ON-NEXT"] == "YES"
            assert stage["X-STAGE"] == "u_host=host"
            assert stage["X-SPEAKING"] == "u_host"

            segment_key = f"hls/{space}/{playlist.segments[0].uri}"
            head = await asyncio.to_thread(objects.head, segment_key)
            assert head["ContentType"] == "video/mp2t"
            assert head["CacheControl"] == "public, max-age=31536000, immutable"
            assert (await asyncio.to_thread(objects.tags, segment_key)) == {"recorded": "true"}
            head = await asyncio.to_thread(objects.head, f"hls/{space}/live.m3u8")
            assert head["ContentType"] == "application/vnd.apple.mpegurl"
            assert head["CacheControl"] == "public, max-age=1"

            hls_node.command(type="end", space_id=space)
            finished = await media_events.wait_for(timeout=15, type="hls_finished",
                                                   space_id=space)
            assert finished["ended"] is True
            final = await asyncio.to_thread(objects.playlist, space)
            assert final is not None
            assert final.ended
            assert final.segments[-1].uri.rsplit("/", 1)[1].startswith(
                f"{finished['segments'] - 1:06d}-")
        finally:
            await asyncio.gather(host.close(), listener.close())

    asyncio.run(scenario())


def test_an_unrecorded_room_says_so_to_everyone_and_on_its_objects(
        hls_node: NodeProcess, objects: Objects, space: str) -> None:
    async def scenario() -> None:
        host = Peer(hls_node.url, space, tone_hz=440)
        try:
            await host.join(hls_node.token("u_host", space, "host"))
            await host.connected()
            welcome = next(m for m in host.messages if m["type"] == "welcome")
            assert welcome["recording"] is False
            playlist = await _until(_segments(objects, space, 1), 15, "a segment")
            key = f"hls/{space}/{playlist.segments[0].uri}"
            assert (await asyncio.to_thread(objects.tags, key)) == {"recorded": "false"}
        finally:
            await host.close()

    asyncio.run(scenario())


@pytest.fixture
def s3_outage(aws: Aws) -> Iterator[Outage]:
    port = int(aws.endpoint.rsplit(":", 1)[1])
    outage = Outage("127.0.0.1", port)
    yield outage
    outage.close()


def test_s3_refusing_for_a_while_stalls_neither_the_room_nor_the_recording(
        start_node: Callable[..., NodeProcess], objects: Objects, s3_outage: Outage,
        space: str) -> None:
    node = start_node(HLS_BUCKET=BUCKET, AWS_ENDPOINT_URL_S3=s3_outage.url)

    async def scenario() -> None:
        host = Peer(node.url, space, tone_hz=440)
        listener = Peer(node.url, space)
        try:
            await host.join(node.token("u_host", space, "host", rec=True))
            await listener.join(node.token("u_fan", space, rec=True))
            await asyncio.gather(host.connected(), listener.connected())
            first = await _until(_segments(objects, space, 2), 15, "two segments")
            started = first.segments[0].program_date

            s3_outage.down()
            refused_at = time.monotonic()
            # WebRTC listeners hear the room all along; the mixer keeps its clock.
            while time.monotonic() - refused_at < 6:
                await listener.hear(440, present=True, timeout=1)
                await asyncio.sleep(0.5)
            stale = await asyncio.to_thread(objects.playlist, space)
            assert stale is not None
            s3_outage.up()

            # Once S3 takes writes again, the segments made meanwhile are written, in
            # order, and the playlist catches up: no hole in the run.
            def caught_up() -> Playlist | None:
                playlist = objects.playlist(space)
                if playlist is None or not playlist.segments:
                    return None
                last = playlist.segments[-1]
                assert last.program_date is not None
                return playlist if last.program_date > time.time() - 3 else None

            await _until(caught_up, 20, "the playlist to catch up")
            # The listener's audio came every 20 ms throughout: no tick waited on S3.
            arrivals = [at for at, _ in listener.heard if at >= refused_at - 1]
            gaps = [b - a for a, b in itertools.pairwise(arrivals)]
            assert max(gaps) < 0.2, max(gaps)
            assert len(arrivals) > 45 * (arrivals[-1] - arrivals[0])
            run = sorted(k for k in await asyncio.to_thread(objects.keys, space)
                         if k.endswith(".ts"))
            numbers = [int(k.rsplit("/", 1)[1].split("-")[0]) for k in run]
            assert numbers == list(range(len(numbers)))
            seconds = sum(int(k.rsplit("-", 1)[1].removesuffix(".ts")) for k in run) / 48000
            assert started is not None
            assert seconds > time.time() - started - 3
            outage_audio = [decode(await asyncio.to_thread(objects.segment, space,
                                                            k.split("/", 2)[2]))
                            for k in run[len(first.segments) + 1:][:5]]
            assert all(tone_level(samples, 440) > 0.1 for samples in outage_audio)
        finally:
            await asyncio.gather(host.close(), listener.close())

    asyncio.run(scenario())


def test_a_room_opened_again_after_its_worker_died_continues_the_playlist(
        hls_node: NodeProcess, objects: Objects, space: str) -> None:
    async def scenario() -> None:
        host = Peer(hls_node.url, space, tone_hz=440)
        try:
            await host.join(hls_node.token("u_host", space, "host", rec=True))
            await host.connected()
            before = await _until(_segments(objects, space, 3), 15, "three segments")
            old_run = before.segments[0].uri.split("/")[0]
            pid = (await asyncio.to_thread(hls_node.health))["workers"][0]["pid"]
            os.kill(pid, signal.SIGKILL)
            await host.close()
            uploaded = [k for k in await asyncio.to_thread(objects.keys, space)
                        if k.endswith(".ts")]

            async def rejoin() -> Peer:
                while True:
                    again = Peer(hls_node.url, space, tone_hz=440)
                    try:
                        await again.join(hls_node.token("u_host", space, "host", rec=True))
                        await again.connected()
                        return again
                    except AssertionError:
                        await again.close()
                        await asyncio.sleep(0.5)

            host = await asyncio.wait_for(rejoin(), 30)

            def second_run() -> Playlist | None:
                playlist = objects.playlist(space)
                if playlist is None:
                    return None
                runs = {s.uri.split("/")[0] for s in playlist.segments}
                new = [s for s in playlist.segments if not s.uri.startswith(old_run)]
                return playlist if len(runs) == 2 and len(new) >= 2 else None

            after = await _until(second_run, 20, "a second run in the playlist")
            # What the dead worker wrote stays; its playlist goes on, numbered on, with
            # a discontinuity where the new run starts.
            assert set(uploaded) <= set(await asyncio.to_thread(objects.keys, space))
            first_new = next(i for i, s in enumerate(after.segments)
                             if not s.uri.startswith(old_run))
            assert after.segments[first_new].discontinuity
            assert not any(s.discontinuity for s in after.segments[:first_new])
            old_numbers = {s.uri: before.media_sequence + i
                           for i, s in enumerate(before.segments)}
            assert after.media_sequence >= before.media_sequence
            for index, segment in enumerate(after.segments[:first_new]):
                if segment.uri in old_numbers:
                    assert old_numbers[segment.uri] == after.media_sequence + index
            samples = decode(await asyncio.to_thread(
                objects.segment, space, after.segments[first_new + 1].uri))
            assert tone_level(samples, 440) > 0.1
        finally:
            await host.close()

    asyncio.run(scenario())


def test_hls_settings_that_make_no_sense_stop_the_node(
        start_node: Callable[..., NodeProcess]) -> None:
    with pytest.raises(AssertionError, match="HLS_SEGMENT_SECONDS"):
        start_node(HLS_BUCKET=BUCKET, HLS_SEGMENT_SECONDS="30")


def test_a_space_relayed_by_a_second_worker_is_packaged_once_by_its_owner(
        start_node: Callable[..., NodeProcess], objects: Objects, space: str) -> None:
    node = start_node(HLS_BUCKET=BUCKET, WORKERS="2", WORKER_LISTENERS="1")

    async def scenario() -> None:
        host = Peer(node.url, space, tone_hz=440)
        near = Peer(node.url, space)
        relayed = Peer(node.url, space)
        peers = [host, near, relayed]
        try:
            await host.join(node.token("u_host", space, "host", rec=True))
            await near.join(node.token("u_near", space, rec=True))
            await relayed.join(node.token("u_far", space, rec=True))
            assert relayed.worker != host.worker, "the third peer is relayed"
            await asyncio.gather(*(p.connected(timeout=20) for p in peers))
            await relayed.hear(440, present=True, timeout=10)
            welcome = next(m for m in relayed.messages if m["type"] == "welcome")
            assert welcome["recording"] is True
            await _until(_segments(objects, space, 3), 15, "three segments")
            await asyncio.sleep(2)
            runs = {k.split("/")[2] for k in await asyncio.to_thread(objects.keys, space)
                    if k.endswith(".ts")}
            assert len(runs) == 1, runs
        finally:
            await asyncio.gather(*(p.close() for p in peers))

    asyncio.run(scenario())


def test_a_long_refusal_drops_the_oldest_waiting_segments_not_the_node(
        start_node: Callable[..., NodeProcess], objects: Objects, s3_outage: Outage,
        space: str) -> None:
    node = start_node(HLS_BUCKET=BUCKET, AWS_ENDPOINT_URL_S3=s3_outage.url,
                      HLS_MAX_QUEUED_SEGMENTS="3")

    async def scenario() -> None:
        host = Peer(node.url, space, tone_hz=440)
        try:
            await host.join(node.token("u_host", space, "host", rec=True))
            await host.connected()
            await _until(_segments(objects, space, 2), 15, "two segments")
            s3_outage.down()
            await asyncio.sleep(8)
            s3_outage.up()

            def resumed() -> Playlist | None:
                playlist = objects.playlist(space)
                return playlist if playlist is not None and any(
                    s.discontinuity for s in playlist.segments) else None

            playlist = await _until(resumed, 20, "a discontinuity where segments went")
            numbers = sorted(int(k.rsplit("/", 1)[1].split("-")[0])
                             for k in await asyncio.to_thread(objects.keys, space)
                             if k.endswith(".ts"))
            assert len(numbers) < numbers[-1] + 1, "some segments were dropped"
            gap = next(i for i, s in enumerate(playlist.segments) if s.discontinuity)
            assert gap > 0, "the window holds what came before the gap"
            before, after = playlist.segments[gap - 1], playlist.segments[gap]
            assert before.program_date is not None
            assert after.program_date is not None
            assert after.program_date - before.program_date > 2
            dropped = [line for line in node.log_lines()
                       if line.get("message") == "HLS segments dropped: S3 has refused "
                                                 "them too long"]
            assert dropped
        finally:
            await host.close()

    asyncio.run(scenario())
