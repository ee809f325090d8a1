"""The data design: one PynamoDB model per item type, one table per model.

Each model's table has a default name (what the local runtime and the tests use);
`use_tables` puts in the names the environment gives, once, when the app starts (the
CDK stack passes the names it made), not when this module is imported. These classes
are the single definition of keys and indexes: the CDK data construct and the local
runtime both derive their tables from them (see `table_specs`).

Counters that limits depend on (speakers, co-hosts, followers) live on the parent
item and change only inside transactions with a condition, never read-then-write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model


class User(Model):
    """A profile. `live_space_id` is the host's lock: set while they host a live Space."""

    class Meta:
        table_name = "parlor-users"

    user_id = UnicodeAttribute(hash_key=True)
    handle = UnicodeAttribute()
    display_name = UnicodeAttribute()
    follower_count = NumberAttribute(default=0)
    following_count = NumberAttribute(default=0)
    suspended = BooleanAttribute(default=False)
    # On the administrators' host allowlist: may host whatever their follower count.
    hosting_allowed = BooleanAttribute(null=True)
    live_space_id = UnicodeAttribute(null=True)
    created_at = NumberAttribute()
    bio = UnicodeAttribute(null=True)
    # The avatar's object key in the avatars bucket (profiles.py); served at /<key>.
    avatar_key = UnicodeAttribute(null=True)


class PeopleIndexEntry(Model):
    """Finds people by a prefix of their handle or of a word of their name without a
    scan (profiles.py). One item per normalized token and per bucket: `bucket` is the
    token's first one, two or three characters, and a search for "al" or "alic" queries
    one bucket with begins_with on `entry` (<token>#<user id>)."""

    class Meta:
        table_name = "parlor-people-index"

    bucket = UnicodeAttribute(hash_key=True)
    entry = UnicodeAttribute(range_key=True)
    user_id = UnicodeAttribute()


class Handle(Model):
    """Claims a handle for one user, so two accounts can never share one."""

    class Meta:
        table_name = "parlor-handles"

    handle_key = UnicodeAttribute(hash_key=True)  # the handle, lower-cased
    user_id = UnicodeAttribute()


class FollowersIndex(GlobalSecondaryIndex["Follow"]):
    class Meta:
        index_name = "followers"
        projection = KeysOnlyProjection()

    followee_id = UnicodeAttribute(hash_key=True)
    follower_id = UnicodeAttribute(range_key=True)


class Follow(Model):
    """`follower_id` follows `followee_id`. The table key lists whom a user follows;
    the `followers` index lists a user's followers (the alert fan-out reads it)."""

    class Meta:
        table_name = "parlor-follows"

    follower_id = UnicodeAttribute(hash_key=True)
    followee_id = UnicodeAttribute(range_key=True)
    created_at = NumberAttribute()
    followers = FollowersIndex()


class LiveIndex(GlobalSecondaryIndex["Space"]):
    """Sparse: only live Spaces carry `live_partition`, newest first by `started_at`."""

    class Meta:
        index_name = "live"
        projection = AllProjection()

    live_partition = UnicodeAttribute(hash_key=True)
    started_at = NumberAttribute(range_key=True)


class ScheduledIndex(GlobalSecondaryIndex["Space"]):
    """Sparse: only scheduled Spaces carry `scheduled_host_id`, soonest first."""

    class Meta:
        index_name = "scheduled"
        projection = AllProjection()

    scheduled_host_id = UnicodeAttribute(hash_key=True)
    scheduled_start = NumberAttribute(range_key=True)


class HlsPendingIndex(GlobalSecondaryIndex["Space"]):
    """Sparse: ended Spaces whose HLS is not settled yet (hls.py): only those carry both
    `hls_pending` and `ended_at`."""

    class Meta:
        index_name = "hls_pending"
        projection = KeysOnlyProjection()

    hls_pending = UnicodeAttribute(hash_key=True)
    ended_at = NumberAttribute(range_key=True)


class ReplaysIndex(GlobalSecondaryIndex["Space"]):
    """Sparse: a host's replays (only Spaces with a replay carry `replay_host_id`),
    newest first by `ended_at`."""

    class Meta:
        index_name = "replays"
        projection = AllProjection()

    replay_host_id = UnicodeAttribute(hash_key=True)
    ended_at = NumberAttribute(range_key=True)


LIVE_PARTITION = "live"
HLS_PENDING = "pending"


