"""The whole story in two browsers: a host goes live, a follower sees it in the bar,
listens, is brought on stage, is muted, and sees the end."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import SCREENSHOTS, Person
from tests.localrun import LocalRun

pytestmark = pytest.mark.slow
SCREENSHOT = SCREENSHOTS / "room.png"


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
    bob.page.get_by_role("button", name="Listen", exact=True).click()
    expect(bob.page.get_by_text("You are in the audio.")).to_be_visible(timeout=20_000)
    bob.hears_audio()

    # Bob asks to speak; alice approves; alice hears bob.
    bob.page.get_by_role("button", name="Request to speak").click()
    approve = alice.page.get_by_role("button", name="Approve @bob")
    expect(approve).to_be_visible(timeout=10_000)
    approve.click()
    expect(bob.page.get_by_role("button", name="Mute")).to_be_visible(timeout=10_000)
    alice.hears_audio()

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
