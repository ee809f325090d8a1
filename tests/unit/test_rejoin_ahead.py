"""A rejoining participant prepares its next session while the API answers, and uses it
only when it fits the answer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from peer.participant import Participant, _Ahead, _credentials_last
from peer.session import MediaSession

TURN = {"urls": ["turn:turn.example:3478?transport=udp"], "credential": "c"}


def test_turn_credentials_are_reused_only_while_they_last() -> None:
    now = time.time()
    assert _credentials_last([{"urls": ["stun:stun.example"]}], now)
    assert _credentials_last([{**TURN, "username": f"{int(now) + 3600}:u-1"}], now)
    # Expiring within the minute, or of a form that says no expiry: not reused.
    assert not _credentials_last([{**TURN, "username": f"{int(now) + 30}:u-1"}], now)
    assert not _credentials_last([{**TURN, "username": "static-user"}], now)


async def _nothing() -> MediaSession:
    return MediaSession([])


def test_a_prepared_session_fits_the_same_servers_and_microphone_only() -> None:
    async def check() -> None:
        old = [{**TURN, "username": "100:u-1"}]
        fresh = [{**TURN, "username": "200:u-1", "credential": "d"}]
        moved = [{**TURN, "urls": ["turn:elsewhere.example:3478"], "username": "200:u-1"}]
        ahead = _Ahead(asyncio.create_task(_nothing()), old, publishing=False)
        assert ahead.fits(fresh, publishing=False)
        assert not ahead.fits(moved, publishing=False)
        # Promoted meanwhile: the prepared offer has no microphone.
        assert not ahead.fits(fresh, publishing=True)
        await ahead.task

    asyncio.run(check())


def test_a_discarded_session_is_closed_whether_ready_or_not() -> None:
    async def check() -> None:
        person = Participant("http://127.0.0.1:9", lambda: "t", "sp_1")
        person._ice_servers = []
        sessions: list[MediaSession] = []
        make = person._new_session

        def recorded(servers: list[dict[str, Any]], publishing: bool) -> MediaSession:
            sessions.append(make(servers, publishing))
            return sessions[-1]

        person._new_session = recorded  # type: ignore[method-assign,assignment]
        ready = person._prepare_ahead()
        assert ready is not None
        await asyncio.wait([ready.task])
        await ready.discard()
        assert sessions[0].pc.connectionState == "closed"
        # Still making its offer when discarded: cancelled, and closed on the way out.
        pending = person._prepare_ahead()
        assert pending is not None
        await asyncio.sleep(0)
        await pending.discard()
        assert pending.task.cancelled()
        assert sessions[1].pc.connectionState == "closed"

    asyncio.run(check())


def test_a_participant_without_an_earlier_join_prepares_nothing() -> None:
    person = Participant("http://127.0.0.1:9", lambda: "t", "sp_1")
    assert person._prepare_ahead() is None