class Space(Model):
    class Meta:
        table_name = "parlor-spaces"
        stream_view_type = "NEW_AND_OLD_IMAGES"

    space_id = UnicodeAttribute(hash_key=True)
    host_id = UnicodeAttribute()
    title = UnicodeAttribute()
    topics = ListAttribute(of=UnicodeAttribute, default=list)
    state = UnicodeAttribute()  # scheduled | live | ended
    created_at = NumberAttribute()
    scheduled_start = NumberAttribute(null=True)
    started_at = NumberAttribute(null=True)
    ended_at = NumberAttribute(null=True)
    node_id = UnicodeAttribute(null=True)
    co_host_count = NumberAttribute(default=0)
    speaker_count = NumberAttribute(default=0)
    listener_count = NumberAttribute(default=0)
    live_partition = UnicodeAttribute(null=True)
    scheduled_host_id = UnicodeAttribute(null=True)
    # Who is "speaking in the Space": on stage and connected to the node. Maintained from
    # the media node's events; the alerts read its changes on the table's stream.
    on_stage_connected = UnicodeSetAttribute(null=True)
    # Since when nobody on stage has been connected (absent while someone is): a live
    # Space left so for ABANDONED_SPACE_SECONDS ends by itself (abandoned.py).
    stage_empty_since = NumberAttribute(null=True)
    # HLS and the replay (hls.py). `record`: the Space is kept as a replay when it ends.
    # `hls_pending` (HLS_PENDING): set when it goes live, removed once its HLS is
    # settled after the end (the replay written, or the segments deleted).
    record = BooleanAttribute(null=True)
    hls_pending = UnicodeAttribute(null=True)
    replay_state = UnicodeAttribute(null=True)  # ready | deleted
    replay_seconds = NumberAttribute(null=True)
    replay_expires_at = NumberAttribute(null=True)
    replay_host_id = UnicodeAttribute(null=True)
    live = LiveIndex()
    scheduled = ScheduledIndex()
    hls_settling = HlsPendingIndex()
    replays = ReplaysIndex()


class StageIndex(GlobalSecondaryIndex["Member"]):
    """Sparse: members on stage (host, co-hosts, speakers) carry `stage_space_id`."""

    class Meta:
        index_name = "stage"
        projection = AllProjection()

    stage_space_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)


class RequestsIndex(GlobalSecondaryIndex["Member"]):
    """Sparse: listeners with a pending request to speak carry `request_space_id`."""

    class Meta:
        index_name = "requests"
        projection = AllProjection()

    request_space_id = UnicodeAttribute(hash_key=True)
    requested_at = NumberAttribute(range_key=True)


class Member(Model):
    """A user's place in one Space: role, pending request or invitation, mute, removal.

    A removed member keeps the item (role `removed`) so that they cannot rejoin.

    `authority` versions what the media node acts on (role, mute, removal): every change
    of those sets it higher (authority.py), join tokens carry it, and the commands the
    table's stream yields carry it, so a node can tell an old statement from a new one.
    """

    class Meta:
        table_name = "parlor-members"
        stream_view_type = "NEW_AND_OLD_IMAGES"

    space_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)
    role = UnicodeAttribute()  # host | co_host | speaker | listener | removed
    muted = BooleanAttribute(default=False)
    authority = NumberAttribute(default=0)
    invited = BooleanAttribute(default=False)
    requested_at = NumberAttribute(null=True)
    joined_at = NumberAttribute()
    stage_space_id = UnicodeAttribute(null=True)
    request_space_id = UnicodeAttribute(null=True)
    # Presence, from the media node: connected to the audio, speaking now, and the time
    # of the latest event applied (events can arrive out of order).
    connected = BooleanAttribute(default=False)
    speaking = BooleanAttribute(default=False)
    presence_at = NumberAttribute(null=True)
    # A listener seated through HLS is counted in this shard of ListenerCount, not in
    # the Space's `listener_count` (audience.py).
    listener_shard = NumberAttribute(null=True)
    stage = StageIndex()
    requests = RequestsIndex()


class ListenerCount(Model):
    """One shard of a Space's count of listeners seated through HLS (audience.py): a
    join adds to one shard picked at random, a read sums them, so joins by the
    hundred thousand never meet one hot item (the Space's own)."""

    class Meta:
        table_name = "parlor-listener-counts"

    space_id = UnicodeAttribute(hash_key=True)
    shard = NumberAttribute(range_key=True)
    listeners = NumberAttribute(default=0)


