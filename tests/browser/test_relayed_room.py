"""A Space larger than one worker, in the browser: a listener whose audio comes through
a relay worker hears the host, is brought on stage, and is heard by the host."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Person
from tests.localrun import LocalRun

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    """`make up` with a media node of two workers that each send a Space to one
    listener: the second listener of a Space is relayed."""
    run = LocalRun.prepare(tmp_path_factory.mktemp("relay-state"))
    run.env.update({"WORKERS": "2", "WORKER_LISTENERS": "1"})
    run.start()
    try:
        yield run
    finally:
        run.kill()


def _workers(local: LocalRun) -> list[dict[str, int]]:
    url = f"http://127.0.0.1:{local.port('MEDIA')}/health"
    with urllib.request.urlopen(url, timeout=5) as response:
        workers: list[dict[str, int]] = json.load(response)["workers"]
    return workers


def test_a_relayed_listener_hears_and_is_brought_on_stage(
    people: dict[str, Person], local: LocalRun
) -> None:
    alice = people["u-alice"].sign_in("alice")
    # The home page has settled (its form is not drawn again over what is typed).
    expect(alice.page.get_by_text("You can host Spaces")).to_be_visible(timeout=10_000)
    alice.page.get_by_label("Title").fill("Big room")
    alice.page.get_by_role("button", name="Start the Space").click()
    expect(alice.page.get_by_text("You are in the audio.")).to_be_visible(timeout=20_000)
    room = alice.page.url

    # Carol takes the owner worker's one listener seat; bob is relayed by the other.
    for user, handle in (("u-carol", "carol"), ("u-bob", "bob")):
        person = people[user].sign_in(handle)
        person.page.goto(room)
        person.page.get_by_role("button", name="Listen", exact=True).click()
        expect(person.page.get_by_text("You are in the audio.")).to_be_visible(timeout=20_000)
    assert [w["participants"] for w in _workers(local)] in ([2, 1], [1, 2])
    bob, carol = people["u-bob"], people["u-carol"]
    bob.hears_audio()

    # Bob asks to speak and alice approves: his client is told to rejoin, joins the
    # owner worker as a speaker with his microphone, and alice and carol hear him.
    bob.page.get_by_role("button", name="Request to speak").click()
    approve = alice.page.get_by_role("button", name="Approve @bob")
    expect(approve).to_be_visible(timeout=10_000)
    approve.click()
    expect(bob.page.get_by_role("button", name="Mute")).to_be_visible(timeout=20_000)
    expect(bob.page.get_by_text("You are in the audio.")).to_be_visible(timeout=20_000)
    deadline = time.time() + 10
    while sorted(w["participants"] for w in _workers(local)) != [0, 3]:
        assert time.time() < deadline, _workers(local)
        time.sleep(0.5)
    alice.hears_audio()
    carol.hears_audio()
    bob.hears_audio()
