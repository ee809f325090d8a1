"""`make up`: Parlor on one machine.

Starts the embedded AWS (moto server), creates the tables from the models and the queues
from their specs (chalicelib/platform/queues.py, as the CDK stack does), loads demo data, serves
the API and the web client, runs the pumps that stand in for Lambda's event sources
(the media events, the Spaces stream, the alert fan-out and delivery queues), the
WebSocket API, and the media nodes (one, or PARLOR_MEDIA_NODES of them, on ports from
PARLOR_MEDIA_PORT up); prints how to sign in; Ctrl-C stops it all. A media node that
dies is reported, and the rest keeps running, as in AWS while ECS replaces a task."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

import boto3

from local import settings
from local.issuer import LocalIssuer
from local.keys import load_key_set, publish, vapid_key
from local.oauth import LocalAuthorizationServer
from local.pumps import Schedule, SqsPump, StreamPump, queue_with_dlq
from local.secretfiles import kept_secret
from local.turn import start_coturn, turn_urls
from local.web import WebServer, application
from local.websockets import LocalWebsockets

# Lambda's SQS event source keeps a failed record hidden for the queue's visibility
# timeout (six minutes in the stack) before it tries again; here a developer watching
# a retry should not wait that long, so only this differs from the stack's queues.
LOCAL_VISIBILITY_SECONDS = 5
# Ctrl-C gives the media nodes this long to drain, together, before they are killed.
STOP_SECONDS = 15
# The process groups this run started (media nodes, coturn), one per line.
CHILDREN = settings.STATE / "children.pids"
# The bucket the media nodes write each Space's HLS to (cdk/hls.py's, in AWS).
HLS_BUCKET = "parlor-hls"


def _environment(aws_url: str, issuer: LocalIssuer) -> dict[str, str]:
    """What the CDK stack passes the app as stage environment variables, locally."""
    from chalicelib.alerts.webpush import DEFAULT_HOSTS

    return {
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AUTH_ISSUER": issuer.issuer,
        "AUTH_JWKS": json.dumps(issuer.jwks()),
        # The join-token keys are read from the embedded Secrets Manager (_edge).
        "JOIN_TOKEN_PRIVATE_KEY": "",
        "HOSTING_FOLLOWER_THRESHOLD": os.environ.get("HOSTING_FOLLOWER_THRESHOLD", "600"),
        # Any id: local/websockets.py stands in for API Gateway's WebSocket API.
        "WEBSOCKET_API_ID": "local",
        "AVATARS_BUCKET": settings.AVATARS_BUCKET,
        "WEB_PUSH_VAPID_PRIVATE_KEY": vapid_key(settings.VAPID_KEY),
        # The browsers' push services, and push services on this machine (the tests').
        "WEB_PUSH_HOSTS": ",".join((*DEFAULT_HOSTS, "127.0.0.1", "localhost")),
        # The API and the media nodes both read these (the nodes inherit them).
        "HLS_BUCKET": HLS_BUCKET,
        "HLS_BASE_URL": f"http://{settings.HOST}:{settings.WEB_PORT}/hls",
    }


def _make_hls_bucket() -> None:
    """The HLS bucket with the stack's lifecycle rules (which moto keeps, not runs)."""
    from chalicelib.rooms.hls import lifecycle_rules

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=HLS_BUCKET)
    s3.put_bucket_lifecycle_configuration(
        Bucket=HLS_BUCKET, LifecycleConfiguration={"Rules": lifecycle_rules(
            "hls", int(os.environ.get("REPLAY_RETENTION_DAYS", "30")))})


def _make_queues() -> dict[str, str]:
    """Every queue of chalicelib/platform/queues.py: name -> URL. The app's settings get the URLs
    of the queues it sends to, as the stack gives them in AWS."""
    from chalicelib.platform import queues

    urls = {spec.name: queue_with_dlq(spec.name, spec.max_receives,
                                      LOCAL_VISIBILITY_SECONDS)[0]
            for spec in queues.CONSUMED}
    for spec in (queues.SPACE_CHANGES_FAILURES, queues.COMMAND_FAILURES):
        urls[spec.name] = boto3.client("sqs").create_queue(QueueName=spec.name)["QueueUrl"]
    for spec in queues.CONSUMED:
        if spec.url_variable:
            os.environ[spec.url_variable] = urls[spec.name]
    return urls


