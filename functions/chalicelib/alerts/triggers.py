"""What the Spaces table's stream means to the alerts.

- A Space becomes live (created live, or a scheduled one started): its host is hosting,
  for the host's followers and for those who asked to be reminded.
- In a live Space, a user id appears in `on_stage_connected` (on stage and connected
  to the media node, see presence.py and roles.py): that person is speaking. The host is
  left out: their alert is the Space going live.
- A live Space ends (or its item goes): every person alerted about it leaves the bars.

Each record starts at most a few fan-outs, one SQS message each; nothing here reads a
follower. A record retried by Lambda sends its fan-outs again, which the page markers
of the delivery absorb."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.expressions.condition import size

from ..platform.config import settings
from ..platform.models import AlertLog, User
from . import messages
from .messages import ALERT, CLEAR, FOLLOWERS, REMINDERS, FanoutPage, Trigger

log = logging.getLogger(__name__)

LIVE, SCHEDULED = "live", "scheduled"
# Bookkeeping outlives any Space; DynamoDB's TTL removes it afterwards.
LOG_TTL_SECONDS = 7 * 24 * 3600
RUN_PREFIX = "run#"


def _stage(image: Mapping[str, Any]) -> set[str]:
    return {str(u) for u in image.get("on_stage_connected") or ()}


def _handle(user_id: str) -> str:
    try:
        return str(User.get(user_id).handle)
    except DoesNotExist:
        return user_id


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FanoutPage]:
    """The fan-outs one change of a Space item starts (alerts only; see `ended`)."""
    was_live, is_live = old.get("state") == LIVE, new.get("state") == LIVE
    if not is_live:
        return []
    space_id, host_id, title = str(new["space_id"]), str(new["host_id"]), str(new["title"])
    pages = []
    if not was_live:
        host = Trigger(ALERT, space_id, host_id, host_id, _handle(host_id), title)
        pages.append(FanoutPage(host, FOLLOWERS, None))
        if old.get("state") == SCHEDULED:
            pages.append(FanoutPage(host, REMINDERS, None))
    before = _stage(old) if was_live else set()
    for person in sorted(_stage(new) - before - {host_id}):
        speaker = Trigger(ALERT, space_id, person, host_id, _handle(person), title)
        pages.append(FanoutPage(speaker, FOLLOWERS, None))
    return pages


def ended(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FanoutPage]:
    """A live Space that ended clears the bar entries of every fan-out it had."""
    if old.get("state") != LIVE or new.get("state") == LIVE:
        return []
    space_id, host_id, title = str(old["space_id"]), str(old["host_id"]), str(old["title"])
    pages = []
    for run in AlertLog.query(space_id, AlertLog.log_key.startswith(RUN_PREFIX)):
        person = run.log_key.removeprefix(RUN_PREFIX)
        trigger = Trigger(CLEAR, space_id, person, host_id, person, title)
        pages.append(FanoutPage(trigger, FOLLOWERS, None))
        if person == host_id:
            pages.append(FanoutPage(trigger, REMINDERS, None))
    return pages


def _may_alert_start(host_id: str, space_id: str, now: float) -> bool:
    """Whether this start of a Space may alert the host's followers: a host's first
    ALERTING_STARTS_PER_HOUR starts in an hour do, later ones start quietly (a Space
    started, ended and started again in a loop would otherwise page every follower
    each time). A retried record asks again for the same Space and gets the same answer."""
    limit = settings().alerting_starts_per_hour
    hour = int(now // 3600)
    try:
        AlertLog(f"starts#{host_id}", str(hour)).update(
            actions=[AlertLog.spaces.add({space_id}),
                     AlertLog.expires_at.set(int(now + LOG_TTL_SECONDS))],
            condition=AlertLog.spaces.does_not_exist() | (size(AlertLog.spaces) < limit)
            | AlertLog.spaces.contains(space_id))
    except UpdateError:
        return False
    return True


def _within_quota(pages: list[FanoutPage], now: float) -> list[FanoutPage]:
    kept = []
    for page in pages:
        trigger = page.trigger
        if trigger.hosting and page.source == FOLLOWERS and \
                not _may_alert_start(trigger.host_id, trigger.space_id, now):
            log.warning("host %s started too many Spaces this hour: %s alerts nobody",
                        trigger.host_id, trigger.space_id)
            continue
        kept.append(page)
    return kept


def record_from_stream(record: DynamoDBRecord) -> None:
    """One record of the Spaces table's stream (a Powertools DynamoDBRecord)."""
    change = record.dynamodb
    if change is None:
        return
    old, new = change.old_image or {}, change.new_image or {}
    starts = _within_quota(changes(old, new), time.time())
    # Written before the fan-out starts, so the Space's end never misses a run.
    expires = int(time.time() + LOG_TTL_SECONDS)
    for page in starts:
        if page.source == FOLLOWERS:
            AlertLog(page.trigger.space_id, RUN_PREFIX + page.trigger.person_id,
                     expires_at=expires).save()
    pages = starts + ended(old, new)
    if pages:
        log.info("space %s changed: %s", new.get("space_id") or old.get("space_id"),
                 ", ".join(f"{p.trigger.action} {p.source} of {p.trigger.person_id}"
                           for p in pages))
        messages.send(messages.fanout_queue(), [p.body() for p in pages])