class MediaNode(Model):
    """The media node registry. Nodes write their own entry (heartbeats); the control
    plane only reads it to place Spaces. `expires_at` is the table's TTL attribute."""

    class Meta:
        table_name = "parlor-media-nodes"

    node_id = UnicodeAttribute(hash_key=True)
    url = UnicodeAttribute()
    # Where other nodes reach it inside the VPC (forwarded signaling, relay feeds).
    private_url = UnicodeAttribute(null=True)
    command_queue_url = UnicodeAttribute()
    capacity = NumberAttribute(default=1000)
    workers = NumberAttribute(default=1)
    rooms = NumberAttribute(default=0)
    participants = NumberAttribute(default=0)
    # Spaces open on the node that take no more listeners there: placement relays them.
    full_spaces = ListAttribute(of=UnicodeAttribute, default=list)
    # Spaces the node relays for other nodes.
    relayed_spaces = ListAttribute(of=UnicodeAttribute, default=list)
    cpu = NumberAttribute(default=0)
    heartbeat_at = NumberAttribute()
    draining = BooleanAttribute(default=False)
    expires_at = NumberAttribute(null=True)


class TimelineEntry(Model):
    """One line of a user's Spaces bar: `person_id` (someone they follow, or the host of
    a Space they asked to be reminded of) is on stage in `space_id`.

    Written by the alert delivery, one item per user, Space and person, so writing it
    twice changes nothing; the bar reads the user's partition and checks each Space's
    current state, so an ended Space or a person who left the stage drops out at once.
    Entries are deleted when the Space ends; `expires_at` catches any that are not."""

    class Meta:
        table_name = "parlor-timeline"

    user_id = UnicodeAttribute(hash_key=True)
    entry_key = UnicodeAttribute(range_key=True)  # <space_id>#<person_id>
    space_id = UnicodeAttribute()
    person_id = UnicodeAttribute()
    host_id = UnicodeAttribute()
    created_at = NumberAttribute()
    expires_at = NumberAttribute()


class RestrictedByIndex(GlobalSecondaryIndex["Restriction"]):
    """Who blocked or muted a user, sorted by their id: the fan-out reads the slice of
    it that falls inside one page of followers."""

    class Meta:
        index_name = "restricted_by"
        projection = KeysOnlyProjection()

    target_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)


class Restriction(Model):
    """`user_id` blocked or muted `target_id` (one item per kind): neither their Spaces
    nor alerts about them reach `user_id`."""

    class Meta:
        table_name = "parlor-restrictions"

    user_id = UnicodeAttribute(hash_key=True)
    target_key = UnicodeAttribute(range_key=True)  # <kind>#<target_id>
    kind = UnicodeAttribute()  # block | mute
    target_id = UnicodeAttribute()
    created_at = NumberAttribute()
    restricted_by = RestrictedByIndex()


class AlertSettings(Model):
    """What delivering an alert to a user needs, in one item so that one BatchGetItem
    reads it for a hundred followers: push on or off, the devices (device id -> platform,
    SNS endpoint ARN, created_at) and the open WebSocket connection ids."""

    class Meta:
        table_name = "parlor-alert-settings"

    user_id = UnicodeAttribute(hash_key=True)
    push_enabled = BooleanAttribute(null=True)  # absent means on
    devices = MapAttribute[str, Any](null=True)
    connections = UnicodeSetAttribute(null=True)


class DeviceClaim(Model):
    """Which user a push device belongs to now: one phone, one account at a time. A token
    registered by another account moves the device to it (devices.py)."""

    class Meta:
        table_name = "parlor-device-claims"

    device_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute()


class Connection(Model):
    """An open WebSocket connection: API Gateway names only the connection when it
    closes, so this finds the user. `expires_at` outlives API Gateway's two-hour cap."""

    class Meta:
        table_name = "parlor-connections"

    connection_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute()
    connected_at = NumberAttribute(null=True)
    expires_at = NumberAttribute()


class Reminder(Model):
    """`user_id` asked to be told when the scheduled Space `space_id` goes live."""

    class Meta:
        table_name = "parlor-reminders"

    space_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)
    created_at = NumberAttribute()