def _make_push_applications() -> None:
    """The SNS platform applications the stack makes when given push credentials. The
    embedded SNS accepts any credential, so devices registered locally get endpoints and
    pushes are published (and go nowhere, as nothing delivers them to a phone)."""
    sns = boto3.client("sns")
    for platform, variable in (("APNS", "APNS_APPLICATION_ARN"), ("GCM", "FCM_APPLICATION_ARN")):
        os.environ[variable] = sns.create_platform_application(
            Name=f"parlor-local-{platform.lower()}", Platform=platform,
            Attributes={"PlatformCredential": "local"})["PlatformApplicationArn"]


def _edge() -> tuple[str, subprocess.Popen[bytes] | None]:
    """What stands at the edge in AWS, locally: the join-token key set and TURN's shared
    secret in (the embedded) Secrets Manager, the origin's secret that the web origin
    signs API requests with, and coturn. Returns the public key set's ARN and coturn."""
    secretsmanager = boto3.client("secretsmanager")
    keys = load_key_set(settings.JOIN_TOKEN_KEYS, settings.JOIN_TOKEN_KEY)
    private_arn, public_arn = publish(secretsmanager, keys)
    os.environ.update({
        "JOIN_TOKEN_SECRET_ARN": private_arn,
        "ORIGIN_HEADER_NAME": settings.ORIGIN_HEADER,
        "ORIGIN_SECRET": kept_secret(settings.ORIGIN_SECRET),
    })
    secret = kept_secret(settings.TURN_SECRET)
    coturn = start_coturn(settings.STATE, settings.HOST, settings.TURN_PORT,
                          settings.TURN_RELAY_PORTS, secret)
    if coturn is None:
        print("coturn (turnserver) is not installed: running without TURN "
              "(apt-get install coturn)", flush=True)
        return public_arn, None
    urls = turn_urls(settings.HOST, settings.TURN_PORT)
    print(f"TURN server (coturn): {', '.join(urls)}; its log: "
          f"{settings.STATE / 'turnserver.log'}", flush=True)
    os.environ.update({
        "TURN_URLS": json.dumps(urls),
        "TURN_SECRET_ARN": secretsmanager.create_secret(
            Name="parlor-turn-secret", SecretString=secret)["ARN"],
    })
    return public_arn, coturn


def _start_pumps(handlers: Any, urls: dict[str, str]) -> list[Any]:
    """Lambda's event sources, locally: each feeds the handler the stack wires to it, and
    the schedule calls the abandoned-Space sweep (every minute in AWS) more often."""
    from chalicelib.platform import queues
    from chalicelib.platform.models import Member, Space

    consumers = {
        queues.MEDIA_EVENTS: (handlers.handle_media_events, 10),
        queues.ALERT_FANOUT: (handlers.fan_out_alerts, 1),
        queues.ALERT_DELIVERY: (handlers.deliver_alerts, 2),
    }
    pumps: list[Any] = [SqsPump(spec.name, urls[spec.name], handler, batch_size=size)
                        for spec, (handler, size) in consumers.items()]
    pumps.append(StreamPump("space-changes", Space.Meta.table_name,
                            handlers.handle_space_changes,
                            max_retries=queues.STREAM_MAX_RETRIES,
                            on_failure_queue_url=urls[queues.SPACE_CHANGES_FAILURES.name]))
    for name, table, handler in (
            ("space-commands", Space.Meta.table_name, handlers.dispatch_space_commands),
            ("member-commands", Member.Meta.table_name, handlers.dispatch_member_commands)):
        pumps.append(StreamPump(name, table, handler, max_retries=queues.STREAM_MAX_RETRIES,
                                on_failure_queue_url=urls[queues.COMMAND_FAILURES.name]))
    pumps.append(Schedule("abandoned-spaces", handlers.end_abandoned_spaces,
                          settings.SWEEP_SECONDS))
    pumps.append(Schedule("settle-hls", handlers.settle_hls, settings.SWEEP_SECONDS))
    return [pump.start() for pump in pumps]


