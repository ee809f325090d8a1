"""Demo data for a local run: a host with enough followers to go live, and a few people
who follow them. Written through the same domain functions as the API, and safe to run
again (profiles are updated, follows are idempotent)."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib import social


@dataclass(frozen=True)
class DemoUser:
    user_id: str
    handle: str
    display_name: str
    note: str


DEMO_USERS = (
    DemoUser("u-alice", "alice", "Alice Ng", "can host: 600+ followers"),
    DemoUser("u-bob", "bob", "Bob Okafor", "follows alice; cannot host yet"),
    DemoUser("u-carol", "carol", "Carol Ruiz", "follows alice and bob"),
    DemoUser("u-dave", "dave", "Dave Kim", "follows nobody"),
)
FANS = 600


def seed() -> list[DemoUser]:
    for user in DEMO_USERS:
        social.put_profile(user.user_id, user.handle, user.display_name)
    social.follow("u-bob", "u-alice")
    social.follow("u-carol", "u-alice")
    social.follow("u-carol", "u-bob")
    for i in range(FANS):
        fan = f"u-fan{i:03d}"
        social.put_profile(fan, f"fan{i:03d}", f"Fan {i:03d}")
        social.follow(fan, "u-alice")
    return list(DEMO_USERS)
