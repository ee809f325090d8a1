"""People: the profile beyond its handle and name (a bio), finding people by what they
are called, and how the caller stands with someone.

Search reads no table scan: every profile writes one PeopleIndexEntry per normalized
token (the handle, and up to four words of the display name) and per bucket (the
token's first one, two and three characters). "ali" queries the bucket "ali"; "alic"
queries the same bucket with begins_with(entry, "alic"). A profile change rewrites only
the entries that changed."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from pynamodb.exceptions import DoesNotExist

from ..platform.errors import InvalidField
from ..platform.models import PeopleIndexEntry, Restriction, User
from . import follows, preferences

BIO_MAX = 160
BUCKET_LENGTHS = (1, 2, 3)
NAME_WORDS = 4
TOKEN_MAX = 30
SEARCH_DEFAULT, SEARCH_MAX = 10, 25
# Index entries read per search, at most: one user may match by handle and by name.
_READ = 60
_SPLIT = re.compile(r"[^\w]+")


def normalized(text: str) -> list[str]:
    """Lower-case words without accents: "Zoë  Ng-Ruiz" -> ["zoe", "ng", "ruiz"]."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return [word[:TOKEN_MAX] for word in _SPLIT.split(plain) if word]


def tokens(handle: str, display_name: str) -> set[str]:
    return {handle.lower()[:TOKEN_MAX], *normalized(display_name)[:NAME_WORDS]}


def entries(user_id: str, handle: str, display_name: str) -> set[tuple[str, str]]:
    """(bucket, entry) of every index item of one profile."""
    return {(token[:n], f"{token}#{user_id}")
            for token in tokens(handle, display_name)
            for n in BUCKET_LENGTHS if len(token) >= n}


def _entries_of(user: User | None) -> set[tuple[str, str]]:
    return entries(user.user_id, user.handle, user.display_name) if user else set()


def reindex(before: User | None, after: User) -> None:
    """Writes the index entries `after` needs and deletes those only `before` had."""
    old, new = _entries_of(before), _entries_of(after)
    with PeopleIndexEntry.batch_write() as batch:
        for bucket, entry in old - new:
            batch.delete(PeopleIndexEntry(bucket, entry))
        for bucket, entry in new - old:
            batch.save(PeopleIndexEntry(bucket, entry, user_id=after.user_id))


def save(user_id: str, handle: str, display_name: str, bio: str | None) -> User:
    """Creates or changes the profile (follows.put_profile), its bio when given ("" clears
    it), and its index entries."""
    before = follows.find_user(user_id)
    follows.put_profile(user_id, handle, display_name)
    if bio is not None:
        User(user_id).update(actions=[User.bio.set(bio) if bio else User.bio.remove()])
    after = follows.get_user(user_id)
    reindex(before, after)
    return after


def search(query: str, limit: int) -> dict[str, Any]:
    """Profiles whose handle or a word of whose name starts with the query (every word
    of it, for a query of several), fewest reads: one bucket, read in key order."""
    words = normalized(query.lstrip("@"))
    if not words:
        raise InvalidField("q", "'q' needs a letter or a digit")
    first, rest = words[0], words[1:]
    found: list[str] = []
    for item in PeopleIndexEntry.query(first[:max(BUCKET_LENGTHS)],
                                       PeopleIndexEntry.entry.startswith(first), limit=_READ):
        if item.user_id not in found:
            found.append(item.user_id)
    users = {u.user_id: u for u in User.batch_get(found)} if found else {}
    matches = [users[uid] for uid in found if uid in users
               and all(any(t.startswith(w) for t in tokens(users[uid].handle,
                                                           users[uid].display_name))
                       for w in rest)]
    # A handle typed in full comes first.
    matches.sort(key=lambda u: u.handle.lower() != first)
    return {"items": [follows.profile_view(u) for u in matches[:limit]]}


def search_limit(raw: str | None) -> int:
    if raw is None:
        return SEARCH_DEFAULT
    if not raw.isdigit() or not 1 <= int(raw) <= SEARCH_MAX:
        raise InvalidField("limit", f"'limit' is 1 to {SEARCH_MAX}")
    return int(raw)


def _muted(user_id: str, target_id: str) -> bool:
    try:
        Restriction.get(user_id, f"{preferences.MUTE}#{target_id}", consistent_read=True)
    except DoesNotExist:
        return False
    return True


def relationship(viewer_id: str, target_id: str) -> dict[str, Any]:
    """How the viewer stands with the target: what a profile page's buttons show."""
    follows.get_user(target_id)
    return {
        "user_id": target_id,
        "following": follows.is_following(viewer_id, target_id),
        "followed_by": follows.is_following(target_id, viewer_id),
        "blocked": preferences.is_blocked(viewer_id, target_id),
        "muted": _muted(viewer_id, target_id),
    }


def index_all(users: Iterable[User]) -> None:
    """Index entries for profiles written without save() (the demo data's batches)."""
    with PeopleIndexEntry.batch_write() as batch:
        for user in users:
            for bucket, entry in _entries_of(user):
                batch.save(PeopleIndexEntry(bucket, entry, user_id=user.user_id))
