"""The client heals itself: when the media worker holding a session dies, the browser
notices within about two seconds (no new audio packet) and rejoins through the API on
its own; a person who was removed, or whose Space ended, does not come back."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Request, expect

from tests.browser.conftest import Person
from tests.localrun import LocalRun

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    """`make up` with a media node of two workers: when one is killed, the other takes
    the rejoins while the first is started again."""
    run = LocalRun.prepare(tmp_path_factory.mktemp("recovery-state"))
    run.env["WORKERS"] = "2"
    run.start()
    try:
        yield run
    finally:
        run.kill()


def _health(local: LocalRun) -> dict[str, Any]:
    url = f"http://127.0.0.1:{local.port('MEDIA')}/health"
    with urllib.request.urlopen(url, timeout=5) as response:
        health: dict[str, Any] = json.load(response)
    return health


def _kill_the_worker_with_sessions(local: LocalRun) -> None:
    deadline = time.time() + 15
    while not all(w["ready"] for w in _health(local)["workers"]):
        assert time.time() < deadline, "a worker never came back"
        time.sleep(0.3)
    busy = [w for w in _health(local)["workers"] if w["participants"] > 0]
    assert len(busy) == 1, busy
    os.kill(busy[0]["pid"], signal.SIGKILL)


class Joins:
    """The join requests a page sends (POST /api/spaces/{id}/join)."""

    def __init__(self, person: Person) -> None:
        self.times: list[float] = []
        person.page.on("request", self._seen)

    def _seen(self, request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/join"):
            self.times.append(time.time())

    def since(self, moment: float) -> int:
        return sum(1 for t in self.times if t >= moment)


@pytest.fixture
def room(people: dict[str, Person], local: LocalRun) -> Iterator[str]:
    """Alice, in a browser, hosts a live Space (her fake microphone beeps); yields its
    address. The Space is ended afterwards, so the next test can host another."""
    alice = people["u-alice"].sign_in("alice")
    expect(alice.page.get_by_text("You can host Spaces")).to_be_visible(timeout=10_000)
    alice.page.get_by_label("Title").fill("Heals itself")
    alice.page.get_by_role("button", name="Start the Space").click()
    expect(alice.page.get_by_text("You are in the audio.")).to_be_visible(timeout=20_000)
    yield alice.page.url
    space_id = alice.page.url.rsplit("/", 1)[-1]
    local.call("POST", f"/spaces/{space_id}/end", "u-alice")


def _listen(person: Person, handle: str, room: str) -> Person:
    person.sign_in(handle)
    person.page.goto(room)
    person.page.get_by_role("button", name="Listen", exact=True).click()
    expect(person.page.get_by_text("You are in the audio.")).to_be_visible(timeout=20_000)
    return person


def _mark_connection(person: Person) -> None:
    person.page.evaluate("window.parlorLostConnection = window.parlorRoom.connection")


def _new_connection_packets(person: Person) -> int:
    """Packets on a connection made after _mark_connection (0 before there is one)."""
    return int(person.page.evaluate(
        """async () => {
          const c = window.parlorRoom && window.parlorRoom.connection;
          if (!c || c === window.parlorLostConnection) return 0;
          return await c.packetsReceived();
        }"""))


def _watch_status(person: Person) -> None:
    """Notes every text the audio status takes, with the time (it may be brief)."""
    person.page.evaluate("""() => {
      window.parlorStatuses = [];
      const status = document.querySelector('[data-audio]');
      new MutationObserver(() => window.parlorStatuses.push([Date.now() / 1000,
        status.textContent])).observe(status, { childList: true, characterData: true,
                                                 subtree: true });
    }""")


def _status_shown_at(person: Person, text: str) -> float:
    shown = [at for at, said in person.page.evaluate("window.parlorStatuses") if said == text]
    assert shown, person.page.evaluate("window.parlorStatuses")
    return float(shown[0])


def _audio_back_after(person: Person, killed_at: float, limit: float) -> float:
    """Seconds from the kill until the new connection's packet count rises."""
    first = 0
    while time.time() - killed_at < limit:
        packets = _new_connection_packets(person)
        if first and packets > first:
            return time.time() - killed_at
        first = first or packets
        time.sleep(0.1)
    raise AssertionError(f"no audio on a new connection {limit} s after the kill")


def test_a_listener_and_the_host_heal_without_a_click(
    people: dict[str, Person], local: LocalRun, room: str
) -> None:
    alice = people["u-alice"]
    bob = _listen(people["u-bob"], "bob", room)
    bob.hears_audio()
    joins = Joins(bob)
    for person in (alice, bob):
        _mark_connection(person)

    _watch_status(bob)
    killed_at = time.time()
    _kill_the_worker_with_sessions(local)

    # Two seconds without a packet: the page says it is reconnecting, then is back.
    back = _audio_back_after(bob, killed_at, limit=12)
    noticed = _status_shown_at(bob, "Reconnecting…") - killed_at
    print(f"loss noticed after {noticed:.1f} s, audio back {back:.1f} s after the kill")
    assert noticed <= 3.5
    # Within 5 s of noticing, the new connection carries audio again.
    assert back - noticed <= 5.0
    expect(bob.page.locator("[data-audio]")).to_have_text("You are in the audio.",
                                                          timeout=5_000)
    # The host came back as host, microphone on: bob hears her beeps again.
    expect(alice.page.locator("[data-audio]")).to_have_text("You are in the audio.",
                                                            timeout=10_000)
    assert alice.page.evaluate("window.parlorRoom.connection.joined.role") == "host"
    assert alice.page.evaluate("window.parlorRoom.connection.microphone.enabled") is True
    bob.hears_audio()
    assert 1 <= joins.since(killed_at) <= 2
    assert bob.page.evaluate("window.parlorRoom.recoveries") == 1


