"""Presence from the media nodes' events (docs/media-contract.md, section 5).

The node reports who connected, left and spoke; the control plane, the only writer of
room state, records it: on the member (connected, speaking) and, for people on stage,
in the Space's `on_stage_connected` set, which is what "speaking in a Space" means to
the alerts. Events carry the node's timestamp; an event older than the one already
applied to a member is ignored, since SQS does not keep order."""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from pynamodb.exceptions import UpdateError

from ..platform.db import Tx, TxFailed
from ..platform.models import Member, Space

log = logging.getLogger(__name__)

CONNECTED, LEFT = "participant_connected", "participant_left"
SPEAKING_STARTED, SPEAKING_STOPPED = "speaking_started", "speaking_stopped"
NODE_DRAINING = "node_draining"
_PARTICIPANT_EVENTS = {CONNECTED, LEFT, SPEAKING_STARTED, SPEAKING_STOPPED}
STAGE_ROLES = ("host", "co_host", "speaker")


class InvalidEvent(ValueError):
    """The message is not a media event of a known version and shape."""


@dataclass(frozen=True)
class MediaEvent:
    kind: str
    node_id: str
    at: float
    space_id: str | None = None
    user_id: str | None = None

    @classmethod
    def parse(cls, body: Any) -> MediaEvent:
        if not isinstance(body, dict) or body.get("v") != 1:
            raise InvalidEvent("not a version 1 media event")
        kind, node_id, at = body.get("type"), body.get("node_id"), body.get("at")
        if kind not in _PARTICIPANT_EVENTS | {NODE_DRAINING}:
            raise InvalidEvent(f"unknown event type {kind!r}")
        if not isinstance(node_id, str) or isinstance(at, bool) or \
                not isinstance(at, int | float):
            raise InvalidEvent("node_id and at are required")
        if kind == NODE_DRAINING:
            return cls(kind, node_id, float(at))
        space_id, user_id = body.get("space_id"), body.get("user_id")
        if not isinstance(space_id, str) or not isinstance(user_id, str):
            raise InvalidEvent("space_id and user_id are required")
        return cls(kind, node_id, float(at), space_id, user_id)


def _newer(at: float) -> Any:
    return Member.presence_at.does_not_exist() | (Member.presence_at <= at)


def apply(event: MediaEvent) -> bool:
    """Records the event; False when it changed nothing (stale, unknown member)."""
    if event.kind == NODE_DRAINING:
        log.info("node %s is draining", event.node_id)
        return False
    assert event.space_id is not None
    assert event.user_id is not None
    member_key = Member(event.space_id, event.user_id)
    if event.kind in (SPEAKING_STARTED, SPEAKING_STOPPED):
        try:
            member_key.update(
                actions=[Member.speaking.set(event.kind == SPEAKING_STARTED),
                         Member.presence_at.set(event.at)],
                condition=Member.user_id.exists() & _newer(event.at))
        except UpdateError:
            return False
        return True
    connected = event.kind == CONNECTED
    actions: list[Any] = [Member.connected.set(connected), Member.presence_at.set(event.at)]
    if not connected:
        actions.append(Member.speaking.set(False))
    present = Member.user_id.exists() & (Member.role != "removed") & _newer(event.at)
    if not connected:
        # Who leaves the stage leaves its set. Two writes, no transaction: both are
        # idempotent, so a retried event completes what a failed one began.
        try:
            member_key.update(actions=actions, condition=present)
        except UpdateError:
            return False
        if member_key.role not in STAGE_ROLES:
            # Every write that adds to the set, or changes a role, is conditioned on the
            # role in the same transaction: someone whose role is off stage now is not in
            # it. A listener's leave is one write (a lost worker's whole audience leaves
            # at once).
            return True
        with contextlib.suppress(UpdateError):  # a Space that is gone keeps no set
            Space(event.space_id).update(
                actions=[Space.on_stage_connected.delete({event.user_id})],
                condition=Space.space_id.exists())
        _mark_stage_empty(event.space_id, event.at)
        return True
    # Most who connect are listeners: the member alone records it (a transaction costs
    # twice the writes, and a Space's whole audience reconnects at once after a fault).
    try:
        member_key.update(actions=actions, condition=present & ~Member.role.is_in(*STAGE_ROLES))
        return True
    except UpdateError:
        pass
    # Someone on stage joins the stage's set, in the same transaction as their member.
    tx = (Tx().update("member", member_key, actions,
                      condition=present & Member.role.is_in(*STAGE_ROLES))
          .update("space", Space(event.space_id),
                  [Space.on_stage_connected.add({event.user_id}),
                   Space.stage_empty_since.remove()],
                  condition=Space.state == "live"))
    try:
        tx.commit()
    except TxFailed:
        # The Space is not live (or the role changed meanwhile): the member alone.
        try:
            member_key.update(actions=actions, condition=present)
        except UpdateError:
            return False
    return True


def _mark_stage_empty(space_id: str, at: float) -> None:
    """The stage of a live Space has nobody connected since `at` (DynamoDB drops a set
    whose last member is deleted), unless a time is recorded already."""
    with contextlib.suppress(UpdateError):
        Space(space_id).update(
            actions=[Space.stage_empty_since.set(at)],
            condition=(Space.state == "live") & Space.on_stage_connected.does_not_exist()
            & Space.stage_empty_since.does_not_exist())


HLS_FINISHED = "hls_finished"


def record_from_sqs(record: Any) -> None:
    """One SQS record of the media-events queue (a Powertools SQSRecord)."""
    try:
        body = json.loads(record.body)
    except ValueError as exc:
        raise InvalidEvent("the message body is not JSON") from exc
    if isinstance(body, dict) and body.get("v") == 1 and body.get("type") == HLS_FINISHED:
        # Not presence: a room's HLS is written to its end (hls.py settles it).
        from ..rooms import hls

        try:
            hls.on_finished(body)
        except ValueError as exc:
            raise InvalidEvent(str(exc)) from exc
        return
    apply(MediaEvent.parse(body))
