"""The media-events consumer: presence recorded from the nodes' events."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pynamodb.exceptions import PutError

from chalicelib.platform.models import Member, Space
from tests.events import sqs_event
from tests.functional.conftest import Caller, World


def _event(kind: str, space_id: str, user_id: str, at: float | None = None) -> str:
    return json.dumps({"v": 1, "type": kind, "node_id": "node-a", "space_id": space_id,
                       "user_id": user_id, "role": "speaker",
                       "at": time.time() if at is None else at})


def _deliver(world: World, *bodies: str) -> dict[str, Any]:
    response = world.client.lambda_.invoke("handle_media_events", sqs_event(*bodies))
    return response.payload  # type: ignore[no-any-return]


@pytest.fixture
def live(world: World) -> tuple[Caller, Caller, str]:
    world.node("node-a")
    alice = world.host()
    space_id = world.live_space(alice)
    bob = world.user("bob")
    bob.post(f"/spaces/{space_id}/join")
    bob.post(f"/spaces/{space_id}/requests")
    alice.post(f"/spaces/{space_id}/requests/u-bob/approve")
    return alice, bob, space_id


def _present(space_id: str) -> set[str]:
    return set(Space.get(space_id, consistent_read=True).on_stage_connected or set())


def test_speakers_count_as_speaking_once_connected(
    world: World, live: tuple[Caller, Caller, str]
) -> None:
    _, _, space_id = live
    assert _present(space_id) == set()
    result = _deliver(world, _event("participant_connected", space_id, "u-bob"),
                      _event("participant_connected", space_id, "u-alice"))
    assert result == {"batchItemFailures": []}
    assert _present(space_id) == {"u-alice", "u-bob"}
    _deliver(world, _event("speaking_started", space_id, "u-bob"))
    assert Member.get(space_id, "u-bob").speaking is True
    _deliver(world, _event("participant_left", space_id, "u-bob"))
    assert _present(space_id) == {"u-alice"}
    bob = Member.get(space_id, "u-bob")
    assert (bob.connected, bob.speaking) == (False, False)


def test_listeners_connect_without_counting_as_speaking(
    world: World, live: tuple[Caller, Caller, str]
) -> None:
    _, _, space_id = live
    carol = world.user("carol")
    carol.post(f"/spaces/{space_id}/join")
    _deliver(world, _event("participant_connected", space_id, "u-carol"))
    assert Member.get(space_id, "u-carol").connected is True
    assert _present(space_id) == set()


def test_role_changes_keep_presence_in_step(
    world: World, live: tuple[Caller, Caller, str]
) -> None:
    alice, _, space_id = live
    carol = world.user("carol")
    carol.post(f"/spaces/{space_id}/join")
    _deliver(world, _event("participant_connected", space_id, "u-carol"),
              _event("participant_connected", space_id, "u-bob"))
    carol.post(f"/spaces/{space_id}/requests")
    alice.post(f"/spaces/{space_id}/requests/u-carol/approve")
    assert _present(space_id) == {"u-bob", "u-carol"}
    alice.post(f"/spaces/{space_id}/members/u-bob/demote")
    assert _present(space_id) == {"u-carol"}
    alice.post(f"/spaces/{space_id}/members/u-carol/remove")
    assert _present(space_id) == set()


def test_a_late_event_does_not_undo_a_newer_one(
    world: World, live: tuple[Caller, Caller, str]
) -> None:
    _, _, space_id = live
    now = time.time()
    _deliver(world, _event("participant_connected", space_id, "u-bob", at=now))
    _deliver(world, _event("participant_left", space_id, "u-bob", at=now - 5))
    assert _present(space_id) == {"u-bob"}


def test_a_poison_record_fails_alone(world: World, live: tuple[Caller, Caller, str]) -> None:
    _, _, space_id = live
    event = sqs_event("not json", json.dumps({"v": 99}),
                      _event("participant_connected", space_id, "u-bob"))
    response = world.client.lambda_.invoke("handle_media_events", event)
    failed = {f["itemIdentifier"] for f in response.payload["batchItemFailures"]}
    assert failed == {event["Records"][0]["messageId"], event["Records"][1]["messageId"]}
    assert _present(space_id) == {"u-bob"}


def test_a_leave_that_failed_halfway_is_completed_by_its_retry(
    world: World, live: tuple[Caller, Caller, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leaving is two writes, the member then the stage's set: when the second fails
    the record fails, and SQS's redelivery of the same event finishes the job."""
    _, _, space_id = live
    _deliver(world, _event("participant_connected", space_id, "u-bob"))
    assert _present(space_id) == {"u-bob"}
    left = _event("participant_left", space_id, "u-bob")
    real_update = Space.update

    def refused(self: Space, *args: Any, **kwargs: Any) -> Any:
        raise PutError("DynamoDB refused the write")

    monkeypatch.setattr(Space, "update", refused)
    # With a record that goes through: a batch whose every record fails is an error.
    response = _deliver(world, left, _event("speaking_started", space_id, "u-alice"))
    assert len(response["batchItemFailures"]) == 1
    assert Member.get(space_id, "u-bob", consistent_read=True).connected is False
    assert _present(space_id) == {"u-bob"}
    monkeypatch.setattr(Space, "update", real_update)
    assert _deliver(world, left)["batchItemFailures"] == []
    assert _present(space_id) == set()


def test_listeners_reconnecting_in_a_crowd_leave_the_stage_alone(
    world: World, live: tuple[Caller, Caller, str]
) -> None:
    _, _, space_id = live
    fans = [world.user(f"fan{n}") for n in range(5)]
    for fan in fans:
        fan.post(f"/spaces/{space_id}/join")
    _deliver(world, *(_event("participant_connected", space_id, f.user_id) for f in fans))
    _deliver(world, *(_event("participant_left", space_id, f.user_id) for f in fans))
    _deliver(world, *(_event("participant_connected", space_id, f.user_id) for f in fans))
    assert all(Member.get(space_id, f.user_id, consistent_read=True).connected for f in fans)
    assert _present(space_id) == set()


def test_a_listeners_leave_is_one_write_that_needs_no_space(
    world: World, live: tuple[Caller, Caller, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lost worker's whole audience leaves at once: a listener, never in the stage's
    set, costs the member's write alone, even while the Space's item refuses writes."""
    _, _, space_id = live
    carol = world.user("carol")
    carol.post(f"/spaces/{space_id}/join")
    _deliver(world, _event("participant_connected", space_id, "u-carol"),
             _event("participant_connected", space_id, "u-bob"))

    def refused(self: Space, *args: Any, **kwargs: Any) -> Any:
        raise PutError("DynamoDB refused the write")

    monkeypatch.setattr(Space, "update", refused)
    assert _deliver(world, _event("participant_left", space_id, "u-carol")) == {
        "batchItemFailures": []}
    assert Member.get(space_id, "u-carol", consistent_read=True).connected is False
    # A speaker's leave still needs the Space: its record fails, to be retried.
    response = _deliver(world, _event("participant_left", space_id, "u-bob"),
                        _event("speaking_started", space_id, "u-alice"))
    assert len(response["batchItemFailures"]) == 1
    assert _present(space_id) == {"u-bob"}
