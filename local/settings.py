"""Where the local runtime keeps its state and which ports it uses."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("PARLOR_STATE_DIR", ROOT / ".local"))
ISSUER_KEY = STATE / "issuer.pem"
JOIN_TOKEN_KEY = STATE / "join-token.pem"
# The join-token key set (current and previous), which `make rotate-keys` rotates.
JOIN_TOKEN_KEYS = STATE / "join-token-keys.json"
# The value the web origin adds to what it forwards to the API, as CloudFront does.
ORIGIN_SECRET = STATE / "origin-secret"
ORIGIN_HEADER = "x-parlor-origin"
# coturn's shared secret (TURN REST API credentials).
TURN_SECRET = STATE / "turn-secret"
VAPID_KEY = STATE / "vapid.pem"
# The embedded S3's bucket of avatars (a CDK-made bucket in AWS).
AVATARS_BUCKET = "parlor-avatars"

HOST = os.environ.get("PARLOR_HOST", "127.0.0.1")
AWS_PORT = int(os.environ.get("PARLOR_AWS_PORT", "4566"))
API_PORT = int(os.environ.get("PARLOR_API_PORT", "8000"))
MEDIA_PORT = int(os.environ.get("PARLOR_MEDIA_PORT", "8700"))
# How many media nodes `make up` runs, on MEDIA_PORT, MEDIA_PORT + 1, ...
MEDIA_NODES = int(os.environ.get("PARLOR_MEDIA_NODES", "1"))
WEB_PORT = int(os.environ.get("PARLOR_WEB_PORT", "8080"))
# coturn's listening port (UDP and TCP), and the range of its relayed ports. Every
# participant's client allocates a relay as it gathers candidates, so the range holds an
# audience of a thousand; it lies above Linux's ephemeral ports (32768-60999), which the
# media node and the clients take, so coturn need not hunt for a free one.
TURN_PORT = int(os.environ.get("PARLOR_TURN_PORT", "3478"))
TURN_RELAY_PORTS = os.environ.get("PARLOR_TURN_RELAY_PORTS", "61000-61999")
# How often the abandoned-Space sweep runs (an EventBridge rule, every minute, in AWS).
SWEEP_SECONDS = float(os.environ.get("PARLOR_SWEEP_SECONDS", "5"))
