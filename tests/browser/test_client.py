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
    expect(dave.page.get_by_role("button", name="Start the Space")).to_be_disabled()


def test_errors_are_spoken_plainly(people: dict[str, Person], local: LocalRun) -> None:
    carol = people["u-carol"].sign_in("carol")
    carol.page.goto(f"{local.web}/#/spaces/sp_{'0' * 20}")
    expect(carol.page.get_by_role("alert")).to_contain_text("No Space with id")
