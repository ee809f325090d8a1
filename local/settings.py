"""Where the local runtime keeps its state and which ports it uses."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("PARLOR_STATE_DIR", ROOT / ".local"))
ISSUER_KEY = STATE / "issuer.pem"
JOIN_TOKEN_KEY = STATE / "join-token.pem"
VAPID_KEY = STATE / "vapid.pem"
# The embedded S3's bucket of avatars (a CDK-made bucket in AWS).
AVATARS_BUCKET = "parlor-avatars"

HOST = os.environ.get("PARLOR_HOST", "127.0.0.1")
AWS_PORT = int(os.environ.get("PARLOR_AWS_PORT", "4566"))
API_PORT = int(os.environ.get("PARLOR_API_PORT", "8000"))
MEDIA_PORT = int(os.environ.get("PARLOR_MEDIA_PORT", "8700"))
WEB_PORT = int(os.environ.get("PARLOR_WEB_PORT", "8080"))
# How often the abandoned-Space sweep runs (an EventBridge rule, every minute, in AWS).
SWEEP_SECONDS = float(os.environ.get("PARLOR_SWEEP_SECONDS", "5"))
