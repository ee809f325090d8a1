"""Joining a Space's audio: a seat in the Space, a media node, and a join token.

A Space is placed on the least loaded healthy node the first time someone joins and
keeps that node (its owner, which mixes it) while it stays healthy; if it stops
heartbeating, or drains (a deploy), the next join moves the Space (clients rejoin
through this same call). A draining node keeps its Spaces while no other node is there.

When the owner takes no more listeners of the Space (its registry entry lists the Space
in `full_spaces`, or the node is at capacity), a listener is placed on another healthy
node as a relay of the owner: the join token names that node and, as `origin`, the
owner, from which that node gets the Space's feed (docs/media-contract.md). A node that
already relays the Space is filled first. Speakers always join the owner: they publish
into its mix.

Listeners may ask for HLS instead (`transport: "hls"`), and get it when WebRTC has no
room for them: the Space's nodes and relays are full, or it has WEBRTC_LISTENER_LIMIT
WebRTC listeners. An HLS seat is counted without a write to the Space's item
(audience.py), and the answer carries the playlist's URL and no token."""

from __future__ import annotations

import time
from typing import Any

from ..platform.config import settings
from ..platform.db import Tx, TxFailed
from ..platform.errors import Conflict, Forbidden, Unavailable
from ..platform.models import ListenerCount, MediaNode, Member, Space
from ..rooms import audience, authority, hls, spaces
from ..rooms.spaces import LISTENER, REMOVED, STAGE_ROLES
from ..social import preferences
from . import jointoken, turn

WEBRTC, HLS = "webrtc", "hls"
TRANSPORTS = (WEBRTC, HLS)
REQUESTED, WEBRTC_FULL = "requested", "webrtc_full"


class WebrtcFull(Exception):
    """The Space has as many WebRTC listeners as it takes."""


def healthy(node: MediaNode, now: float) -> bool:
    fresh = now - float(node.heartbeat_at) <= settings().node_heartbeat_max_age_seconds
    return fresh and not node.draining and int(node.participants) < int(node.capacity)


def _load_ratio(node: MediaNode) -> float:
    return int(node.participants) / max(int(node.capacity), 1)


def _takes_listeners(node: MediaNode, space_id: str) -> bool:
    return space_id not in (node.full_spaces or []) and \
        int(node.participants) < int(node.capacity)


def _relay_for(space_id: str, owner: MediaNode, nodes: dict[str, MediaNode],
               now: float) -> MediaNode | None:
    """Another healthy node to relay the Space from its owner, if any can."""
    candidates = [n for n in nodes.values()
                  if n.node_id != owner.node_id and healthy(n, now) and n.private_url
                  and space_id not in (n.full_spaces or [])]
    if not candidates:
        return None
    # A node that relays the Space already has its feed: fill it before opening another.
    return min(candidates, key=lambda n: (space_id not in (n.relayed_spaces or []),
                                          _load_ratio(n), n.node_id))


def _node_of(space: Space, nodes: dict[str, MediaNode], now: float) -> MediaNode:
    """The Space's node, placing (or re-placing) it when needed."""
    current = nodes.get(space.node_id) if space.node_id else None
    alive = current is not None and \
        now - float(current.heartbeat_at) <= settings().node_heartbeat_max_age_seconds
    if alive and current is not None and not current.draining:
        return current
    candidates = [n for n in nodes.values() if healthy(n, now)]
    if not candidates:
        if alive and current is not None:
            # Draining, and no other node to go to: its room is still open there.
            return current
        raise Unavailable("No media node is available; try again shortly",
                          code="no_media_node")
    chosen = min(candidates, key=lambda n: (_load_ratio(n), n.node_id))
    condition = (Space.node_id.does_not_exist() if space.node_id is None
                 else Space.node_id == space.node_id)
    actions: list[Any] = [Space.node_id.set(chosen.node_id)]
    if space.node_id is not None:
        # A move: who was connected to the old node is connected nowhere now. Those who
        # rejoin are counted again from the new node's events; the stage is empty until
        # then (abandoned.py ends a Space nobody on stage comes back to).
        actions += [Space.on_stage_connected.remove(), Space.stage_empty_since.set(now)]
    try:
        Space(space.space_id).update(actions=actions, condition=condition)
    except Exception:
        # Another join placed it first: use that node.
        placed = spaces.load(space.space_id)
        if placed.node_id and placed.node_id in nodes:
            return nodes[placed.node_id]
        raise
    return chosen


def _webrtc_seat_condition() -> Any:
    condition = Space.state == spaces.LIVE
    limit = settings().webrtc_listener_limit
    if limit and hls.enabled():
        condition &= Space.listener_count < limit
    return condition


def _space_refused(space_id: str) -> Exception:
    """Why a seat's condition on the Space failed: not live (raised), or full."""
    spaces.require_live(spaces.load(space_id))
    return WebrtcFull()


