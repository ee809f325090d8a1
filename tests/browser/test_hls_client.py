"""The browser client over HLS, in Chromium against `make up`: a recorded Space's replay
played through the client's own player (heard at 440 Hz in the page, and seekable), a
live listener WebRTC has no room for (heard, the stage read from the playlist's date
ranges, brought on stage over WebRTC once approved), a playlist that cannot be fetched,
the replay page's accessibility and width on a phone, and the host's replays on their
profile."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Page, expect

from tests.browser.checks import PHONE, Hum, accessible, fits_the_window
from tests.browser.conftest import Person
from tests.hls import Playlist, parse_playlist
from tests.localrun import LocalRun

pytestmark = pytest.mark.slow

HUMMED_SECONDS = 10
T = TypeVar("T")

# An AnalyserNode on the page's HLS <audio> element (the one source a media element may
# have, made once): the loudest frequency each 200 ms for `seconds`, and its level.
LISTEN = """async (seconds) => {
  const audio = document.querySelector("audio[data-hls]");
  if (!window.testAnalyser || window.testAnalyser.audio !== audio) {
    const context = new AudioContext();
    const analyser = context.createAnalyser();
    analyser.fftSize = 8192;
    context.createMediaElementSource(audio).connect(analyser);
    analyser.connect(context.destination);
    window.testAnalyser = { audio, context, analyser };
  }
  const { context, analyser } = window.testAnalyser;
  await context.resume();
  const bins = new Float32Array(analyser.frequencyBinCount);
  const peaks = [];
  const until = performance.now() + seconds * 1000;
  while (performance.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    analyser.getFloatFrequencyData(bins);
    let loudest = 0;
    for (let i = 1; i < bins.length; i += 1) if (bins[i] > bins[loudest]) loudest = i;
    peaks.push({ hz: loudest * context.sampleRate / analyser.fftSize, db: bins[loudest] });
  }
  return peaks;
}"""
CURRENT_TIME = "document.querySelector('audio[data-hls]').currentTime"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    # One WebRTC listener per Space: the next listener's join is answered with HLS.
    run = LocalRun.prepare(tmp_path_factory.mktemp("browser-hls"))
    run.env["WEBRTC_LISTENER_LIMIT"] = "1"
    run.start()
    try:
        yield run
    finally:
        run.kill()


def _until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def _playlist(url: str) -> Playlist | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return parse_playlist(response.read().decode())
    except urllib.error.HTTPError:
        return None


def _detail(local: LocalRun, space_id: str) -> dict[str, Any]:
    status, detail = local.call("GET", f"/spaces/{space_id}", "u-alice")
    assert status == 200, detail
    return detail  # type: ignore[no-any-return]


def _hears_440(page: Page, seconds: float = 3) -> None:
    peaks = page.evaluate(LISTEN, seconds)
    heard = [p for p in peaks if abs(p["hz"] - 440) <= 12 and p["db"] > -70]
    assert len(heard) >= 0.6 * len(peaks), peaks


def _plays(page: Page) -> None:
    """The HLS element's clock moves on."""
    first = page.evaluate(CURRENT_TIME)
    page.wait_for_function(f"{CURRENT_TIME} > {first} + 1", timeout=15_000)


@pytest.fixture(scope="module")
def replay(local: LocalRun) -> dict[str, Any]:
    """A recorded Space in which alice hummed 440 Hz for about ten seconds, ended, once
    its replay is written: its detail."""
    status, space = local.call("POST", "/spaces", "u-alice",
                               {"title": "Hummed for the replay", "record": True})
    assert status == 201, space
    space_id = space["space_id"]
    hum = Hum(local, "u-alice", space_id)
    try:
        # The live playlist lists the latest few segments; its media sequence counts
        # those it no longer lists.
        _until(lambda: (p := _playlist(space["playback"]["hls_url"])) is not None
               and p.media_sequence + len(p.segments) > HUMMED_SECONDS, 40,
               "the hum's segments")
    finally:
        local.call("POST", f"/spaces/{space_id}/end", "u-alice")
        hum.stop()
    return _until(lambda: (d := _detail(local, space_id))["playback"]["state"] == "replay"
                  and d, 40, "the replay")


