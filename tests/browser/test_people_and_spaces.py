"""The browser client as people use it: finding and following people, the bar of live
Spaces from the people you follow (live, ordered, with a ring on whoever speaks),
Spaces' own pages (Copy link, Remind me, Start now), profiles and their editing,
blocking, settings; every page accessible and usable 390 px wide."""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.checks import DESKTOP, PHONE, Hum, accessible, fits_the_window
from tests.browser.conftest import SCREENSHOTS, Person
from tests.localrun import LocalRun

pytestmark = pytest.mark.slow
IMAGES = SCREENSHOTS


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    """`make up` where anyone may host (the threshold is another module's subject), so
    that people the viewer follows can host Spaces side by side."""
    run = LocalRun.prepare(tmp_path_factory.mktemp("people-state"))
    run.env["HOSTING_FOLLOWER_THRESHOLD"] = "0"
    run.start()
    try:
        yield run
    finally:
        run.kill()


def _ok(answer: tuple[int, object]) -> dict[str, object]:
    status, body = answer
    assert status < 300, body
    assert isinstance(body, dict)
    return body


def _live(local: LocalRun, host: str, title: str) -> str:
    return str(_ok(local.call("POST", "/spaces", host, {"title": title}))["space_id"])


def _seconds_until(check: object, timeout: float) -> float:
    started = time.time()
    while True:
        if callable(check) and check():
            return time.time() - started
        assert time.time() - started < timeout, f"not within {timeout} s"
        time.sleep(0.05)


def test_search_a_person_follow_them_and_the_counts_change(people: dict[str, Person]) -> None:
    dave = people["u-dave"].sign_in("dave")
    page = dave.page
    page.get_by_label("Search people").fill("car")
    result = page.get_by_role("link", name="Carol Ruiz @carol")
    expect(result).to_be_visible()
    result.click()
    expect(page).to_have_url(f"{dave.local.web}/@carol")
    expect(page.get_by_role("heading", name="Carol Ruiz")).to_be_visible()
    expect(page.get_by_text("Community radio nerd.")).to_be_visible()
    expect(page.locator("[data-followers-count]")).to_have_text("0 followers")
    expect(page.locator("[data-following-count]")).to_have_text("2 following")
    following_list = page.locator("[data-following]")
    expect(following_list).to_contain_text("@alice")
    expect(following_list).to_contain_text("@bob")

    page.get_by_role("button", name="Follow", exact=True).click()
    expect(page.get_by_role("button", name="Following", exact=True)).to_have_attribute(
        "aria-pressed", "true")
    expect(page.locator("[data-followers-count]")).to_have_text("1 follower")
    expect(page.locator("[data-followers]")).to_contain_text("@dave")
    # On dave's own page, the other count.
    page.get_by_role("navigation", name="Your account").get_by_role("link", name="@dave").click()
    expect(page.locator("[data-following-count]")).to_have_text("1 following")
    page.go_back()
    # Pressing it again unfollows.
    page.get_by_role("button", name="Following", exact=True).click()
    expect(page.get_by_role("button", name="Follow", exact=True)).to_have_attribute(
        "aria-pressed", "false")
    expect(page.locator("[data-followers-count]")).to_have_text("0 followers")
    # A name, not only a handle, finds people; so does a word of it.
    page.get_by_label("Search people").fill("okaf")
    expect(page.get_by_role("link", name="Bob Okafor @bob")).to_be_visible()
    page.get_by_label("Search people").press("Escape")
    expect(page.locator("#people-results")).to_be_hidden()


