"""The live media playlist (RFC 8216): a sliding window of the latest segments, with the
room's stage as timed metadata.

Who is on stage, who speaks and who is muted travel as EXT-X-DATERANGE tags of one
CLASS, each starting when that state began and ending where the next begins
(END-ON-NEXT): nothing per listener, and players surface them on the media timeline
(hls.js as `dateRanges` and metadata cues, Safari as a metadata text track), so what a
listener sees changes when they hear it, seconds behind the room.

A worker that opens the room again (its predecessor died, or the room closed and came
back) continues the playlist it finds: same media sequence, one discontinuity more, so
players carry on across the seam (`parse`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

STAGE_CLASS = "com.parlor.stage"
VERSION = 3


@dataclass(frozen=True)
class Entry:
    """A segment as the playlist lists it; `uri` is relative to the playlist."""

    uri: str
    seconds: float
    program_date: float
    discontinuity: bool = False


@dataclass(frozen=True)
class StageState:
    """The room's stage from `at` (epoch seconds) until the next state."""

    at: float
    stage: tuple[tuple[str, str], ...]
    speaking: tuple[str, ...]
    muted: tuple[str, ...]

    def same_as(self, other: StageState | None) -> bool:
        return other is not None and (self.stage, self.speaking, self.muted) == (
            other.stage, other.speaking, other.muted)

    def tag(self) -> str:
        stage = ",".join(f"{user}={role}" for user, role in self.stage)
        return (f'#EXT-X-DATERANGE:ID="stage-{round(self.at * 1000)}",CLASS="{STAGE_CLASS}",'
                f'START-DATE="{iso(self.at)}",END-ON-NEXT=YES,X-STAGE="{stage}",'
                f'X-SPEAKING="{",".join(self.speaking)}",X-MUTED="{",".join(self.muted)}"')


def iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class LivePlaylist:
    window: int
    target_seconds: int
    media_sequence: int = 0
    discontinuity_sequence: int = 0
    entries: list[Entry] = field(default_factory=list)
    states: list[StageState] = field(default_factory=list)
    ended: bool = False

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)
        while len(self.entries) > self.window:
            gone = self.entries.pop(0)
            self.media_sequence += 1
            # A discontinuity tag leaves with the segment it stood before (RFC 8216
            # 6.2.2): the count of those gone keeps players' numbering straight.
            if gone.discontinuity:
                self.discontinuity_sequence += 1
        self._forget_old_states()

    def note(self, state: StageState) -> bool:
        """Records a new stage state; False if nothing changed."""
        if state.same_as(self.states[-1] if self.states else None):
            return False
        self.states.append(state)
        return True

    def _forget_old_states(self) -> None:
        # The state in effect when the window starts stays (a listener tuning in needs
        # it); those it replaced go.
        if not self.entries:
            return
        start = self.entries[0].program_date
        while len(self.states) > 1 and self.states[1].at <= start:
            self.states.pop(0)

    def render(self) -> str:
        target = max([self.target_seconds, *(math.ceil(e.seconds - 0.5) for e in self.entries)])
        lines = ["#EXTM3U", f"#EXT-X-VERSION:{VERSION}", f"#EXT-X-TARGETDURATION:{target}",
                 f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
                 f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}",
                 "#EXT-X-INDEPENDENT-SEGMENTS"]
        states = list(self.states)
        for entry in self.entries:
            end = entry.program_date + entry.seconds
            # Each state is written before the segment during which it starts (the one in
            # effect at the window's start, before the first); one that starts after the
            # last segment waits for the segment that holds its moment.
            while states and states[0].at < end:
                lines.append(states.pop(0).tag())
            if entry.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{iso(entry.program_date)}")
            lines.append(f"#EXTINF:{entry.seconds:.6f},")
            lines.append(entry.uri)
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


_TAG = re.compile(r"#(EXT-X-[A-Z-]+|EXTINF):?(.*)")


def parse(text: str, window: int, target_seconds: int) -> LivePlaylist:
    """A live playlist this module wrote (a predecessor's), to continue from. Its stage
    states are not kept: the new room has its own stage."""
    playlist = LivePlaylist(window, target_seconds)
    seconds: float | None = None
    program_date: float | None = None
    discontinuity = False
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        match = _TAG.fullmatch(line)
        if match is None:
            if line.startswith("#"):
                continue
            if seconds is None or program_date is None:
                raise ValueError(f"segment {line!r} lacks EXTINF or PROGRAM-DATE-TIME")
            playlist.entries.append(Entry(line, seconds, program_date, discontinuity))
            seconds, program_date, discontinuity = None, None, False
            continue
        tag, value = match.groups()
        if tag == "EXT-X-MEDIA-SEQUENCE":
            playlist.media_sequence = int(value)
        elif tag == "EXT-X-DISCONTINUITY-SEQUENCE":
            playlist.discontinuity_sequence = int(value)
        elif tag == "EXT-X-DISCONTINUITY":
            discontinuity = True
        elif tag == "EXT-X-PROGRAM-DATE-TIME":
            program_date = _epoch(value)
        elif tag == "EXTINF":
            seconds = float(value.split(",", 1)[0])
        elif tag == "EXT-X-ENDLIST":
            playlist.ended = True
    return playlist
