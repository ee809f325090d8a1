"""Live Spaces that nobody on stage is connected to any more end by themselves.

A live Space ends, as if its host ended it, once nobody on stage has been connected to
a media node for ABANDONED_SPACE_SECONDS (60 by default): a host whose connection
vanished, or a Space on a node that died, which then sent no `participant_left` and
stopped its heartbeat. The end goes through the same write as the host's, so the
alerts clear the bars and the nodes are told (the tables' streams). In AWS this runs
every minute (an EventBridge schedule); under `make up`, every few seconds in the
pumps' process."""

from __future__ import annotations

import logging
import time
from typing import Any

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.condition import Condition

from ..platform.config import settings
from ..platform.errors import Conflict
from ..platform.models import LIVE_PARTITION, MediaNode, Space
from . import spaces

log = logging.getLogger(__name__)


def _mark_empty(space: Space, now: float, node_gone: bool) -> float:
    """Records that the stage is empty from `now` on, unless a time is recorded; with
    `node_gone` the Space's presence is cleared too (its node left the registry, so
    nobody is connected through it). Returns the time the stage has been empty since."""
    actions: list[Any] = [Space.stage_empty_since.set(Space.stage_empty_since | now)]
    condition = Space.state == spaces.LIVE
    if node_gone:
        actions.append(Space.on_stage_connected.remove())
        condition &= Space.node_id == space.node_id
    else:
        condition &= Space.on_stage_connected.does_not_exist()
    item = Space(space.space_id)
    try:
        item.update(actions=actions, condition=condition)
    except UpdateError:
        return float(space.stage_empty_since) if space.stage_empty_since else now
    return float(item.stage_empty_since) if item.stage_empty_since else now


def empty_since(space: Space, nodes: dict[str, MediaNode],
                now: float) -> tuple[float, Condition] | None:
    """Since when nobody on the Space's stage has been connected, and the condition
    that still says so when the Space is ended; None if someone is connected."""
    found: list[tuple[float, Condition]] = []
    node = nodes.get(space.node_id) if space.node_id else None
    same_node = Space.node_id == space.node_id
    if space.node_id and node is None:
        found.append((_mark_empty(space, now, node_gone=True), same_node))
    elif node is not None and \
            now - float(node.heartbeat_at) > settings().node_heartbeat_max_age_seconds:
        # Its node went silent then: whoever was connected through it is gone with it,
        # unless the Space moves to another node (a join re-places it) meanwhile.
        found.append((float(node.heartbeat_at), same_node))
    if not space.on_stage_connected:
        found.append((_mark_empty(space, now, node_gone=False),
                      Space.on_stage_connected.does_not_exist()))
    return min(found, key=lambda f: f[0]) if found else None


def sweep(now: float | None = None) -> list[str]:
    """Ends the live Spaces abandoned for long enough; returns their ids."""
    now = time.time() if now is None else now
    limit = settings().abandoned_space_seconds
    # The registry holds one small item per node: a scan is a few reads.
    nodes = {n.node_id: n for n in MediaNode.scan(consistent_read=True)}
    ended = []
    for space in Space.live.query(LIVE_PARTITION):
        found = empty_since(space, nodes, now)
        if found is None or now - found[0] < limit:
            continue
        try:
            spaces.end_as_abandoned(spaces.load(space.space_id), found[1])
        except Conflict:
            continue  # someone came back (or the Space moved) meanwhile
        log.info("space %s abandoned for %.0f s: ended", space.space_id, now - found[0])
        ended.append(space.space_id)
    return ended