def test_the_bar_lives_orders_and_rings_who_speaks(
    people: dict[str, Person], local: LocalRun
) -> None:
    # Carol follows alice and bob (demo data), and dave from now.
    _ok(local.call("PUT", "/users/u-dave/follow", "u-carol"))
    carol = people["u-carol"].sign_in("carol")
    page = carol.page
    _seconds_until(lambda: page.evaluate("window.parlorBar && window.parlorBar.live"), 10)
    hums: list[Hum] = []
    spaces: list[str] = []
    try:
        # Alice starts a Space: within 3 s it is in carol's bar, and a toast says so.
        started = time.time()
        with_alice = _live(local, "u-alice", "Two you follow")
        spaces.append(with_alice)
        alice_item = page.locator(f"#bar-list li[data-space-id='{with_alice}']")
        expect(alice_item).to_be_visible(timeout=3_000)
        print(f"in the bar {time.time() - started:.1f} s after the start")
        expect(page.locator("#toasts")).to_contain_text("@alice started a Space: Two you follow")

        # Dave starts one with more listeners; bob comes on stage in alice's: hers has two
        # people carol follows, and comes first for it.
        with_dave = _live(local, "u-dave", "One you follow")
        spaces.append(with_dave)
        for fan in ("u-fan001", "u-fan002"):
            _ok(local.call("POST", f"/spaces/{with_dave}/join", fan))
        _ok(local.call("POST", f"/spaces/{with_alice}/join", "u-bob"))
        _ok(local.call("POST", f"/spaces/{with_alice}/requests", "u-bob"))
        _ok(local.call("POST", f"/spaces/{with_alice}/requests/u-bob/approve", "u-alice"))
        hums.append(Hum(local, "u-alice", with_alice, hz=440))
        hums.append(Hum(local, "u-bob", with_alice, hz=660))
        items = page.locator("#bar-list > li")
        expect(items).to_have_count(2, timeout=10_000)
        expect(alice_item.locator(".bar-who")).to_contain_text("@bob", timeout=10_000)
        assert items.nth(0).get_attribute("data-space-id") == with_alice
        assert items.nth(1).get_attribute("data-space-id") == with_dave
        expect(page.locator("#toasts")).to_contain_text("@bob is speaking in Two you follow")

        # Both hum: the ring of each lights up in the bar (as the media node hears them).
        for user in ("u-alice", "u-bob"):
            expect(alice_item.locator(f".ring.speaking[data-user-id='{user}']")).to_be_visible(
                timeout=15_000)
        expect(alice_item).to_contain_text("@alice speaking")
        # The home page's list of live Spaces followed along.
        expect(page.locator("[data-live]")).to_contain_text("Two you follow")
        expect(page.locator("[data-live]")).to_contain_text("One you follow")
        accessible(page)
        # A toast goes when dismissed (they also go by themselves after 10 s).
        toasts = page.locator("#toasts li")
        while toasts.count():
            with contextlib.suppress(PlaywrightTimeout):  # it went by itself meanwhile
                toasts.first.get_by_role("button", name="Dismiss").click(timeout=1_000)
        IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(IMAGES / "home.png"))
        page.set_viewport_size(PHONE)
        fits_the_window(page)
        page.screenshot(path=str(IMAGES / "home-phone.png"))
        page.set_viewport_size(DESKTOP)

        # Pressing the avatar opens the Space; listening, carol sees who speaks there too.
        alice_item.get_by_role("link").click()
        expect(page.get_by_role("heading", name="Two you follow")).to_be_visible()
        # Reactions go over the node connection: none to press before there is one.
        reactions = page.get_by_role("group", name="Reactions")
        expect(reactions).to_be_hidden()
        page.get_by_role("button", name="Listen", exact=True).click()
        expect(page.get_by_text("You are in the audio.")).to_be_visible(timeout=20_000)
        # The node passes a reaction to everyone in the room, its sender too.
        reactions.get_by_role("button", name="Clap").click()
        expect(page.locator("[data-reactions]")).to_contain_text("👏", timeout=5_000)
        expect(page.locator("[data-stage] li.speaking", has_text="@alice")).to_be_visible(
            timeout=10_000)
        expect(page.locator("[data-stage] li.speaking .ring.speaking")).to_have_count(2)
        accessible(page)

        # Dave ends his: within 3 s it leaves carol's bar.
        _ok(local.call("POST", f"/spaces/{with_dave}/end", "u-dave"))
        ended = time.time()
        expect(page.locator(f"#bar-list li[data-space-id='{with_dave}']")).to_have_count(
            0, timeout=3_000)
        print(f"out of the bar {time.time() - ended:.1f} s after the end")
    finally:
        for hum in hums:
            hum.stop()
        for space_id, host in zip(spaces, ("u-alice", "u-dave"), strict=False):
            local.call("POST", f"/spaces/{space_id}/end", host)
        local.call("DELETE", "/users/u-dave/follow", "u-carol")
    expect(page.locator("#bar")).to_be_hidden(timeout=5_000)