def _node_id(index: int) -> str:
    return "node-local" if settings.MEDIA_NODES == 1 else f"node-local-{index + 1}"


def _start_media_node(index: int, public_keys_arn: str,
                      events_url: str) -> subprocess.Popen[bytes]:
    """Media node `index` (of PARLOR_MEDIA_NODES): its own port, id, registry entry and
    command queue (named after its id)."""
    from chalicelib.platform.models import Member, Space

    env = {
        **os.environ,
        "HOST": settings.HOST,
        "PORT": str(settings.MEDIA_PORT + index),
        # Clients reach the node's signaling through the web origin's /media/*, as
        # through CloudFront in AWS.
        "PUBLIC_URL": f"http://{settings.HOST}:{settings.WEB_PORT}",
        # Read from the embedded Secrets Manager, and again when the keys rotate.
        "JOIN_TOKEN_PUBLIC_KEY": "",
        "JOIN_TOKEN_PUBLIC_KEY_SECRET_ARN": public_keys_arn,
        "MEDIA_EVENTS_QUEUE_URL": events_url,
        # The node reads (only) these to reconcile its rooms, as its task role may in AWS.
        "SPACES_TABLE": Space.Meta.table_name,
        "MEMBERS_TABLE": Member.Meta.table_name,
        "NODE_ID": _node_id(index),
        # Ctrl-C should not wait out a cloud-sized drain.
        "DRAIN_TIMEOUT_SECONDS": "3",
    }
    # Its own session: Ctrl-C reaches only this supervisor, which drains the node with
    # SIGTERM as ECS would.
    return subprocess.Popen([sys.executable, "-m", "media_node"], env=env, cwd=settings.ROOT,
                            start_new_session=True)


def _post_to_local_websockets(websocket_api: Any) -> None:
    """Points the app's WebsocketAPI (Chalice's, unchanged) at the local Management API.
    Chalice builds only https endpoints from an API id, so the endpoint is set directly;
    it then keeps it, and every post goes through boto3 as in AWS."""
    websocket_api.session = boto3.Session()
    websocket_api._endpoint = LocalWebsockets.management_endpoint(
        f"http://{settings.HOST}:{settings.WEB_PORT}")


