"""The node's live playlist and segmenter, alone: the sliding window's numbering, the
stage metadata's placement, continuing a predecessor's playlist, and segments that
join without a seam. Read back with the tests' own parser and decoder."""

from __future__ import annotations

import itertools

import numpy as np

from media_node.hls.playlist import Entry, LivePlaylist, StageState, parse
from media_node.hls.segments import AAC_FRAME, SAMPLE_RATE, Segmenter
from tests.hls import decode, parse_playlist, tone_level

T0 = 1_796_000_000.0


def _entry(n: int, discontinuity: bool = False) -> Entry:
    return Entry(f"run/{n:06d}-48128.ts", 1.002667, T0 + n * 1.002667, discontinuity)


def _state(at: float, speaking: tuple[str, ...] = ()) -> StageState:
    return StageState(at, (("u-a", "host"), ("u-b", "speaker")), speaking, ())


def test_the_window_slides_and_counts_the_discontinuities_it_drops() -> None:
    playlist = LivePlaylist(window=3, target_seconds=1)
    for n in range(6):
        playlist.add(_entry(n, discontinuity=n == 2))
    seen = parse_playlist(playlist.render())
    assert [s.uri for s in seen.segments] == [_entry(n).uri for n in (3, 4, 5)]
    assert seen.media_sequence == 3
    assert seen.discontinuity_sequence == 1
    assert seen.target_duration == 1
    assert not seen.ended
    playlist.ended = True
    assert parse_playlist(playlist.render()).ended


def test_stage_states_sit_where_they_start_and_the_current_one_stays() -> None:
    playlist = LivePlaylist(window=2, target_seconds=1)
    playlist.note(_state(T0))
    assert not playlist.note(_state(T0 + 0.5))  # nothing changed
    playlist.note(_state(T0 + 1.5, ("u-b",)))
    playlist.note(_state(T0 + 9.0, ("u-a",)))  # after every segment: held back
    for n in range(4):
        playlist.add(_entry(n))
    text = playlist.render()
    seen = parse_playlist(text)
    # The window starts at segment 2 (T0 + 2.005): the state from T0 + 1.5 is in effect.
    assert [d["X-SPEAKING"] for d in seen.date_ranges] == ["u-b"]
    assert seen.date_ranges[0]["X-STAGE"] == "u-a=host,u-b=speaker"
    assert seen.date_ranges[0]["END-ON-NEXT"] == "YES"
    assert text.index("#EXT-X-DATERANGE") < text.index(_entry(2).uri)
    playlist.add(_entry(9))
    assert [d["X-SPEAKING"] for d in parse_playlist(playlist.render()).date_ranges] == [
        "u-b", "u-a"]


def test_a_predecessors_playlist_is_read_back_as_written() -> None:
    playlist = LivePlaylist(window=4, target_seconds=1)
    for n in range(6):
        playlist.add(_entry(n, discontinuity=n == 5))
    again = parse(playlist.render(), window=4, target_seconds=1)
    assert (again.media_sequence, again.discontinuity_sequence) == (2, 0)
    assert [(e.uri, e.seconds, e.discontinuity) for e in again.entries] == [
        (e.uri, e.seconds, e.discontinuity) for e in playlist.entries]
    # Dates are written to the millisecond.
    assert all(abs(a.program_date - b.program_date) < 0.001
               for a, b in zip(again.entries, playlist.entries, strict=True))


def test_segments_follow_each_other_without_a_seam() -> None:
    segmenter = Segmenter(48000, 1.0)
    made = []
    for tick in range(150):  # 3 s of 440 Hz
        t = (tick * 960 + np.arange(960)) / SAMPLE_RATE
        made += segmenter.push((9000 * np.sin(2 * np.pi * 440 * t)).astype(np.int32))
    made += segmenter.finish()
    assert [s.index for s in made] == list(range(len(made)))
    assert all(s.samples == 47 * AAC_FRAME for s in made[:-1])
    for before, after in itertools.pairwise(made):
        assert after.first_pts == before.first_pts + before.samples
    # The priming frame before the mix's first sample, then all of the mix.
    assert made[0].first_pts == -AAC_FRAME
    assert sum(s.samples for s in made) >= 150 * 960 + AAC_FRAME
    joined = np.concatenate([decode(s.data) for s in made])
    assert tone_level(joined[AAC_FRAME * 3: 150 * 960], 440) > 0.2
    assert segmenter.finish() == []
