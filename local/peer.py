"""A command-line participant: joins a Space through the API, connects to its media node
over WebRTC, speaks a tone if it may, and reports what it hears.

    python -m local.peer --as u-alice --space sp_... --tone 440   # the host hums
    python -m local.peer --as u-bob --space sp_...                # a listener hears it

It is what a client does, in the open (peer/): the API's join call, then a
WHIP/WHEP-shaped POST of the SDP offer with the join token. Each second it prints the
level and the loudest frequency it heard, and the room events from the data channel.
If the audio is lost (a worker or a node dies) it says so and joins again by itself; an
end or a removal stops it."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from local import settings
from local.issuer import LocalIssuer
from peer.participant import Participant, Stopped
from peer.session import Refused
from peer.tones import describe


async def run(api: str, issuer: LocalIssuer, user_id: str, space_id: str, tone_hz: float,
              seconds: float) -> int:
    participant = Participant(
        api, lambda: issuer.mint(user_id), space_id, tone_hz=tone_hz,
        on_event=lambda message: print(f"event: {json.dumps(message)}", flush=True))
    try:
        await participant.start()
    except Stopped as exc:
        print(f"the API refused to join: {exc.reason}")
        return 1
    except Refused as exc:
        print(f"could not join: {exc}")
        return 1
    speaking = f", humming {tone_hz:.0f} Hz" if participant.may_publish else ""
    print(f"joined {space_id} as {participant.role} on {participant.node_id}{speaking}",
          flush=True)
    started = last = time.monotonic()
    outages = 0
    try:
        while time.monotonic() - started < seconds and participant.stopped is None:
            await asyncio.sleep(1)
            now = time.monotonic()
            print(f"heard: {describe(participant.heard_since(last))}", flush=True)
            last = now
            for outage in participant.outages[outages:]:
                if outage.restored_at is None:
                    break
                print(f"audio lost ({outage.why}); back after "
                      f"{outage.restored_at - outage.noticed_at:.1f} s on {participant.node_id}",
                      flush=True)
                outages += 1
        if participant.stopped is not None:
            print(f"stopped: {participant.stopped}", flush=True)
    finally:
        await participant.stop()
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description="Join a Space's audio from the terminal")
    parser.add_argument("--as", dest="user_id", required=True, help="a user id, e.g. u-bob")
    parser.add_argument("--space", required=True, help="the Space id")
    parser.add_argument("--tone", type=float, default=440.0, help="Hz to hum when on stage")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--api", default=f"http://{settings.HOST}:{settings.WEB_PORT}/api")
    args = parser.parse_args()
    issuer = LocalIssuer.load_or_create(settings.ISSUER_KEY)
    raise SystemExit(asyncio.run(
        run(args.api, issuer, args.user_id, args.space, args.tone, args.seconds)))


if __name__ == "__main__":
    main()