def _in_an_hour(page: Page) -> str:
    """An hour from now as a datetime-local field takes it, in the browser's time zone."""
    return str(page.evaluate("""() => {
      const d = new Date(Date.now() + 3600 * 1000);
      const pad = (n) => String(n).padStart(2, '0');
      const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
      return `${day}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
    }"""))


def test_a_scheduled_space_its_link_remind_me_and_start_now(
    people: dict[str, Person], local: LocalRun
) -> None:
    alice = people["u-alice"]
    alice.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                    origin=local.web)
    alice.sign_in("alice")
    alice.page.get_by_label("Title").fill("Tomorrow's news")
    alice.page.get_by_label("Start later (leave empty to go live now)").fill(
        _in_an_hour(alice.page))
    alice.page.get_by_role("button", name="Start the Space").click()
    expect(alice.page.get_by_role("heading", name="Tomorrow's news")).to_be_visible()
    expect(alice.page.locator("[data-state]")).to_have_text("Scheduled")
    expect(alice.page.locator("[data-when]")).to_contain_text("Starts ")
    expect(alice.page.get_by_role("button", name="Remind me")).to_be_hidden()
    alice.page.get_by_role("button", name="Copy link").click()
    expect(alice.page.locator("[data-copied]")).to_have_text("Link copied.")
    link = alice.page.evaluate("navigator.clipboard.readText()")
    assert link == alice.page.url
    assert link.startswith(f"{local.web}/spaces/sp_")

    # Bob opens the link (a page the local origin serves, as CloudFront does).
    bob = people["u-bob"].sign_in("bob")
    expect(bob.page.locator("#upcoming-title")).to_be_visible()
    expect(bob.page.locator("[data-upcoming]")).to_contain_text("Tomorrow's news")
    bob.page.goto(link)
    expect(bob.page.get_by_role("heading", name="Tomorrow's news")).to_be_visible()
    remind = bob.page.get_by_role("button", name="Remind me")
    remind.click()
    expect(bob.page.get_by_role("button", name="Reminder set")).to_have_attribute(
        "aria-pressed", "true")
    bob.page.reload()
    expect(bob.page.get_by_role("button", name="Reminder set")).to_be_visible()
    accessible(bob.page)
    bob.page.set_viewport_size(PHONE)
    fits_the_window(bob.page)
    bob.page.set_viewport_size(DESKTOP)
    bob.page.get_by_role("button", name="Reminder set").click()
    expect(bob.page.get_by_role("button", name="Remind me")).to_have_attribute(
        "aria-pressed", "false")
    bob.page.get_by_role("button", name="Remind me").click()
    expect(bob.page.get_by_role("button", name="Reminder set")).to_be_visible()

    # The host starts it now: she is in the room, and bob's page becomes the room.
    alice.page.get_by_role("button", name="Start now").click()
    expect(alice.page.get_by_text("You are in the audio.")).to_be_visible(timeout=20_000)
    expect(bob.page.get_by_role("button", name="Listen", exact=True)).to_be_visible(timeout=15_000)
    space_id = link.rsplit("/", 1)[-1]
    # Bob follows alice: the Space is in his bar now.
    expect(bob.page.locator(f"#bar-list li[data-space-id='{space_id}']")).to_be_visible(
        timeout=10_000)
    alice.page.get_by_role("button", name="End the Space").click()
    expect(alice.page.locator("[data-state]")).to_have_text("ended", timeout=10_000)


