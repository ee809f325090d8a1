"""A real browser (Debian's Chromium, driven by Playwright) against `make up` started by
the tests, with a fake microphone that beeps."""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.localrun import LocalRun

# The README's screenshots are taken by the browser tests, and written into docs/images
# only when asked (PARLOR_SCREENSHOTS=1 make test): a test run leaves the tree as it was.
SCREENSHOTS = (Path(__file__).resolve().parents[2] / "docs" / "images"
               if os.environ.get("PARLOR_SCREENSHOTS") == "1"
               else Path(tempfile.gettempdir()) / "parlor-screenshots")

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox",
    "--disable-background-networking", "--disable-component-update", "--no-first-run",
    "--disable-gpu", "--disable-quic", "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    run = LocalRun.prepare(tmp_path_factory.mktemp("browser-state")).start()
    try:
        yield run
    finally:
        run.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


class Person:
    """One person at their own browser window."""

    def __init__(self, browser: Browser, local: LocalRun, user_id: str) -> None:
        self.context = browser.new_context(permissions=["microphone"])
        self.page: Page = self.context.new_page()
        self.local = local
        self.user_id = user_id

    def sign_in(self, handle: str) -> Person:
        self.page.goto(self.local.web)
        self.page.get_by_role("button", name=f"Sign in as @{handle}").click()
        self.page.get_by_text(f"@{handle}", exact=True).wait_for()
        return self

    def audio_energy(self) -> float:
        return float(self.page.evaluate(
            "window.parlorRoom && window.parlorRoom.connection"
            " ? window.parlorRoom.connection.inboundAudioEnergy() : 0"))

    def packets_received(self) -> int:
        """Audio packets the room's current connection received (getStats' inbound-rtp
        packetsReceived); 0 without a connection."""
        return int(self.page.evaluate(
            "window.parlorRoom && window.parlorRoom.connection"
            " ? window.parlorRoom.connection.packetsReceived() : 0"))

    def hears_audio(self, seconds: float = 6.0) -> None:
        """The inbound audio track's energy (getStats' totalAudioEnergy) keeps growing:
        sound arrives, not one burst."""
        readings = []
        deadline = time.time() + seconds
        while time.time() < deadline:
            readings.append(self.audio_energy())
            time.sleep(0.5)
        rises = sum(1 for a, b in itertools.pairwise(readings) if b > a)
        assert readings[-1] > readings[0], readings
        assert rises >= 3, readings

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def people(browser: Browser, local: LocalRun) -> Iterator[dict[str, Person]]:
    opened: dict[str, Person] = {}

    class Opener(dict[str, Person]):
        def __missing__(self, user_id: str) -> Person:
            opened[user_id] = self[user_id] = Person(browser, local, user_id)
            return opened[user_id]

    yield Opener()
    for person in opened.values():
        person.close()