def _wait_for_nodes(nodes: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    """Returns once every node answers and has registered, so the first join finds it."""
    from chalicelib.platform.models import MediaNode

    deadline = time.monotonic() + timeout
    waiting = set(range(len(nodes)))
    while time.monotonic() < deadline and all(node.poll() is None for node in nodes):
        for index in sorted(waiting):
            try:
                url = f"http://{settings.HOST}:{settings.MEDIA_PORT + index}/health"
                with urllib.request.urlopen(url, timeout=2):
                    waiting.discard(index)
            except OSError:
                pass
        if not waiting and MediaNode.count() >= len(nodes):
            return
        time.sleep(0.2)
    raise SystemExit("A media node did not start; see its log above.")


def _banner(users: list[Any], issuer: LocalIssuer) -> str:
    # Through the web origin, which signs what it forwards as CloudFront does: the API's
    # own port refuses requests that skip it.
    api = f"http://{settings.HOST}:{settings.WEB_PORT}/api"
    lines = [
        "",
        "Parlor is running on this machine.",
        f"  open         http://{settings.HOST}:{settings.WEB_PORT}   (the browser client)",
        f"  API          {api}",
        *(f"  media node   http://{settings.HOST}:{settings.MEDIA_PORT + index}"
          f"   ({_node_id(index)})" for index in range(settings.MEDIA_NODES)),
        f"  embedded AWS http://{settings.HOST}:{settings.AWS_PORT}",
        "",
        "Demo users (sign in as one in the browser; for curl: make token USER=<user id>):",
    ]
    for user in users:
        lines.append(f"  {user.user_id:<8} @{user.handle:<6} {user.note}")
    token = issuer.mint("u-alice", ttl_seconds=12 * 3600)
    lines += [
        "",
        "Try it as alice:",
        f"  TOKEN={token}",
        f'  curl -s {api}/me/eligibility -H "Authorization: Bearer $TOKEN"',
        "",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def _log_to_the_terminal() -> None:
    """What Lambda would send to CloudWatch Logs: the app's and the pumps' messages."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    for name in ("chalicelib", "parlor"):
        logging.getLogger(name).setLevel(logging.INFO)


def _remember(*groups: int) -> None:
    """The embedded AWS, the media nodes and coturn run in sessions of their own (Ctrl-C
    reaches them through this process, which drains the nodes first): their groups are
    written down, so that whoever has to SIGKILL this process can still stop them
    (tests/localrun.py)."""
    with CHILDREN.open("a") as out:
        out.writelines(f"{group}\n" for group in groups)


def main() -> None:
    _log_to_the_terminal()
    settings.STATE.mkdir(exist_ok=True)
    issuer = LocalIssuer.load_or_create(settings.ISSUER_KEY)

    from local.aws import AwsProcess, create_tables

    CHILDREN.unlink(missing_ok=True)
    aws = AwsProcess(settings.HOST, settings.AWS_PORT)
    _remember(aws.pid)
    aws.start()
    os.environ.update(_environment(aws.url, issuer))
    public_keys_arn, coturn = _edge()
    if coturn is not None:
        _remember(coturn.pid)
    create_tables()
    boto3.client("s3").create_bucket(Bucket=settings.AVATARS_BUCKET)
    _make_hls_bucket()
    urls = _make_queues()
    _make_push_applications()

    from local.api import server
    from local.seed import seed

    print("Loading demo data...", flush=True)
    users = seed()
    api = server(settings.HOST, settings.API_PORT)
    threading.Thread(target=api.serve_forever, daemon=True, name="api").start()
    import app as handlers
    from chalicelib.platform.queues import MEDIA_EVENTS

    events_url = urls[MEDIA_EVENTS.name]
    pumps = _start_pumps(handlers, urls)
    demo = [{"user_id": u.user_id, "handle": u.handle, "note": u.note} for u in users]
    websockets = LocalWebsockets(handlers.ws_connect, handlers.ws_disconnect)
    _post_to_local_websockets(handlers.app.websocket_api)
    media_urls = [f"http://{settings.HOST}:{settings.MEDIA_PORT + index}"
                  for index in range(settings.MEDIA_NODES)]
    web_server = WebServer(application(
        LocalAuthorizationServer(issuer, settings.STATE),
        f"http://{settings.HOST}:{settings.API_PORT}", media_urls, demo, websockets,
        api_signature=(settings.ORIGIN_HEADER, os.environ["ORIGIN_SECRET"]),
        avatars_bucket=settings.AVATARS_BUCKET, hls_bucket=HLS_BUCKET),
        settings.HOST, settings.WEB_PORT).start()
    nodes = [_start_media_node(index, public_keys_arn, events_url)
             for index in range(settings.MEDIA_NODES)]
    _remember(*(node.pid for node in nodes))
    _wait_for_nodes(nodes)
    print(_banner(users, issuer), flush=True)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    told: set[int] = set()
    while not stop.is_set():
        for index, node in enumerate(nodes):
            if node.poll() is not None and index not in told:
                # As in AWS while ECS replaces a task: the rest goes on, and the Spaces
                # the node held move to another node at their next join, or end.
                print(f"The media node {_node_id(index)} exited with {node.returncode}; "
                      "the API, the other nodes and the web client keep running. "
                      "Ctrl-C stops everything.", flush=True)
                told.add(index)
        stop.wait(0.5)
    print("Stopping...", flush=True)
    for node in nodes:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for node in nodes:
        try:
            node.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            # The supervisor and its workers: the node's whole group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGKILL)
            node.wait()
    if coturn is not None:
        coturn.terminate()
        try:
            coturn.wait(timeout=5)
        except subprocess.TimeoutExpired:
            coturn.kill()
    CHILDREN.unlink(missing_ok=True)
    for pump in pumps:
        pump.stop()
    web_server.stop()
    api.shutdown()
    aws.stop()
    time.sleep(0.1)
    print("Stopped.", flush=True)


if __name__ == "__main__":
    main()