def test_block_then_the_blocked_cannot_follow_or_join(
    people: dict[str, Person], local: LocalRun
) -> None:
    alice = people["u-alice"].sign_in("alice")
    space_id = ""
    try:
        alice.page.goto(f"{local.web}/@bob")
        alice.page.get_by_role("button", name="Block").click()
        expect(alice.page.get_by_role("button", name="Unblock")).to_be_visible()
        expect(alice.page.get_by_role("alert")).to_contain_text("You blocked @bob")
        # A block parts them: bob no longer follows alice.
        expect(alice.page.locator("[data-following-count]")).to_have_text("0 following")

        bob = people["u-bob"].sign_in("bob")
        bob.page.goto(f"{local.web}/@alice")
        bob.page.get_by_role("button", name="Follow", exact=True).click()
        expect(bob.page.get_by_role("alert")).to_have_text("This account has blocked you.")
        expect(bob.page.get_by_role("button", name="Follow", exact=True)).to_be_visible()
        space_id = _live(local, "u-alice", "Not for bob")
        bob.page.goto(f"{local.web}/spaces/{space_id}")
        bob.page.get_by_role("button", name="Listen", exact=True).click()
        expect(bob.page.get_by_role("alert")).to_have_text("The host has blocked you.")
        assert bob.page.evaluate("window.parlorRoom.connection") is None

        # In her settings alice sees the block and lifts it.
        alice.page.get_by_role("link", name="Settings").click()
        blocked = alice.page.locator("[data-blocked]")
        expect(blocked).to_contain_text("@bob")
        accessible(alice.page)
        alice.page.get_by_role("button", name="Unblock @bob").click()
        expect(alice.page.get_by_text("You blocked nobody.")).to_be_visible()
        bob.page.goto(f"{local.web}/@alice")
        bob.page.get_by_role("button", name="Follow", exact=True).click()
        expect(bob.page.get_by_role("button", name="Following", exact=True)).to_be_visible()
    finally:
        local.call("DELETE", "/me/blocks/u-bob", "u-alice")
        local.call("PUT", "/users/u-alice/follow", "u-bob")
        if space_id:
            local.call("POST", f"/spaces/{space_id}/end", "u-alice")


def test_settings_mute_spaces_and_push_notifications(
    people: dict[str, Person], local: LocalRun
) -> None:
    bob = people["u-bob"]
    bob.context.grant_permissions(["notifications"], origin=local.web)
    bob.sign_in("bob")
    page = bob.page
    page.goto(f"{local.web}/@alice")
    page.get_by_role("button", name="Mute Spaces").click()
    expect(page.get_by_role("button", name="Unmute Spaces")).to_be_visible()
    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Settings", level=1)).to_be_visible()
    expect(page.locator("[data-muted]")).to_contain_text("@alice")
    expect(page.get_by_text("You blocked nobody.")).to_be_visible()
    accessible(page)
    page.set_viewport_size(PHONE)
    fits_the_window(page)
    page.set_viewport_size(DESKTOP)
    page.get_by_role("button", name="Unmute @alice").click()
    expect(page.get_by_text("You muted nobody.")).to_be_visible()

    # Push notifications: the page asks for permission only now, and this headless
    # Chromium has no push service to subscribe with (no internet, no GCM): the page
    # says so and leaves the box unticked. (tests/browser/test_web_push.py covers a
    # subscription that works.)
    toggle = page.get_by_label("Push notifications")
    expect(toggle).not_to_be_checked()
    expect(toggle).to_be_enabled()
    toggle.check()
    expect(page.get_by_role("alert")).to_contain_text(
        "This browser could not subscribe to push notifications", timeout=10_000)
    expect(toggle).not_to_be_checked()
    assert local.call("GET", "/me/devices", "u-bob") == (200, {"items": []})


def _png(page: Page) -> bytes:
    """A 300 x 200 PNG drawn by the browser (the avatar is cropped square from it)."""
    data_url = page.evaluate("""() => {
      const c = document.createElement('canvas'); c.width = 300; c.height = 200;
      const g = c.getContext('2d'); g.fillStyle = '#2a9d8f'; g.fillRect(0, 0, 300, 200);
      g.fillStyle = '#f4a261'; g.beginPath(); g.arc(150, 100, 70, 0, 7); g.fill();
      return c.toDataURL('image/png');
    }""")
    return base64.b64decode(str(data_url).split(",", 1)[1])