def _seat(space_id: str, user_id: str) -> Member:
    """The caller's membership, created as a listener on their first join. A listener
    seated through HLS before moves to a WebRTC seat. WebrtcFull when the Space takes
    no more WebRTC listeners."""
    member = spaces.find_member(space_id, user_id)
    if member is not None:
        if member.role == REMOVED:
            raise Forbidden("You were removed from this Space", code="removed")
        if audience.counted_on_space(member) is None:
            return _to_webrtc_seat(member)
        return member
    member = Member(space_id, user_id, role=LISTENER, muted=False, invited=False,
                    joined_at=time.time(), authority=authority.now_version())
    tx = (Tx().put("member", member, condition=Member.user_id.does_not_exist())
          .update("space", Space(space_id), [Space.listener_count.add(1)],
                  condition=_webrtc_seat_condition()))
    try:
        tx.commit()
    except TxFailed as exc:
        existing = spaces.find_member(space_id, user_id)
        if existing is None:
            if "space" in exc.failed:
                raise _space_refused(space_id) from None
            raise Conflict("The Space changed meanwhile; try again",
                           code="space_state_changed") from exc
        return _seat(space_id, user_id)
    return member


def _to_webrtc_seat(member: Member) -> Member:
    """An HLS listener's seat becomes a WebRTC one: off its shard, onto the Space."""
    shard = int(member.listener_shard)
    tx = (Tx().update("member", Member(member.space_id, member.user_id),
                      [Member.listener_shard.remove()],
                      condition=(Member.listener_shard == shard) & (Member.role == LISTENER))
          .update("count", ListenerCount(member.space_id, shard),
                  [ListenerCount.listeners.add(-1)])
          .update("space", Space(member.space_id), [Space.listener_count.add(1)],
                  condition=_webrtc_seat_condition()))
    try:
        tx.commit()
    except TxFailed as exc:
        if "space" in exc.failed:
            raise _space_refused(member.space_id) from None
        # Its seat changed meanwhile (a promotion, a leave): as it is now.
        return _seat(member.space_id, member.user_id)
    member.listener_shard = None
    return member


def _hls_answer(space: Space, member: Member, reason: str) -> dict[str, Any]:
    return {
        "space_id": space.space_id,
        "transport": HLS,
        "role": member.role,
        "reason": reason,
        "hls_url": hls.url(space.space_id, hls.LIVE_PLAYLIST),
        "recording": bool(space.record),
    }


def _join_hls(space: Space, user_id: str, reason: str) -> dict[str, Any]:
    member = audience.seat(space.space_id, user_id)
    if member.role == REMOVED:
        raise Forbidden("You were removed from this Space", code="removed")
    if member.role in STAGE_ROLES:
        raise Conflict("People on stage join over WebRTC, to be heard", code="on_stage",
                       role=member.role)
    return _hls_answer(space, member, reason)


def join(space_id: str, user_id: str, transport: str = WEBRTC) -> dict[str, Any]:
    if transport == HLS and not hls.enabled():
        raise Unavailable("This deployment has no HLS; join over WebRTC",
                          code="hls_unavailable")
    space = spaces.load(space_id)
    spaces.require_live(space)
    if preferences.is_blocked(space.host_id, user_id):
        raise Forbidden("The host has blocked you", code="blocked")
    if transport == HLS:
        return _join_hls(space, user_id, REQUESTED)
    try:
        member = _seat(space_id, user_id)
    except WebrtcFull:
        return _join_hls(space, user_id, WEBRTC_FULL)
    now = time.time()
    # The registry holds one small item per node: a scan is a few reads.
    nodes = {n.node_id: n for n in MediaNode.scan(consistent_read=True)}
    owner = _node_of(space, nodes, now)
    node, origin = owner, None
    # A relay subscribes to the owner at its private address: without one, no relay.
    if member.role not in STAGE_ROLES and not _takes_listeners(owner, space_id):
        relay = _relay_for(space_id, owner, nodes, now) if owner.private_url else None
        if relay is not None:
            node, origin = relay, owner.node_id
        elif hls.enabled():
            # Every node that could carry this listener is full for the Space.
            return _hls_answer(space, member, WEBRTC_FULL)
    token, expires_at = jointoken.mint(user_id, space_id, member.role, node.node_id,
                                       bool(member.muted), int(member.authority or 0),
                                       origin=origin, recording=bool(space.record))
    return {
        "space_id": space_id,
        "transport": WEBRTC,
        "role": member.role,
        "muted": bool(member.muted),
        "token": token,
        "expires_at": expires_at,
        "node_id": node.node_id,
        "media": {
            "url": f"{node.url.rstrip('/')}/media/spaces/{space_id}/sessions",
            "ice_servers": turn.ice_servers(user_id),
        },
    }
