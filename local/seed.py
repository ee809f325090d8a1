"""Demo data for a local run: a host with enough followers to go live, and a few people
who follow them. The named users and their follows go through the same domain functions
as the API. The 600 fans are written in batches instead (profile, handle and follow
items, then one count update): moto copies a whole table for every transaction, so 1,200
transactions would make every `make up` wait half a minute. Safe to run again: it runs
on a fresh embedded AWS, and the named users' writes are idempotent."""

from __future__ import annotations

import time
from dataclasses import dataclass

from chalicelib.platform.models import Follow, Handle, User
from chalicelib.social import follows, people


@dataclass(frozen=True)
class DemoUser:
    user_id: str
    handle: str
    display_name: str
    note: str
    bio: str


DEMO_USERS = (
    DemoUser("u-alice", "alice", "Alice Ng", "can host: 600+ followers",
             "Hosts a morning show about open-source audio."),
    DemoUser("u-bob", "bob", "Bob Okafor", "follows alice; cannot host yet",
             "Listens on the bus. Occasionally has opinions."),
    DemoUser("u-carol", "carol", "Carol Ruiz", "follows alice and bob",
             "Community radio nerd."),
    DemoUser("u-dave", "dave", "Dave Kim", "follows nobody", ""),
)
FANS = 600


def seed() -> list[DemoUser]:
    for user in DEMO_USERS:
        people.save(user.user_id, user.handle, user.display_name, user.bio)
    follows.follow("u-bob", "u-alice")
    follows.follow("u-carol", "u-alice")
    follows.follow("u-carol", "u-bob")
    if not follows.is_following("u-fan000", "u-alice"):
        _fans("u-alice")
    return list(DEMO_USERS)


def _fans(followee_id: str) -> None:
    now = time.time()
    fans = [User(f"u-fan{i:03d}", handle=f"fan{i:03d}", display_name=f"Fan {i:03d}",
                 follower_count=0, following_count=1, suspended=False, created_at=now)
            for i in range(FANS)]
    with User.batch_write() as users, Handle.batch_write() as handles, \
            Follow.batch_write() as follows:
        for fan in fans:
            users.save(fan)
            handles.save(Handle(fan.handle, user_id=fan.user_id))
            follows.save(Follow(fan.user_id, followee_id, created_at=now))
    people.index_all(fans)
    User(followee_id).update(actions=[User.follower_count.add(FANS)])
