"""Parlor's control plane: the routes of the Spaces API. Each route reads its input,
calls one domain function in chalicelib, and returns its result."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from chalice import Chalice, Rate, Response
from chalice.app import CloudWatchEvent, DynamoDBEvent, Request, SQSEvent, WebsocketEvent

from chalicelib.access import origin
from chalicelib.access.auth import Principal, verify_bearer
from chalicelib.alerts import (
    connections,
    delivery,
    devices,
    recipients,
    timeline,
    triggers,
    webpush,
)
from chalicelib.media import commands, jointoken, placement, presence
from chalicelib.platform import logs, models, queues
from chalicelib.platform import validation as v
from chalicelib.platform.config import ConfigError
from chalicelib.platform.errors import ApiError, NotFound
from chalicelib.rooms import abandoned, eligibility, hls, reminders, roles, spaces, upcoming
from chalicelib.social import avatars, follows, people, preferences

# Logs are Powertools' JSON (chalicelib/platform/logs.py), not Chalice's plain text.
app = Chalice(app_name=logs.SERVICE, configure_logs=False)
# The tables this deployment made (the stack's names), once per process.
models.use_tables(os.environ)
logs.structure()
app.register_middleware(logs.with_lambda_context, "all")
# Every route takes any Content-Type, so that a request without a body is never judged
# by one (aiohttp sends application/octet-stream on a body-less POST); `body` refuses a
# body that is not JSON with 415 itself.
route = functools.partial(app.route, content_types=["*/*"])
# The bar's live updates go out over Chalice's WebSocket API.
app.experimental_feature_flags.update(["WEBSOCKETS"])

_caller: ContextVar[Principal] = ContextVar("caller")

_CHALICE_ERRORS = {
    "BadRequestError": "bad_request",
    "UnsupportedMediaType": "unsupported_media_type",
    "MethodNotAllowedError": "method_not_allowed",
    "NotFoundError": "not_found",
}


@app.middleware("http")
def authenticate_and_shape_errors(event: Request, get_response: Callable[..., Response]) -> Any:
    """Every request comes through the site's origin (when the deployment says which) and
    has a verified caller; every error leaves in one JSON shape."""
    try:
        origin.require_signed(event.headers)
        _caller.set(verify_bearer(event.headers.get("authorization")))
        response = get_response(event)
    except ApiError as exc:
        return Response(body=exc.body(), status_code=exc.status)
    except ConfigError:
        logs.logger.exception("configuration error")
        return Response(body={"error": "misconfigured", "message": "The service is misconfigured"},
                        status_code=500)
    body = response.body
    if response.status_code >= 400 and isinstance(body, dict) and "Code" in body:
        code = _CHALICE_ERRORS.get(body["Code"], "internal_error")
        return Response(body={"error": code, "message": body.get("Message", "")},
                        status_code=response.status_code, headers=response.headers)
    return response


def caller() -> str:
    return _caller.get().user_id


def request() -> Request:
    current = app.current_request
    assert current is not None
    return current


def body(*fields: str) -> dict[str, Any]:
    raw = request().raw_body
    raw = raw.encode() if isinstance(raw, str) else raw
    if raw:
        v.require_json_content(request().headers.get("content-type"))
    return v.json_object(raw, set(fields))


def query() -> dict[str, str]:
    return v.single_values(request().query_params)


def space_id_of(value: str) -> str:
    return v.path_id(value, "space_id", v.SPACE_ID)


def user_id_of(value: str) -> str:
    return v.path_id(value, "user_id", v.USER_ID)


# Profiles and the social graph


@route("/me", methods=["GET"])
def get_me() -> dict[str, Any]:
    user = follows.find_user(caller())
    if user is None:
        raise NotFound("You have no profile yet (PUT /me)", code="profile_not_found")
    return follows.profile_view(user)


@route("/me", methods=["PUT"])
def put_me() -> dict[str, Any]:
    data = body("handle", "display_name", "bio")
    handle = v.required_string(data, "handle", max_len=15, pattern=follows.HANDLE)
    name = v.required_string(data, "display_name", max_len=follows.DISPLAY_NAME_MAX)
    bio = v.string(data, "bio", required=False, min_len=0, max_len=people.BIO_MAX)
    return follows.profile_view(people.save(caller(), handle, name, bio))


@route("/me/avatar", methods=["POST"])
def start_avatar_upload() -> Response:
    content_type = v.required_string(body("content_type"), "content_type", max_len=32)
    return Response(body=avatars.upload(caller(), content_type), status_code=201)


@route("/me/avatar", methods=["PUT"])
def set_avatar() -> dict[str, Any]:
    avatars.confirm(caller(), v.required_string(body("key"), "key", max_len=300))
    return follows.profile_view(follows.get_user(caller()))


@route("/me/avatar", methods=["DELETE"])
def remove_avatar() -> dict[str, Any]:
    avatars.remove(caller())
    return follows.profile_view(follows.get_user(caller()))


@route("/users", methods=["GET"])
def search_people() -> dict[str, Any]:
    params = query()
    text = params.get("q", "")
    if not 1 <= len(text) <= 50:
        raise v.InvalidField("q", "'q' is 1 to 50 characters")
    return people.search(text, people.search_limit(params.get("limit")))


@route("/users/{user_id}/relationship", methods=["GET"])
def get_relationship(user_id: str) -> dict[str, Any]:
    return people.relationship(caller(), user_id_of(user_id))


@route("/me/eligibility", methods=["GET"])
def get_eligibility() -> dict[str, Any]:
    return eligibility.evaluate(follows.find_user(caller())).view()


@route("/users/{user_id}", methods=["GET"])
def get_user(user_id: str) -> dict[str, Any]:
    return follows.profile_view(follows.get_user(user_id_of(user_id)))


@route("/users/by-handle/{handle}", methods=["GET"])
def get_user_by_handle(handle: str) -> dict[str, Any]:
    return follows.profile_view(follows.user_by_handle(handle))


@route("/users/{user_id}/follow", methods=["PUT"])
def follow(user_id: str) -> dict[str, Any]:
    target = user_id_of(user_id)
    follows.follow(caller(), target, blocked=preferences.is_blocked(target, caller()))
    return {"following": True, "user": follows.profile_view(follows.get_user(target))}


@route("/users/{user_id}/follow", methods=["DELETE"])
def unfollow(user_id: str) -> dict[str, Any]:
    target = user_id_of(user_id)
    follows.unfollow(caller(), target)
    return {"following": False, "user": follows.profile_view(follows.get_user(target))}


@route("/users/{user_id}/followers", methods=["GET"])
def list_followers(user_id: str) -> dict[str, Any]:
    return follows.followers(user_id_of(user_id), query())


@route("/users/{user_id}/following", methods=["GET"])
def list_following(user_id: str) -> dict[str, Any]:
    return follows.following(user_id_of(user_id), query())


@route("/users/{user_id}/suspension", methods=["PUT"])
def suspend(user_id: str) -> dict[str, Any]:
    data = body("suspended")
    flag = v.boolean(data, "suspended")
    if flag is None:
        raise v.InvalidField("suspended", "'suspended' is required")
    user = follows.set_suspended(_caller.get().is_admin, user_id_of(user_id), flag)
    return follows.profile_view(user)


@route("/users/{user_id}/hosting", methods=["PUT"])
def allow_hosting(user_id: str) -> dict[str, Any]:
    flag = v.boolean(body("allowed"), "allowed")
    if flag is None:
        raise v.InvalidField("allowed", "'allowed' is required")
    user = follows.set_hosting_allowed(_caller.get().is_admin, user_id_of(user_id), flag)
    return {"user_id": user.user_id, "allowed": bool(user.hosting_allowed),
            "eligibility": eligibility.evaluate(user).view()}


# What the caller hears about: the bar, devices, push, blocks and mutes


@route("/me/timeline/spaces", methods=["GET"])
def get_timeline_spaces() -> dict[str, Any]:
    return timeline.bar(caller())


@route("/me/devices", methods=["GET"])
def list_devices() -> dict[str, Any]:
    return devices.listed(caller())


@route("/me/devices", methods=["POST"])
def register_device() -> Response:
    data = body("platform", "token")
    platform = v.required_string(data, "platform", max_len=8)
    if platform not in devices.PLATFORMS:
        raise v.InvalidField("platform", "'platform' is 'apns', 'fcm' or 'web'")
    token = v.required_string(data, "token", max_len=devices.TOKEN_MAX)
    return Response(body=devices.register(caller(), platform, token), status_code=201)


@route("/web-push/key", methods=["GET"])
def get_web_push_key() -> dict[str, Any]:
    """The applicationServerKey browsers subscribe with (the VAPID public key)."""
    return {"public_key": webpush.require_keys().public_key}


@route("/me/devices/{device_id}", methods=["DELETE"])
def remove_device(device_id: str) -> dict[str, Any]:
    return devices.remove(caller(), v.path_id(device_id, "device_id", v.DEVICE_ID))


@route("/me/alert-settings", methods=["GET"])
def get_alert_settings() -> dict[str, Any]:
    return preferences.settings_view(caller())


@route("/me/alert-settings", methods=["PUT"])
def put_alert_settings() -> dict[str, Any]:
    enabled = v.boolean(body("push_enabled"), "push_enabled")
    if enabled is None:
        raise v.InvalidField("push_enabled", "'push_enabled' is required")
    return preferences.set_push(caller(), enabled)


@route("/me/blocks", methods=["GET"])
def list_blocks() -> dict[str, Any]:
    return preferences.listed(caller(), preferences.BLOCK, query())


@route("/me/blocks/{user_id}", methods=["PUT"])
def block(user_id: str) -> dict[str, Any]:
    return preferences.restrict(caller(), preferences.BLOCK, user_id_of(user_id))


@route("/me/blocks/{user_id}", methods=["DELETE"])
def unblock(user_id: str) -> dict[str, Any]:
    return preferences.unrestrict(caller(), preferences.BLOCK, user_id_of(user_id))


@route("/me/muted", methods=["GET"])
def list_muted() -> dict[str, Any]:
    return preferences.listed(caller(), preferences.MUTE, query())


@route("/me/muted/{user_id}", methods=["PUT"])
def mute_account(user_id: str) -> dict[str, Any]:
    return preferences.restrict(caller(), preferences.MUTE, user_id_of(user_id))


@route("/me/muted/{user_id}", methods=["DELETE"])
def unmute_account(user_id: str) -> dict[str, Any]:
    return preferences.unrestrict(caller(), preferences.MUTE, user_id_of(user_id))


@route("/me/spaces/upcoming", methods=["GET"])
def list_upcoming() -> dict[str, Any]:
    return upcoming.from_followed(caller())


@route("/users/{user_id}/spaces/scheduled", methods=["GET"])
def list_scheduled(user_id: str) -> dict[str, Any]:
    return spaces.list_scheduled(user_id_of(user_id), query())


@route("/users/{user_id}/replays", methods=["GET"])
def list_replays(user_id: str) -> dict[str, Any]:
    return hls.list_replays(user_id_of(user_id), query())


# Spaces


@route("/spaces", methods=["POST"])
def create_space() -> Response:
    data = body("title", "topics", "scheduled_start", "record")
    title = v.required_string(data, "title", max_len=spaces.TITLE_MAX)
    topics = v.string_list(data, "topics", max_items=spaces.TOPICS_MAX,
                           max_len=spaces.TOPIC_MAX_LEN)
    start = v.number(data, "scheduled_start")
    space = spaces.create(caller(), title, topics, start, bool(v.boolean(data, "record")))
    return Response(body=hls.detail(space, caller()), status_code=201)


@route("/spaces/live", methods=["GET"])
def list_live() -> dict[str, Any]:
    return spaces.list_live(query())


@route("/spaces/{space_id}", methods=["GET"])
def get_space(space_id: str) -> dict[str, Any]:
    return hls.detail(spaces.load(space_id_of(space_id)), caller())


@route("/spaces/{space_id}/start", methods=["POST"])
def start_space(space_id: str) -> dict[str, Any]:
    record = v.boolean(body("record"), "record")
    return hls.detail(spaces.start(caller(), space_id_of(space_id), record), caller())


@route("/spaces/{space_id}/end", methods=["POST"])
def end_space(space_id: str) -> dict[str, Any]:
    return hls.detail(spaces.end(caller(), space_id_of(space_id)), caller())


@route("/spaces/{space_id}/reminder", methods=["GET"])
def get_reminder(space_id: str) -> dict[str, Any]:
    return reminders.status(space_id_of(space_id), caller())


@route("/spaces/{space_id}/reminder", methods=["PUT"])
def set_reminder(space_id: str) -> dict[str, Any]:
    return reminders.remind(space_id_of(space_id), caller())


@route("/spaces/{space_id}/reminder", methods=["DELETE"])
def unset_reminder(space_id: str) -> dict[str, Any]:
    return reminders.forget(space_id_of(space_id), caller())


@route("/spaces/{space_id}/join", methods=["POST"])
def join_space(space_id: str) -> dict[str, Any]:
    transport = v.string(body("transport"), "transport", required=False, max_len=10)
    if transport is not None and transport not in placement.TRANSPORTS:
        raise v.InvalidField("transport", "'transport' is 'webrtc' or 'hls'")
    return placement.join(space_id_of(space_id), caller(), transport or placement.WEBRTC)


@route("/spaces/{space_id}/recording", methods=["DELETE"])
def delete_recording(space_id: str) -> dict[str, Any]:
    return hls.delete_recording(caller(), space_id_of(space_id))


@route("/spaces/{space_id}/leave", methods=["POST"])
def leave_space(space_id: str) -> dict[str, Any]:
    return roles.leave(space_id_of(space_id), caller())


# Roles: requests to speak, invitations, moderation


@route("/spaces/{space_id}/requests", methods=["POST"])
def request_to_speak(space_id: str) -> dict[str, Any]:
    return roles.request_to_speak(space_id_of(space_id), caller())


@route("/spaces/{space_id}/requests", methods=["DELETE"])
def cancel_request(space_id: str) -> dict[str, Any]:
    return roles.cancel_request(space_id_of(space_id), caller())


@route("/spaces/{space_id}/requests", methods=["GET"])
def list_requests(space_id: str) -> dict[str, Any]:
    return roles.list_requests(space_id_of(space_id), caller())


@route("/spaces/{space_id}/requests/{user_id}/approve", methods=["POST"])
def approve_request(space_id: str, user_id: str) -> dict[str, Any]:
    return roles.approve(space_id_of(space_id), caller(), user_id_of(user_id))


@route("/spaces/{space_id}/requests/{user_id}/deny", methods=["POST"])
def deny_request(space_id: str, user_id: str) -> dict[str, Any]:
    return roles.deny(space_id_of(space_id), caller(), user_id_of(user_id))


@route("/spaces/{space_id}/invitations/{user_id}", methods=["POST"])
def invite(space_id: str, user_id: str) -> dict[str, Any]:
    return roles.invite(space_id_of(space_id), caller(), user_id_of(user_id))


@route("/spaces/{space_id}/invitation", methods=["POST"])
def answer_invitation(space_id: str) -> dict[str, Any]:
    accept = v.boolean(body("accept"), "accept")
    if accept is None:
        raise v.InvalidField("accept", "'accept' is required")
    return roles.answer_invitation(space_id_of(space_id), caller(), accept)


@route("/spaces/{space_id}/co-hosts", methods=["POST"])
def add_co_host(space_id: str) -> dict[str, Any]:
    target = v.required_string(body("user_id"), "user_id", max_len=128, pattern=v.USER_ID)
    return roles.add_co_host(space_id_of(space_id), caller(), target)


@route("/spaces/{space_id}/members/{user_id}/demote", methods=["POST"])
def demote(space_id: str, user_id: str) -> dict[str, Any]:
    return roles.demote(space_id_of(space_id), caller(), user_id_of(user_id))


@route("/spaces/{space_id}/members/{user_id}/mute", methods=["POST"])
def mute(space_id: str, user_id: str) -> dict[str, Any]:
    return roles.mute(space_id_of(space_id), caller(), user_id_of(user_id))


@route("/spaces/{space_id}/members/{user_id}/remove", methods=["POST"])
def remove(space_id: str, user_id: str) -> dict[str, Any]:
    return roles.remove(space_id_of(space_id), caller(), user_id_of(user_id))


@route("/spaces/{space_id}/me/mute", methods=["PUT"])
def set_own_mute(space_id: str) -> dict[str, Any]:
    muted = v.boolean(body("muted"), "muted")
    if muted is None:
        raise v.InvalidField("muted", "'muted' is required")
    return roles.set_own_mute(space_id_of(space_id), caller(), muted)


@route("/spaces/{space_id}/mute-all", methods=["POST"])
def mute_all(space_id: str) -> dict[str, Any]:
    return roles.mute_all(space_id_of(space_id), caller())


# Events from the media nodes (docs/media-contract.md). The CDK stack points this event
# source at the queue it creates (cdk/api.py); the name here is the local runtime's.

_media_events = BatchProcessor(event_type=EventType.SQS)


@app.on_sqs_message(queue_arn=queues.MEDIA_EVENTS.placeholder_arn, batch_size=10)
def handle_media_events(event: SQSEvent) -> dict[str, Any]:
    """Records presence; a record that fails is reported back alone (partial batch
    failure), so SQS retries only it and, after a few tries, moves it to the DLQ."""
    return dict(process_partial_response(
        event=event.to_dict(), record_handler=presence.record_from_sqs, processor=_media_events))


# Alerts (chalicelib/alerts/messages.py has the picture). As for the media events, the CDK stack
# points each event source at the stream or queue it creates (cdk/alerts.py) and asks
# for partial batch responses; the names here are the local runtime's.

# A batch whose every record failed is reported like any other: record by record.
_space_changes = BatchProcessor(event_type=EventType.DynamoDBStreams,
                                raise_on_entire_batch_failure=False)
_fanout_pages = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
_delivery_pages = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@app.on_dynamodb_record(stream_arn=queues.SPACES_STREAM_PLACEHOLDER_ARN, batch_size=100,
                        starting_position="LATEST")
def handle_space_changes(event: DynamoDBEvent) -> dict[str, Any]:
    """Starts the fan-outs a Space's change calls for; a failing record is reported
    alone, and Lambda retries from it."""
    return dict(process_partial_response(
        event=event.to_dict(), record_handler=triggers.record_from_stream,
        processor=_space_changes))


@app.on_sqs_message(queue_arn=queues.ALERT_FANOUT.placeholder_arn, batch_size=1)
def fan_out_alerts(event: SQSEvent) -> dict[str, Any]:
    """One page of recipients per message (hence a batch of one: a short invocation)."""
    return dict(process_partial_response(
        event=event.to_dict(), record_handler=recipients.record_from_sqs,
        processor=_fanout_pages))


@app.on_sqs_message(queue_arn=queues.ALERT_DELIVERY.placeholder_arn, batch_size=2)
def deliver_alerts(event: SQSEvent) -> dict[str, Any]:
    channel = connections.Channel(app.websocket_api)
    return dict(process_partial_response(
        event=event.to_dict(),
        record_handler=lambda record: delivery.record_from_sqs(record, channel),
        processor=_delivery_pages))


# Commands to the media nodes, derived from committed changes (chalicelib/media/commands.py).
# A record whose command cannot be sent fails alone and is retried; the CDK stack points
# both sources at the tables' streams and at an on-failure queue (cdk/commands.py).

_member_changes = BatchProcessor(event_type=EventType.DynamoDBStreams,
                                 raise_on_entire_batch_failure=False)
_space_commands = BatchProcessor(event_type=EventType.DynamoDBStreams,
                                 raise_on_entire_batch_failure=False)


@app.on_dynamodb_record(stream_arn=queues.MEMBERS_STREAM_PLACEHOLDER_ARN, batch_size=100,
                        starting_position="LATEST")
def dispatch_member_commands(event: DynamoDBEvent) -> dict[str, Any]:
    return dict(process_partial_response(
        event=event.to_dict(), record_handler=commands.record_from_members_stream,
        processor=_member_changes))


@app.on_dynamodb_record(stream_arn=queues.SPACES_STREAM_PLACEHOLDER_ARN, batch_size=100,
                        starting_position="LATEST")
def dispatch_space_commands(event: DynamoDBEvent) -> dict[str, Any]:
    return dict(process_partial_response(
        event=event.to_dict(), record_handler=commands.record_from_spaces_stream,
        processor=_space_commands))


@app.schedule(Rate(1, unit=Rate.MINUTES))
def end_abandoned_spaces(event: CloudWatchEvent) -> dict[str, Any]:
    """Live Spaces nobody on stage is connected to any more end (chalicelib/rooms/abandoned.py)."""
    return {"ended": abandoned.sweep()}


@app.schedule(Rate(1, unit=Rate.MINUTES))
def settle_hls(event: CloudWatchEvent) -> dict[str, Any]:
    """Ended Spaces whose node never said its HLS finished get their replay written, or
    their segments deleted (chalicelib/rooms/hls.py)."""
    return {"settled": hls.settle_due()}


@app.on_ws_connect()
def ws_connect(event: WebsocketEvent) -> Response | None:
    """Admits a client to the bar's live updates: `?token=<bearer JWT>`."""
    try:
        connections.connect(event.connection_id,
                            event.to_dict().get("queryStringParameters"),
                            close=app.websocket_api.close)
    except ApiError as exc:
        return Response(body=exc.body(), status_code=exc.status)
    return None


@app.on_ws_disconnect()
def ws_disconnect(event: WebsocketEvent) -> None:
    connections.disconnect(event.connection_id)


# Deployment: the custom resource that makes the join-token key pair (cdk/keys.py).


@app.lambda_function(name="provision_join_token_keys")
def provision_join_token_keys(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # The deploy-time key provisioner also makes the VAPID pair (cdk/browser.py).
    if event.get("ResourceProperties", {}).get("Keys") == webpush.KEYS_KIND:
        return webpush.provision_key_pair(event)
    return jointoken.provision_key_pair(event)
