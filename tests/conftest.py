"""Shared set-up: dummy AWS credentials, a local token issuer, and the join-token keys.

The environment is set at import, before any test imports the Chalice app, because
the app reads its settings once (as a warm Lambda would)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# Two modules are called `app`: the CDK app at the top (the brief's layout) and the
# Chalice app in functions/. Tests, like Lambda, mean the Chalice one: it is imported
# here, once, so every later `import app` (Chalice's packager's too) finds it, whatever
# pytest does to the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functions"))
import app as _chalice_app

assert hasattr(_chalice_app.app, "routes"), "the Chalice app must be the one imported as app"

from chalicelib.alerts import webpush  # noqa: E402
from chalicelib.media.jointoken import new_key_pair  # noqa: E402
from local.issuer import LocalIssuer  # noqa: E402

os.environ.update({
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    # botocore addresses DescribeStream by account id (<account>.streams-ddb...), a host
    # moto's in-process mock does not route; the regional endpoint it does.
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
})

ISSUER = LocalIssuer.generate()
JOIN_PRIVATE_KEY, JOIN_PUBLIC_KEY = new_key_pair()
ICE_SERVERS = [{"urls": ["stun:stun.example.org:3478"]}]

os.environ.update({
    "AUTH_ISSUER": ISSUER.issuer,
    "AUTH_JWKS": json.dumps(ISSUER.jwks()),
    "JOIN_TOKEN_PRIVATE_KEY": JOIN_PRIVATE_KEY,
    "ICE_SERVERS": json.dumps(ICE_SERVERS),
    # As a deployment has them: the VAPID pair of Web Push, and the avatars bucket.
    "WEB_PUSH_VAPID_PRIVATE_KEY": webpush.new_key_pair().private_pem,
    "AVATARS_BUCKET": "parlor-avatars-test",
})
os.environ.pop("AWS_ENDPOINT_URL", None)