class AlertLog(Model):
    """The alert pipeline's own bookkeeping for one Space.

    `run#<person>`: a fan-out was started for that person (the end of the Space clears
    the bar entries of every run). `page#<person>#<source>#<page>`: the delivery state
    of one page of recipients (working under a lease, retry with the users still owed a
    push, or done), which makes a page delivered twice alert nobody twice.

    One kind of item is a host's, not a Space's: `space_id` = `starts#<host id>`,
    `log_key` = the hour (epoch seconds // 3600), `spaces` = the Spaces that host started
    in that hour whose start alerted followers (the limit is in triggers.py)."""

    class Meta:
        table_name = "parlor-alert-log"

    space_id = UnicodeAttribute(hash_key=True)
    log_key = UnicodeAttribute(range_key=True)
    status = UnicodeAttribute(null=True)  # pages: working | retry | done
    lease_until = NumberAttribute(null=True)
    pending = UnicodeSetAttribute(null=True)
    spaces = UnicodeSetAttribute(null=True)
    expires_at = NumberAttribute()


ALL_MODELS: tuple[type[Model], ...] = (
    User, PeopleIndexEntry, Handle, Follow, Space, Member, ListenerCount, MediaNode,
    TimelineEntry, Restriction, AlertSettings, DeviceClaim, Connection, Reminder, AlertLog,
)

TTL_ATTRIBUTES: dict[type[Model], str] = {
    MediaNode: "expires_at",
    TimelineEntry: "expires_at",
    Connection: "expires_at",
    AlertLog: "expires_at",
}


@dataclass(frozen=True)
class IndexSpec:
    name: str
    hash_key: tuple[str, str]
    range_key: tuple[str, str] | None
    projection: str  # ALL | KEYS_ONLY


@dataclass(frozen=True)
class TableSpec:
    """What infrastructure needs to create a model's table, in neutral terms."""

    logical_name: str
    env_var: str
    table_name: str
    hash_key: tuple[str, str]  # (attribute name, DynamoDB type S|N|B)
    range_key: tuple[str, str] | None
    indexes: tuple[IndexSpec, ...]
    stream: str | None
    ttl_attribute: str | None


_ENV_VARS: dict[type[Model], str] = {
    User: "USERS_TABLE",
    PeopleIndexEntry: "PEOPLE_INDEX_TABLE",
    Handle: "HANDLES_TABLE",
    Follow: "FOLLOWS_TABLE",
    Space: "SPACES_TABLE",
    Member: "MEMBERS_TABLE",
    ListenerCount: "LISTENER_COUNTS_TABLE",
    MediaNode: "NODES_TABLE",
    TimelineEntry: "TIMELINE_TABLE",
    Restriction: "RESTRICTIONS_TABLE",
    AlertSettings: "ALERT_SETTINGS_TABLE",
    DeviceClaim: "DEVICE_CLAIMS_TABLE",
    Connection: "CONNECTIONS_TABLE",
    Reminder: "REMINDERS_TABLE",
    AlertLog: "ALERT_LOG_TABLE",
}


_DEFAULT_NAMES: dict[type[Model], str] = {model: model.Meta.table_name for model in ALL_MODELS}


def use_tables(environ: Mapping[str, str]) -> None:
    """Every model's table as `environ` names it (`USERS_TABLE`, ...), or its default."""
    for model in ALL_MODELS:
        model.Meta.table_name = environ.get(_ENV_VARS[model]) or _DEFAULT_NAMES[model]


def _key_of(attrs: dict[str, Any], which: str) -> tuple[str, str] | None:
    for name, attr in attrs.items():
        if getattr(attr, which, False):
            return (attr.attr_name or name, attr.attr_type)
    return None


def table_specs() -> list[TableSpec]:
    """Every table as the models define it: read by cdk/data.py and the local runtime."""
    specs = []
    for model in ALL_MODELS:
        attrs = model.get_attributes()
        hash_key = _key_of(attrs, "is_hash_key")
        assert hash_key is not None
        indexes = []
        for index in model._indexes.values():
            index_attrs = {a.attr_name: a for a in index.Meta.attributes.values()}
            index_hash = _key_of(index_attrs, "is_hash_key")
            assert index_hash is not None
            projection = index.Meta.projection.projection_type
            indexes.append(
                IndexSpec(
                    name=index.Meta.index_name,
                    hash_key=index_hash,
                    range_key=_key_of(index_attrs, "is_range_key"),
                    projection=projection,
                )
            )
        specs.append(
            TableSpec(
                logical_name=model.__name__,
                env_var=_ENV_VARS[model],
                table_name=model.Meta.table_name,
                hash_key=hash_key,
                range_key=_key_of(attrs, "is_range_key"),
                indexes=tuple(indexes),
                stream=getattr(model.Meta, "stream_view_type", None),
                ttl_attribute=TTL_ATTRIBUTES.get(model),
            )
        )
    return specs