def test_the_player_library_is_served_as_a_module(local: LocalRun) -> None:
    with urllib.request.urlopen(f"{local.web}/vendor/hls.min.mjs", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/javascript")
        assert b"export" in response.read()


def test_a_replay_plays_at_440_hz_and_seeks(people: dict[str, Person], local: LocalRun,
                                            replay: dict[str, Any]) -> None:
    bob = people["u-bob"].sign_in("bob")
    bob.page.goto(f"{local.web}/spaces/{replay['space_id']}")
    expect(bob.page.get_by_role("heading", name="Hummed for the replay")).to_be_visible()
    expect(bob.page.locator("[data-state]")).to_have_text("Replay")
    play = bob.page.get_by_role("button", name="Play")
    expect(play).to_be_enabled(timeout=15_000)
    play.click()
    _plays(bob.page)
    _hears_440(bob.page)
    # Chromium also plays HLS itself, but shows none of its date ranges.
    assert bob.page.evaluate("window.parlorReplay.player.engine") == "hls.js"
    total = round(replay["playback"]["duration_seconds"])
    expect(bob.page.locator("[data-time]")).to_have_text(re.compile(rf"^0:0\d / 0:{total:02d}$"))

    # Paused, then moved with the keyboard on the seek bar: the audio follows it.
    bob.page.get_by_role("button", name="Pause").click()
    seek = bob.page.get_by_role("slider", name="Seek")
    seek.focus()
    bob.page.keyboard.press("Home")
    for _ in range(5):
        bob.page.keyboard.press("ArrowRight")
    bob.page.wait_for_function(f"Math.abs({CURRENT_TIME} - 5) < 0.5", timeout=10_000)
    expect(seek).to_have_attribute("aria-valuetext", f"0:05 of 0:{total:02d}")
    expect(bob.page.locator("[data-time]")).to_have_text(f"0:05 / 0:{total:02d}")


def test_the_replay_page_passes_axe(people: dict[str, Person], local: LocalRun,
                                    replay: dict[str, Any]) -> None:
    carol = people["u-carol"].sign_in("carol")
    carol.page.goto(f"{local.web}/spaces/{replay['space_id']}")
    expect(carol.page.get_by_role("button", name="Play")).to_be_enabled(timeout=15_000)
    accessible(carol.page)


def test_the_replay_page_fits_a_phone(people: dict[str, Person], local: LocalRun,
                                      replay: dict[str, Any]) -> None:
    carol = people["u-carol"]
    carol.page.set_viewport_size(PHONE)
    carol.sign_in("carol")
    carol.page.goto(f"{local.web}/spaces/{replay['space_id']}")
    expect(carol.page.get_by_role("slider", name="Seek")).to_be_enabled(timeout=15_000)
    fits_the_window(carol.page)


def test_an_hls_listener_hears_sees_the_stage_and_is_brought_on_stage(
    people: dict[str, Person], local: LocalRun
) -> None:
    status, space = local.call("POST", "/spaces", "u-alice", {"title": "Crowded hum"})
    assert status == 201, space
    space_id = space["space_id"]
    hum = Hum(local, "u-alice", space_id)
    try:
        # Carol takes the one WebRTC seat: bob's Listen is answered with HLS.
        status, seat = local.call("POST", f"/spaces/{space_id}/join", "u-carol")
        assert (status, seat["transport"]) == (200, "webrtc"), seat
        bob = people["u-bob"].sign_in("bob")
        bob.page.goto(f"{local.web}/spaces/{space_id}")
        bob.page.get_by_role("button", name="Listen", exact=True).click()
        status_text = bob.page.get_by_role("status", name="Audio status")
        expect(status_text).to_have_text(
            "You are listening over HLS, a few seconds behind the room.", timeout=20_000)
        assert bob.page.evaluate("window.parlorRoom.connection") is None
        # No node connection to carry a reaction: the buttons are not offered.
        expect(bob.page.get_by_role("group", name="Reactions")).to_be_hidden()
        _plays(bob.page)
        _hears_440(bob.page)
        # The stage as the playlist's date ranges say: only they tell an HLS listener
        # who speaks (there is no node connection to say it).
        expect(bob.page.locator("[data-stage]")).to_contain_text(
            "@alice · Host · speaking", timeout=10_000)
        assert bob.page.evaluate("window.parlorRoom.hlsStage.stage") == [
            {"user_id": "u-alice", "role": "host"}]

        # Bob asks to speak; alice approves: bob's page joins again over WebRTC by itself.
        bob.page.get_by_role("button", name="Request to speak").click()
        # The click's request is on its way: approve once the API has it.
        deadline = time.monotonic() + 10
        while True:
            status, pending = local.call("GET", f"/spaces/{space_id}/requests", "u-alice")
            assert status == 200, pending
            if any(item["user_id"] == "u-bob" for item in pending["items"]):
                break
            assert time.monotonic() < deadline, f"bob's request never arrived: {pending}"
            time.sleep(0.1)
        status, approved = local.call("POST", f"/spaces/{space_id}/requests/u-bob/approve",
                                      "u-alice")
        assert status == 200, approved
        expect(bob.page.get_by_role("button", name="Mute")).to_be_visible(timeout=15_000)
        expect(status_text).to_have_text("You are in the audio.", timeout=20_000)
        assert bob.page.evaluate("window.parlorRoom.player") is None
        expect(bob.page.get_by_role("group", name="Reactions")).to_be_visible()
        bob.hears_audio()
    finally:
        local.call("POST", f"/spaces/{space_id}/end", "u-alice")
        hum.stop()


def test_a_playlist_that_cannot_be_fetched_is_said_plainly(
    people: dict[str, Person], local: LocalRun
) -> None:
    status, space = local.call("POST", "/spaces", "u-alice", {"title": "Unreachable"})
    assert status == 201, space
    space_id = space["space_id"]
    try:
        dave = people["u-dave"].sign_in("dave")
        dave.page.route("**/hls/**", lambda route: route.abort())
        dave.page.goto(f"{local.web}/spaces/{space_id}")
        dave.page.get_by_role("button", name="Listen over HLS").click()
        expect(dave.page.get_by_role("status", name="Audio status")).to_have_text(
            "The broadcast could not be loaded. Press Listen to try again.", timeout=15_000)
        expect(dave.page.get_by_role("button", name="Listen over HLS")).to_be_visible()
    finally:
        local.call("POST", f"/spaces/{space_id}/end", "u-alice")


def test_the_host_records_a_space_and_deletes_its_replay(
    people: dict[str, Person], local: LocalRun, replay: dict[str, Any]
) -> None:
    alice = people["u-alice"].sign_in("alice")
    # A Space recorded from the form says so to everyone in it.
    alice.page.get_by_label("Title").fill("Recorded from the form")
    alice.page.get_by_label("Record this Space").check()
    alice.page.get_by_role("button", name="Start the Space").click()
    expect(alice.page.get_by_text("You are in the audio.")).to_be_visible(timeout=20_000)
    expect(alice.page.locator("[data-recording]")).to_have_text("● Recording")
    space_id = alice.page.url.rsplit("/", 1)[-1]
    assert _detail(local, space_id)["playback"]["recording"] is True
    alice.page.get_by_role("button", name="End the Space").click()
    expect(alice.page.locator("[data-state]")).to_have_text("ended", timeout=10_000)

    # Her profile lists the replay, linked; she deletes it.
    alice.page.goto(f"{local.web}/@alice")
    replays = alice.page.locator("[data-replays]")
    link = replays.get_by_role("link", name="Hummed for the replay")
    expect(link).to_have_attribute("href", f"/spaces/{replay['space_id']}")
    alice.page.once("dialog", lambda dialog: dialog.accept())
    replays.get_by_role("listitem").filter(has_text="Hummed for the replay").get_by_role(
        "button", name="Delete replay").click()
    expect(link).to_have_count(0)
    status, body = local.call("DELETE", f"/spaces/{replay['space_id']}/recording", "u-alice")
    assert (status, body["error"]) == (404, "recording_not_found")
    assert _detail(local, replay["space_id"])["playback"]["state"] == "none"
