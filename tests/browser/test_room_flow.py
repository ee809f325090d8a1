"""The whole story in two browsers: a host goes live, a follower sees it in the bar,
listens, is brought on stage, is muted, and sees the end."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Person
from tests.localrun import LocalRun

pytestmark = pytest.mark.slow
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "room.png"


def _energy_keeps_rising(person: Person, seconds: float = 6.0) -> None:
    """The inbound audio track's energy (getStats' totalAudioEnergy) grows: sound arrives."""
    readings = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        readings.append(person.audio_energy())
        time.sleep(0.5)
    rises = sum(1 for a, b in itertools.pairwise(readings) if b > a)
    assert readings[-1] > readings[0], readings
    assert rises >= 3, readings


def test_a_host_goes_live_and_a_follower_hears_speaks_and_sees_the_end(
    people: dict[str, Person], local: LocalRun
) -> None:
    alice = people["u-alice"].sign_in("alice")
    bob = people["u-bob"].sign_in("bob")  # bob follows alice (demo data)

    alice.page.get_by_label("Title").fill("Browser chat")
    alice.page.get_by_role("button", name="Start the Space").click()
    expect(alice.page.get_by_text("You are in the audio.")).to_be_visible(timeout=20_000)

    # The bar shows the Space to bob without a reload, brought by the WebSocket (the
    # client polls only while its socket is down).
    assert bob.page.evaluate("window.parlorBar.live") is True
    in_bar = bob.page.locator("#bar-list a", has_text="Browser chat")
    expect(in_bar).to_be_visible(timeout=20_000)
    assert bob.page.evaluate("window.parlorBar.messages") >= 1
    in_bar.click()
    bob.page.get_by_role("button", name="Listen").click()
    expect(bob.page.get_by_text("You are in the audio.")).to_be_visible(timeout=20_000)
    _energy_keeps_rising(bob)

    # Bob asks to speak; alice approves; alice hears bob.
    bob.page.get_by_role("button", name="Request to speak").click()
    approve = alice.page.get_by_role("button", name="Approve @bob")
    expect(approve).to_be_visible(timeout=10_000)
    approve.click()
    expect(bob.page.get_by_role("button", name="Mute")).to_be_visible(timeout=10_000)
    _energy_keeps_rising(alice)

    # Alice mutes bob: both see it.
    alice.page.get_by_role("button", name="Mute @bob").click()
    expect(bob.page.get_by_role("button", name="Unmute")).to_be_visible(timeout=10_000)
    expect(alice.page.locator("[data-stage]")).to_contain_text("@bob · Speaker · muted")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    alice.page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Alice ends the Space: bob is told, and the bar empties.
    alice.page.get_by_role("button", name="End the Space").click()
    expect(bob.page.get_by_text("This Space has ended.")).to_be_visible(timeout=10_000)
    expect(bob.page.locator("#bar-list a", has_text="Browser chat")).to_have_count(0,
                                                                                   timeout=15_000)