def test_a_muted_speaker_comes_back_on_stage_and_muted(
    people: dict[str, Person], local: LocalRun, room: str
) -> None:
    alice = people["u-alice"]
    bob = _listen(people["u-bob"], "bob", room)
    alice.page.get_by_role("button", name="Mute", exact=True).click()
    expect(alice.page.get_by_role("button", name="Unmute")).to_be_visible(timeout=10_000)
    _mark_connection(alice)

    killed_at = time.time()
    _kill_the_worker_with_sessions(local)
    _audio_back_after(alice, killed_at, limit=15)
    _audio_back_after(bob, killed_at, limit=15)

    assert alice.page.evaluate("window.parlorRoom.connection.joined.role") == "host"
    assert alice.page.evaluate("window.parlorRoom.connection.joined.muted") is True
    assert alice.page.evaluate("window.parlorRoom.connection.microphone.enabled") is False
    expect(alice.page.get_by_role("button", name="Unmute")).to_be_visible()
    # Unmuting after the rejoin is heard.
    alice.page.get_by_role("button", name="Unmute").click()
    expect(alice.page.get_by_role("button", name="Mute", exact=True)).to_be_visible(
        timeout=10_000)
    bob.hears_audio()


def test_removed_people_and_an_ended_space_are_not_rejoined(
    people: dict[str, Person], local: LocalRun, room: str
) -> None:
    alice = people["u-alice"]
    space_id = room.rsplit("/", 1)[-1]
    carol = _listen(people["u-carol"], "carol", room)
    dave = _listen(people["u-dave"], "dave", room)
    bob = _listen(people["u-bob"], "bob", room)
    carol_joins, dave_joins, bob_joins = Joins(carol), Joins(dave), Joins(bob)

    # Removed while the node is up: the data channel says so, and carol stays out.
    alice.page.get_by_label("Remove someone (handle)").fill("carol")
    alice.page.get_by_role("button", name="Remove", exact=True).click()
    expect(carol.page.get_by_role("alert")).to_contain_text("You were removed",
                                                            timeout=10_000)
    removed_at = time.time()

    # Removed while the worker is dead: nobody can tell dave, so his client tries to
    # rejoin, the API answers 403 `removed`, and he stops there.
    _kill_the_worker_with_sessions(local)
    killed_at = time.time()
    status, _ = local.call("POST", f"/spaces/{space_id}/members/u-dave/remove", "u-alice")
    assert status == 200
    expect(dave.page.get_by_role("alert")).to_contain_text("You were removed",
                                                           timeout=10_000)
    # Bob rejoins, then the Space ends while the worker holding it is dead again: his
    # rejoin is answered 409 `space_not_live` and he stops.
    expect(bob.page.locator("[data-audio]")).to_have_text("You are in the audio.",
                                                          timeout=15_000)
    _kill_the_worker_with_sessions(local)
    ended_at = time.time()
    status, _ = local.call("POST", f"/spaces/{space_id}/end", "u-alice")
    assert status == 200
    expect(bob.page.get_by_role("alert")).to_contain_text("This Space has ended",
                                                          timeout=10_000)

    time.sleep(4)  # time for any (wrong) further rejoin to happen
    # At most the one try that learns it (the page's own refresh may learn it first).
    assert carol_joins.since(removed_at) == 0
    assert dave_joins.since(killed_at) <= 1
    assert bob_joins.since(ended_at) <= 1
    for person in (carol, dave, bob):
        assert person.page.evaluate("window.parlorRoom.recovering") is False
        assert person.page.evaluate("window.parlorRoom.connection") is None


def test_when_the_node_stays_unreachable_the_client_backs_off_and_says_so(
    people: dict[str, Person], local: LocalRun, room: str
) -> None:
    bob = _listen(people["u-bob"], "bob", room)
    joins = Joins(bob)
    # From now on bob's browser cannot reach any media node.
    bob.context.route("**/media/**", lambda route: route.abort())
    bob.page.evaluate("window.parlorRoom.giveUpAfterMs = 8000")

    killed_at = time.time()
    _kill_the_worker_with_sessions(local)
    expect(bob.page.locator("[data-audio]")).to_have_text(
        "The audio could not be restored. Press Listen to try again.", timeout=20_000)
    expect(bob.page.get_by_role("alert")).to_contain_text("could not be restored")
    attempts = joins.times
    # Backed off: a handful of tries over the 8 s, not a storm, the waits growing.
    assert 3 <= len(attempts) <= 6, attempts
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[-1] >= 2 * gaps[0], gaps
    assert attempts[0] - killed_at < 4
    assert bob.page.evaluate("window.parlorRoom.recovering") is False

    # The network is back; one press of Listen and bob hears again.
    bob.context.unroute("**/media/**")
    bob.page.get_by_role("button", name="Listen", exact=True).click()
    expect(bob.page.get_by_text("You are in the audio.")).to_be_visible(timeout=20_000)
    bob.hears_audio()
