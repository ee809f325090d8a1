"""Web Push end to end on this machine, without the internet.

Under `make up`, a person turns on push notifications in Chromium; the alert delivery
sends through pywebpush to a push service of the tests (tests/pushservice.py), which
checks the VAPID JWT and decrypts the payload with the subscription's keys; that
payload, delivered to the page's service worker through the DevTools protocol
(ServiceWorker.deliverPushMessage), shows a notification whose click opens the Space.

Two things of the browser are stood in for, both at its edge: headless Chromium cannot
subscribe to a push service (it has no GCM connection here), so PushManager.subscribe
returns a subscription of the test push service, made with the key the page passed; and
an OS notification cannot be clicked headless, so the click is the service worker's own
notificationclick listener run with the notification it shows."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Person
from tests.localrun import LocalRun
from tests.pushservice import PushService

pytestmark = pytest.mark.slow

# PushManager as the page sees it, with the test push service's subscription behind it.
FAKE_PUSH_MANAGER = """
(subscription) => {
  window.parlorPermissionRequests = 0;
  const ask = Notification.requestPermission.bind(Notification);
  Notification.requestPermission = (...args) => {
    window.parlorPermissionRequests += 1;
    return ask(...args);
  };
  // As a browser keeps its subscription across page loads.
  const KEY = 'test-push-subscribed-with';
  const decode = (text) => Uint8Array.from(
    atob(text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - text.length % 4) % 4)),
    (c) => c.charCodeAt(0)).buffer;
  const made = (key) => ({
    endpoint: subscription.endpoint, expirationTime: null,
    options: { userVisibleOnly: true, applicationServerKey: decode(key) },
    toJSON: () => subscription,
    unsubscribe: async () => {
      sessionStorage.removeItem(KEY);
      window.parlorUnsubscribed = true;
      return true;
    },
  });
  PushManager.prototype.subscribe = async function (options) {
    window.parlorSubscribeOptions = { userVisibleOnly: options.userVisibleOnly,
      applicationServerKey: options.applicationServerKey };
    sessionStorage.setItem(KEY, options.applicationServerKey);
    return made(options.applicationServerKey);
  };
  PushManager.prototype.getSubscription = async function () {
    const key = sessionStorage.getItem(KEY);
    return key ? made(key) : null;
  };
}
"""


@pytest.fixture(scope="module")
def push_service() -> Iterator[PushService]:
    service = PushService().start()
    try:
        yield service
    finally:
        service.stop()


def _registration_id(page: Page, origin: str) -> str:
    """The service worker's registration id, as the DevTools protocol names it."""
    cdp = page.context.new_cdp_session(page)
    found: list[dict[str, Any]] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated",
           lambda event: found.extend(event["registrations"]))
    cdp.send("ServiceWorker.enable")
    page.wait_for_timeout(300)
    for registration in found:
        if registration["scopeURL"] == f"{origin}/" and not registration["isDeleted"]:
            page.parlor_cdp = cdp  # type: ignore[attr-defined]
            return str(registration["registrationId"])
    raise AssertionError(found)


