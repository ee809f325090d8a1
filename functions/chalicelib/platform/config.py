"""Settings of the control plane, read once from the environment.

Lambda gets these as stage environment variables from the CDK stack; the local
runtime and the tests set the same variables, so one code path serves all three.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any


class ConfigError(RuntimeError):
    """A setting is missing or malformed: the deployment, not the caller, is at fault."""


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    # Identity of callers: a Cognito user pool in AWS, the local issuer elsewhere.
    auth_issuer: str
    auth_audience: str | None
    auth_jwks_url: str | None
    auth_jwks: dict[str, Any] | None
    # Hosting policy.
    hosting_follower_threshold: int
    # Join tokens for the media nodes.
    join_token_private_key_pem: str | None
    join_token_secret_arn: str | None
    join_token_ttl_seconds: int
    # Media node placement.
    node_heartbeat_max_age_seconds: int
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    # A live Space with nobody on stage connected this long ends by itself.
    abandoned_space_seconds: int = 60
    # Abuse limits: Space starts per host and hour that alert followers, and open
    # WebSocket connections per user (the oldest is closed past it).
    alerting_starts_per_hour: int = 3
    connections_per_user: int = 5
    # Alerts: the fan-out and delivery queues, the SNS platform applications (absent
    # when the deployment has no push credentials) and the WebSocket API.
    alert_fanout_queue_url: str | None = None
    alert_delivery_queue_url: str | None = None
    apns_application_arn: str | None = None
    fcm_application_arn: str | None = None
    websocket_api_id: str | None = None
    websocket_stage: str = "api"
    # The header the site's origin (CloudFront, or the local web origin) signs requests
    # with, and its secret (Secrets Manager in AWS, inline locally): origin.py.
    # TURN (turn.py): the server's URLs, its shared secret, how long credentials last.
    turn_urls: list[str] = field(default_factory=list)
    turn_secret_arn: str | None = None
    turn_credential_ttl_seconds: int = 3600
    # How long the API keeps the join-token key it read from its secret (rotation).
    join_token_key_cache_seconds: int = 60
    origin_header_name: str = "x-parlor-origin"
    origin_secret_arn: str | None = None
    # The secret before the latest rotation, accepted while the edge takes up the new one.
    origin_previous_secret_arn: str | None = None
    origin_secret: str | None = None
    # HLS (hls.py): the bucket the media nodes write each Space's HLS to, and the URL
    # players fetch it from (CloudFront's /hls/* of the site, the web origin locally).
    hls_bucket: str | None = None
    hls_prefix: str = "hls"
    hls_base_url: str = "/hls"
    # WebRTC listeners one Space takes before further listeners get HLS (0: no limit
    # but the nodes' own capacity).
    webrtc_listener_limit: int = 0
    # How long a replay is kept (the bucket's lifecycle rule deletes it then), and how
    # long after a Space's end its HLS is settled even when no node said it finished.
    replay_retention_days: int = 30
    hls_settle_seconds: int = 30


def _turn_urls(raw: str) -> list[str]:
    if not raw:
        return []
    try:
        urls = json.loads(raw)
    except ValueError as exc:
        raise ConfigError("TURN_URLS must be a JSON list of turn: or turns: URLs") from exc
    if not isinstance(urls, list) or not all(
            isinstance(u, str) and u.startswith(("turn:", "turns:")) for u in urls):
        raise ConfigError("TURN_URLS must be a JSON list of turn: or turns: URLs")
    return urls


@cache
def settings() -> Settings:
    jwks_inline = os.environ.get("AUTH_JWKS")
    ice_raw = os.environ.get("ICE_SERVERS", "")
    try:
        ice_servers = json.loads(ice_raw) if ice_raw else []
        jwks = json.loads(jwks_inline) if jwks_inline else None
    except ValueError as exc:
        raise ConfigError("ICE_SERVERS and AUTH_JWKS must be JSON") from exc
    turn_urls = _turn_urls(os.environ.get("TURN_URLS", ""))
    issuer = os.environ.get("AUTH_ISSUER", "")
    if not issuer:
        raise ConfigError("AUTH_ISSUER is not set")
    return Settings(
        auth_issuer=issuer,
        auth_audience=os.environ.get("AUTH_AUDIENCE") or None,
        auth_jwks_url=os.environ.get("AUTH_JWKS_URL") or None,
        auth_jwks=jwks,
        hosting_follower_threshold=_int("HOSTING_FOLLOWER_THRESHOLD", 600),
        join_token_private_key_pem=os.environ.get("JOIN_TOKEN_PRIVATE_KEY") or None,
        join_token_secret_arn=os.environ.get("JOIN_TOKEN_SECRET_ARN") or None,
        join_token_ttl_seconds=_int("JOIN_TOKEN_TTL_SECONDS", 60),
        # Three of a node's 2 s heartbeats (docs/decisions/004-failover-timing.md).
        node_heartbeat_max_age_seconds=_int("NODE_HEARTBEAT_MAX_AGE_SECONDS", 6),
        ice_servers=ice_servers,
        abandoned_space_seconds=_int("ABANDONED_SPACE_SECONDS", 60),
        alerting_starts_per_hour=_int("ALERTING_STARTS_PER_HOUR", 3),
        connections_per_user=_int("CONNECTIONS_PER_USER", 5),
        alert_fanout_queue_url=os.environ.get("ALERT_FANOUT_QUEUE_URL") or None,
        alert_delivery_queue_url=os.environ.get("ALERT_DELIVERY_QUEUE_URL") or None,
        apns_application_arn=os.environ.get("APNS_APPLICATION_ARN") or None,
        fcm_application_arn=os.environ.get("FCM_APPLICATION_ARN") or None,
        websocket_api_id=os.environ.get("WEBSOCKET_API_ID") or None,
        websocket_stage=os.environ.get("WEBSOCKET_STAGE") or "api",
        turn_urls=turn_urls,
        turn_secret_arn=os.environ.get("TURN_SECRET_ARN") or None,
        turn_credential_ttl_seconds=_int("TURN_CREDENTIAL_TTL_SECONDS", 3600),
        join_token_key_cache_seconds=_int("JOIN_TOKEN_KEY_CACHE_SECONDS", 60),
        origin_header_name=(os.environ.get("ORIGIN_HEADER_NAME") or "x-parlor-origin").lower(),
        origin_secret_arn=os.environ.get("ORIGIN_SECRET_ARN") or None,
        origin_previous_secret_arn=os.environ.get("ORIGIN_PREVIOUS_SECRET_ARN") or None,
        origin_secret=os.environ.get("ORIGIN_SECRET") or None,
        hls_bucket=os.environ.get("HLS_BUCKET") or None,
        hls_prefix=(os.environ.get("HLS_PREFIX") or "hls").strip("/"),
        hls_base_url=(os.environ.get("HLS_BASE_URL") or "/hls").rstrip("/"),
        webrtc_listener_limit=_int("WEBRTC_LISTENER_LIMIT", 0),
        replay_retention_days=_int("REPLAY_RETENTION_DAYS", 30),
        hls_settle_seconds=_int("HLS_SETTLE_SECONDS", 30),
    )