def test_your_own_profile_name_bio_and_avatar(people: dict[str, Person], local: LocalRun) -> None:
    dave = people["u-dave"].sign_in("dave")
    page = dave.page
    page.get_by_role("navigation", name="Your account").get_by_role("link", name="@dave").click()
    expect(page.get_by_role("heading", name="Dave Kim")).to_be_visible()
    # No avatar yet: initials in a coloured circle.
    expect(page.locator("[data-avatar] .initials")).to_have_text("DK")
    page.get_by_label("Display name").fill("Dave Kimura")
    page.get_by_label("Bio").fill("Talks about bicycles.")
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_role("heading", name="Dave Kimura")).to_be_visible()
    expect(page.get_by_text("Talks about bicycles.")).to_be_visible()

    page.get_by_label("Avatar (PNG, JPEG or WebP)").set_input_files(
        files=[{"name": "me.png", "mimeType": "image/png", "buffer": _png(page)}])
    expect(page.locator("[data-avatar-status]")).to_have_text("Your avatar is saved.",
                                                              timeout=15_000)
    image = page.locator("[data-avatar] img.avatar")
    expect(image).to_be_visible()
    assert image.get_attribute("src").startswith("/avatars/u-dave/")
    # The image really came back through the origin (from the embedded S3).
    _seconds_until(lambda: image.evaluate("img => img.complete && img.naturalWidth") == 256, 10)
    # Others see it, in search too.
    carol = people["u-carol"].sign_in("carol")
    carol.page.get_by_label("Search people").fill("kimura")
    expect(carol.page.locator("#people-results img.avatar")).to_be_visible()
    carol.page.get_by_role("link", name="Dave Kimura @dave").click()
    expect(carol.page.locator("[data-avatar] img.avatar")).to_be_visible()
    accessible(carol.page)
    carol.page.set_viewport_size(PHONE)
    fits_the_window(carol.page)
    carol.page.set_viewport_size(DESKTOP)

    # What is not an image is refused in the browser, before any upload.
    page.get_by_label("Avatar (PNG, JPEG or WebP)").set_input_files(
        files=[{"name": "me.png", "mimeType": "image/png", "buffer": b"not an image"}])
    expect(page.get_by_role("alert")).to_have_text(
        "That file is not an image this browser can read.")
    accessible(page)
    # The storage cannot be reached: the page says so, and the avatar stays as it was.
    storage = f"http://127.0.0.1:{local.port('AWS')}/**"
    page.route(storage, lambda route: route.abort())
    page.get_by_label("Avatar (PNG, JPEG or WebP)").set_input_files(
        files=[{"name": "me.png", "mimeType": "image/png", "buffer": _png(page)}])
    expect(page.get_by_role("alert")).to_have_text(
        "The avatar could not be uploaded; check your connection.")
    page.unroute(storage)
    expect(image).to_be_visible()
    page.get_by_role("button", name="Remove avatar").click()
    expect(page.locator("[data-avatar] .initials")).to_have_text("DK")


def test_a_profile_with_its_spaces_for_the_readme(
    people: dict[str, Person], local: LocalRun
) -> None:
    """Alice's profile with a live and a scheduled Space: what the screenshot shows."""
    live = _live(local, "u-alice", "Open-source audio, live")
    scheduled = _ok(local.call("POST", "/spaces", "u-alice", {
        "title": "Friday listener questions", "scheduled_start": time.time() + 2 * 86400}))
    try:
        bob = people["u-bob"].sign_in("bob")
        bob.page.goto(f"{local.web}/@alice")
        spaces = bob.page.locator("[data-spaces]")
        expect(spaces).to_contain_text("Open-source audio, live")
        expect(spaces).to_contain_text("Friday listener questions")
        expect(bob.page.get_by_role("button", name="Following", exact=True)).to_be_visible()
        accessible(bob.page)
        bob.page.screenshot(path=str(IMAGES / "profile.png"))
        bob.page.set_viewport_size(PHONE)
        fits_the_window(bob.page)
        bob.page.goto(f"{local.web}/")
        fits_the_window(bob.page)
        accessible(bob.page)
        bob.page.goto(f"{local.web}/spaces/{live}")
        expect(bob.page.get_by_role("button", name="Listen", exact=True)).to_be_visible()
        fits_the_window(bob.page)
    finally:
        local.call("POST", f"/spaces/{live}/end", "u-alice")
        local.call("POST", f"/spaces/{scheduled['space_id']}/end", "u-alice")


def test_an_unknown_page_and_person_say_so(people: dict[str, Person], local: LocalRun) -> None:
    carol = people["u-carol"].sign_in("carol")
    carol.page.goto(f"{local.web}/@nobody_here")
    expect(carol.page.get_by_role("alert")).to_have_text("There is nobody called @nobody_here.")
    expect(carol.page.get_by_role("heading", name="Nothing here")).to_be_visible()
