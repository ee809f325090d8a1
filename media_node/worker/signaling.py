"""WHIP/WHEP-shaped signaling in a worker: POST an offer to join, PATCH to renegotiate,
DELETE to leave. Requests reach it through the node's front (front.py), which routes
them to the worker that holds the Space or the session.

ICE is not trickled: the client gathers its candidates before it POSTs, and the answer
carries all of the node's. The session URL holds a 128-bit random id and is the
capability for PATCH and DELETE, because a join token expires a minute after it is
minted while a session lasts as long as the Space.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp
from aiortc.exceptions import InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamTrack

from ..audio.participant import Participant
from ..audio.room import Room
from ..authority import Authority
from ..candidates import MAX_REMOTE_CANDIDATES
from ..errors import NodeError
from ..ice import announce_address
from ..internal import (
    ADMISSION_HEADER,
    AUTHORITY_HEADER,
    FEED_HEADER,
    MAX_SDP_BYTES,
    SESSION_PATH,
    SESSIONS_PATH,
    FeedSource,
)
from ..tokens import JoinClaims

if TYPE_CHECKING:
    from .rooms import Rooms

log = logging.getLogger("media_node.signaling")

SDP_CONTENT_TYPE = "application/sdp"
# A peer that has not completed ICE and DTLS by then is not coming.
CONNECT_TIMEOUT_SECONDS = 20.0
NEGOTIATION_ERRORS = (ValueError, OperationError, InvalidAccessError, InvalidStateError)


def check_offer(body: bytes) -> str:
    """The offer as text, if it is one this node can answer: one audio section, Opus.

    aiortc raises assorted exceptions on garbage, so the offer is parsed here first and
    any failure becomes a 400 instead of a 500.
    """
    if not body:
        raise NodeError(400, "invalid_sdp", "the body must be an SDP offer")
    if len(body) > MAX_SDP_BYTES:
        raise NodeError(400, "invalid_sdp", "the SDP offer is too large")
    try:
        text = body.decode("utf-8")
        description = aiortc_sdp.SessionDescription.parse(text)
    except Exception as exc:
        raise NodeError(400, "invalid_sdp", f"the SDP offer does not parse: {exc}") from None
    kinds = [media.kind for media in description.media]
    if not kinds:
        raise NodeError(400, "invalid_sdp", "the SDP offer has no media sections")
    if kinds.count("audio") != 1 or any(k not in ("audio", "application") for k in kinds):
        raise NodeError(
            400, "unsupported_offer", "the offer must have one audio section and no video"
        )
    candidates = sum(len(media.ice_candidates) for media in description.media)
    if candidates > MAX_REMOTE_CANDIDATES:
        raise NodeError(
            400, "too_many_candidates",
            f"the offer has {candidates} ICE candidates; at most {MAX_REMOTE_CANDIDATES}",
        )
    audio = next(media for media in description.media if media.kind == "audio")
    if audio.ice is None or not audio.ice.usernameFragment or audio.dtls is None:
        raise NodeError(400, "invalid_sdp", "the offer lacks ICE or DTLS parameters")
    if not any(codec.mimeType.lower() == "audio/opus" for codec in audio.rtp.codecs):
        raise NodeError(400, "unsupported_offer", "the offer's audio must include Opus")
    return text


def _admission(request: web.Request) -> int:
    """The join's place in the front's order (the front sends it with every join)."""
    try:
        return int(request.headers[ADMISSION_HEADER])
    except (KeyError, ValueError):
        raise NodeError(
            400, "invalid_request", f"{ADMISSION_HEADER} must be the front's count of joins"
        ) from None


def _json_header(request: web.Request, name: str) -> Any:
    raw = request.headers.get(name)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _content_type_must_be_sdp(request: web.Request) -> None:
    if request.content_type != SDP_CONTENT_TYPE:
        raise NodeError(
            415, "unsupported_media_type", f"Content-Type must be {SDP_CONTENT_TYPE}"
        )


class Signaling:
    def __init__(self, node: Rooms) -> None:
        self._node = node
        self._tasks: set[asyncio.Task[None]] = set()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(SESSIONS_PATH, self.create_session)
        app.router.add_patch(SESSION_PATH, self.renegotiate)
        app.router.add_delete(SESSION_PATH, self.leave)

    async def create_session(self, request: web.Request) -> web.Response:
        space_id = request.match_info["space_id"]
        # The front verified the token too and spent it (one use is per node, and the
        # node's workers do not share memory); the worker keeps its own check of what
        # admits the peer, so that nothing reaches a room on the front's word alone.
        claims = self._node.verifier.verify(request.headers.get("Authorization"), space_id)
        _content_type_must_be_sdp(request)
        offer = check_offer(await request.read())
        told = Authority.parse(_json_header(request, AUTHORITY_HEADER))
        if told is not None:
            self._node.book.learn(space_id, claims.user_id, told)
        claims = await self._node.admit(claims)
        feed = request.headers.get(FEED_HEADER)
        room, claims = await self._node.open_room(
            claims, FeedSource.parse(feed) if feed else None)

        participant = new_participant(room, self._node.new_session_id(), claims)
        self._node.admitted(claims)
        participant.admission = _admission(request)
        room.add(participant)
        try:
            answer = await self._answer(participant.pc, offer)
        except BaseException:
            # Whatever stopped the answer (a refused offer, the request cancelled), the
            # half-made peer must not linger in the room.
            await room.remove(participant, reason="negotiation_failed")
            raise

        # The user's earlier sessions here (those on the node's other workers: the front
        # tells those, Front._replace_elsewhere).
        await room.replace(participant.user_id, participant.admission)
        self._expire_if_unconnected(room, participant)
        log.info("session created", extra=participant.describe())
        location = f"/media/spaces/{space_id}/sessions/{participant.session_id}"
        return web.Response(
            status=201,
            text=answer,
            content_type=SDP_CONTENT_TYPE,
            headers={"Location": location},
        )

    async def renegotiate(self, request: web.Request) -> web.Response:
        participant = self._session(request)
        _content_type_must_be_sdp(request)
        offer = check_offer(await request.read())
        if participant.pc.signalingState != "stable":
            raise NodeError(409, "negotiation_in_progress", "a negotiation is under way")
        answer = await self._answer(participant.pc, offer)
        log.info("session renegotiated", extra=participant.describe())
        return web.Response(status=200, text=answer, content_type=SDP_CONTENT_TYPE)

    async def leave(self, request: web.Request) -> web.Response:
        participant = self._session(request)
        await participant.room.remove(participant, reason="left")
        return web.Response(status=204)

    def _session(self, request: web.Request) -> Participant:
        participant = self._node.find_session(
            request.match_info["space_id"], request.match_info["session_id"]
        )
        if participant is None:
            raise NodeError(404, "unknown_session", "no such session on this node")
        return participant

    async def _answer(self, pc: RTCPeerConnection, offer: str) -> str:
        offer, dropped = self._node.config.candidate_policy.screen(offer)
        if dropped:
            log.info("offer candidates refused", extra={"count": dropped})
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            if self._node.udp_mux is not None:
                self._node.udp_mux.attach(pc)
            await pc.setLocalDescription(await pc.createAnswer())
        except NEGOTIATION_ERRORS as exc:
            raise NodeError(400, "invalid_sdp", f"the offer was refused: {exc}") from None
        local = pc.localDescription
        address = self._node.config.announced_address
        return announce_address(local.sdp, address) if address else local.sdp

    def _expire_if_unconnected(self, room: Room, participant: Participant) -> None:
        async def expire() -> None:
            await asyncio.sleep(CONNECT_TIMEOUT_SECONDS)
            if not participant.connected:
                await room.remove(participant, reason="connect_timeout")

        task = asyncio.create_task(expire())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def new_participant(room: Room, session_id: str, claims: JoinClaims) -> Participant:
    """A peer connection for `room`, ready for the peer's offer, and its participant."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    participant = Participant(room, session_id, claims, pc)
    wire(room, participant)
    # The transceiver exists before the offer is applied so that the offer's audio
    # section lands on it and only Opus is negotiated: the mix is Opus packets, which
    # a sender that had agreed on PCMU would send under the wrong payload type.
    transceiver = pc.addTransceiver(participant.track, direction="sendrecv")
    room.sender.attach(participant, transceiver.sender)
    transceiver.setCodecPreferences(
        [
            codec
            for codec in RTCRtpSender.getCapabilities("audio").codecs
            if codec.mimeType.lower() == "audio/opus"
        ]
    )
    return participant


def wire(room: Room, participant: Participant) -> None:
    """The peer connection's events, to the room: its audio, its data channel, and its
    state, whose failure or closing (ICE consent lost included) removes it."""
    pc = participant.pc

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            participant.receive(track)

    pc.on("datachannel", participant.attach_channel)

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        state = pc.connectionState
        if state == "connected":
            room.connected(participant)
        elif state in ("failed", "closed"):
            await room.remove(participant, reason=f"connection_{state}")