def test_a_push_shows_a_notification_whose_click_opens_the_space(
    people: dict[str, Person], local: LocalRun, push_service: PushService
) -> None:
    status, key = local.call("GET", "/web-push/key", "u-bob")
    assert status == 200, key
    subscription = push_service.subscribe(key["public_key"])
    bob = people["u-bob"]
    bob.context.grant_permissions(["notifications"], origin=local.web)
    bob.page.add_init_script(f"({FAKE_PUSH_MANAGER})({json.dumps(subscription)})")
    bob.sign_in("bob")
    page = bob.page
    # Nothing asks for permission until the person turns notifications on.
    assert page.evaluate("window.parlorPermissionRequests") == 0

    page.get_by_role("link", name="Settings").click()
    toggle = page.get_by_label("Push notifications")
    expect(toggle).to_be_enabled()
    toggle.check()
    expect(page.locator("[data-push-status]")).to_have_text(
        "Push notifications are on for this browser.", timeout=10_000)
    assert page.evaluate("window.parlorPermissionRequests") == 1
    assert page.evaluate("window.parlorSubscribeOptions") == {
        "userVisibleOnly": True, "applicationServerKey": key["public_key"]}
    status, devices = local.call("GET", "/me/devices", "u-bob")
    assert [d["platform"] for d in devices["items"]] == ["web"]
    # Back on the page later, the box says it is on.
    page.reload()
    expect(page.get_by_label("Push notifications")).to_be_checked()

    # Alice goes live: the delivery pushes to bob's subscription, signed and encrypted.
    status, space = local.call("POST", "/spaces", "u-alice", {"title": "Pushed to you"})
    assert status == 201, space
    space_id = space["space_id"]
    try:
        (message,) = push_service.wait_for(subscription["endpoint"], timeout=30)
        assert message.payload["url"] == f"/spaces/{space_id}"
        assert message.payload["body"] == "@alice is hosting a Space: Pushed to you"
        assert message.claims["aud"] == push_service.origin

        # Bob is elsewhere in Parlor; the push reaches his service worker.
        page.get_by_role("link", name="Parlor").click()
        expect(page.get_by_role("heading", name="Host a Space")).to_be_visible()
        page.parlor_cdp = None  # type: ignore[attr-defined]
        registration = _registration_id(page, local.web)
        page.parlor_cdp.send("ServiceWorker.deliverPushMessage", {  # type: ignore[attr-defined]
            "origin": local.web, "registrationId": registration,
            "data": json.dumps(message.payload)})
        shown = """() => navigator.serviceWorker.ready.then((r) => r.getNotifications())
          .then((all) => all.map((n) => ({ title: n.title, body: n.body, url: n.data.url,
                                            tag: n.tag })))"""
        page.wait_for_function(f"({shown})().then((all) => all.length === 1)")
        assert page.evaluate(shown) == [{"title": "Parlor", "tag": space_id,
                                         "body": "@alice is hosting a Space: Pushed to you",
                                         "url": f"/spaces/{space_id}"}]

        # The click: the worker's notificationclick listener, with that notification.
        (worker,) = [w for w in page.context.service_workers if w.url.endswith("/sw.js")]
        worker.evaluate("""async () => {
          const [notification] = await self.registration.getNotifications();
          self.dispatchEvent(new NotificationEvent('notificationclick', { notification }));
        }""")
        expect(page).to_have_url(f"{local.web}/spaces/{space_id}", timeout=10_000)
        expect(page.get_by_role("heading", name="Pushed to you")).to_be_visible()
        assert page.evaluate(f"({shown})()") == []  # the click closed it

        # Turned off: the subscription is dropped and the device removed.
        page.get_by_role("link", name="Settings").click()
        expect(page.get_by_label("Push notifications")).to_be_checked()
        page.get_by_label("Push notifications").uncheck()
        expect(page.locator("[data-push-status]")).to_have_text(
            "Push notifications are off for this browser.", timeout=10_000)
        assert page.evaluate("window.parlorUnsubscribed") is True
        assert local.call("GET", "/me/devices", "u-bob")[1] == {"items": []}
    finally:
        local.call("POST", f"/spaces/{space_id}/end", "u-alice")


def test_a_subscription_the_push_service_says_is_gone_is_removed(
    local: LocalRun, push_service: PushService
) -> None:
    key = local.call("GET", "/web-push/key", "u-carol")[1]["public_key"]
    kept, dropped = push_service.subscribe(key), push_service.subscribe(key)
    for subscription in (kept, dropped):
        status, _ = local.call("POST", "/me/devices", "u-carol",
                               {"platform": "web", "token": json.dumps(subscription)})
        assert status == 201
    push_service.forget(dropped["endpoint"])
    status, space = local.call("POST", "/spaces", "u-alice", {"title": "One of two"})
    try:
        push_service.wait_for(kept["endpoint"], timeout=30)
        deadline = time.time() + 10
        while len(local.call("GET", "/me/devices", "u-carol")[1]["items"]) != 1:
            assert time.time() < deadline, "the gone subscription was never removed"
            time.sleep(0.5)
    finally:
        local.call("POST", f"/spaces/{space['space_id']}/end", "u-alice")
