"""The control plane's placement (functions/chalicelib/media/placement.py), run in a process
of its own against the media tests' embedded AWS:

    python -m tests.media.control_plane tables
    python -m tests.media.control_plane space <space id> <host id>
    python -m tests.media.control_plane join <space id> <user id>      # prints the reply

A process of its own because this package's moto server (AWS_ENDPOINT_URL) must not
leak into the in-process mocks of other test packages; the tables are the ones its
environment names, as the app's are (models.use_tables)."""

from __future__ import annotations

import json
import os
import sys
import time

from chalicelib.media import placement
from chalicelib.platform import models
from chalicelib.platform.models import LIVE_PARTITION, Space
from chalicelib.rooms import spaces
from local.aws import create_tables


def main(argv: list[str]) -> None:
    models.use_tables(os.environ)
    command, *args = argv
    if command == "tables":
        create_tables()
    elif command == "space":
        space_id, host_id = args
        now = time.time()
        Space(space_id, host_id=host_id, title="Relayed", state=spaces.LIVE, created_at=now,
              started_at=now, live_partition=LIVE_PARTITION).save()
    elif command == "join":
        space_id, user_id = args
        print(json.dumps(placement.join(space_id, user_id)))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
