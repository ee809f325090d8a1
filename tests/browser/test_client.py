"""What a person does in Parlor, in a real browser with a fake microphone."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Person
from tests.localrun import LocalRun

pytestmark = pytest.mark.slow


def test_an_ineligible_user_sees_why_they_cannot_host(people: dict[str, Person]) -> None:
    dave = people["u-dave"].sign_in("dave")
    expect(dave.page.get_by_text("You cannot host yet: Hosting needs 600 followers; "
                                 "you have 0.")).to_be_visible()
    expect(dave.page.get_by_text("0 of 600 followers: 600 to go.")).to_be_visible()
    # Only what applies: no form to fill in for nothing.
    expect(dave.page.get_by_role("button", name="Start the Space")).to_be_hidden()
    expect(dave.page.get_by_label("Title")).to_be_hidden()


def test_errors_are_spoken_plainly(people: dict[str, Person], local: LocalRun) -> None:
    carol = people["u-carol"].sign_in("carol")
    carol.page.goto(f"{local.web}/spaces/sp_{'0' * 20}")
    expect(carol.page.get_by_role("alert")).to_contain_text("No Space with id")


# Every control a person can reach must say what it is to a screen reader: buttons and
# links by their text or aria-label, fields by a <label>.
UNNAMED_CONTROLS = """() => [...document.querySelectorAll('button, a[href], input, textarea')]
  .filter((el) => el.offsetParent !== null)
  .filter((el) => {
    if (el.matches('input, select, textarea')) return el.labels.length === 0 && !el.ariaLabel;
    return !(el.textContent.trim() || el.ariaLabel);
  })
  .map((el) => el.outerHTML.slice(0, 80))"""


def test_the_host_can_do_it_all_from_the_keyboard_and_every_control_is_named(
    people: dict[str, Person],
) -> None:
    page = people["u-alice"].page
    page.goto(people["u-alice"].local.web)
    assert page.evaluate(UNNAMED_CONTROLS) == []
    # Sign in with Tab and Enter only.
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Sign in as @alice":
            break
    page.keyboard.press("Enter")
    expect(page.get_by_text("You can host Spaces.")).to_be_visible()
    assert page.evaluate(UNNAMED_CONTROLS) == []
    # The title field, then Enter submits the form: the Space goes live.
    page.get_by_label("Title").focus()
    page.keyboard.type("Keyboard only")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Keyboard only")).to_be_visible(timeout=20_000)
    expect(page.get_by_text("You are in the audio.")).to_be_visible(timeout=20_000)
    assert page.evaluate(UNNAMED_CONTROLS) == []
    page.get_by_role("button", name="End the Space").focus()
    page.keyboard.press("Enter")
    expect(page.locator("[data-state]")).to_have_text("ended", timeout=10_000)
