"""Delivery of one page of recipients: the bar entries, the pushes, the live updates.

Alerting a page:
1. The Space must still be live (an alert that arrives after the end is dropped).
2. The page is claimed in the alert log under a lease. A page already done is
   acknowledged and nothing is sent again; a page another delivery holds is left for
   SQS to redeliver after its visibility timeout; a page whose holder died (its lease
   ran out) gets its bar entries again and no pushes, since nobody can tell which of
   them went out: at most one alert per user, Space and trigger wins over at least one.
3. The bar entries are written with BatchWriteItem (writing one twice changes nothing).
4. Each recipient's AlertSettings are read with BatchGetItem; every device of a user
   with push on gets one SNS publish, every open connection one WebSocket post.
   Endpoints SNS reports disabled and connections API Gateway reports gone are removed.
5. The page is marked done, or, if some pushes failed, marked `retry` with the devices
   still owed and the record fails: SQS redelivers it, the retry pushes only those, and
   after a few tries the message rests in the dead-letter queue.

Clearing a page (the Space ended) deletes its bar entries and tells open connections;
deleting twice is harmless, so it needs no claim."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError

from ..platform.models import AlertLog, AlertSettings, Space, TimelineEntry
from . import connections, devices, messages
from .connections import Channel
from .messages import CLEAR, DeliveryPage

log = logging.getLogger(__name__)

WORKING, RETRY, DONE = "working", "retry", "done"
# Longer than the delivery function's timeout, so a live holder never loses its lease.
LEASE_SECONDS = 120
# Entries of a Space that never sent its end (or whose clear failed) expire.
ENTRY_TTL_SECONDS = 2 * 24 * 3600
# SNS publishes are one request per device: they run side by side.
PUSH_WORKERS = 16


class PageBusy(RuntimeError):
    """Another delivery holds this page; SQS brings the message back later."""


class DeliveryIncomplete(RuntimeError):
    """Some pushes failed; they are recorded on the page and retried."""


@dataclass(frozen=True)
class Claim:
    fresh: bool  # nobody was alerted for this page yet
    owed: frozenset[str] | None = None  # retry: "<user> <device>" pairs still owed


def _page_key(page: DeliveryPage) -> str:
    return f"page#{page.trigger.person_id}#{page.source}#{page.page_id}"


def _claim(page: DeliveryPage) -> Claim | None:
    """The page for this delivery, or None when it is done already."""
    space_id, key = page.trigger.space_id, _page_key(page)
    now = time.time()
    try:
        AlertLog(space_id, key, status=WORKING, lease_until=now + LEASE_SECONDS,
                 expires_at=int(now + ENTRY_TTL_SECONDS)).save(
            condition=AlertLog.log_key.does_not_exist())
        return Claim(fresh=True)
    except PutError:
        pass
    current = AlertLog.get(space_id, key, consistent_read=True)
    if current.status == DONE:
        return None
    if (current.lease_until or 0) > now:
        raise PageBusy(key)
    try:
        AlertLog(space_id, key).update(
            actions=[AlertLog.lease_until.set(now + LEASE_SECONDS)],
            condition=(AlertLog.status == current.status)
            & (AlertLog.lease_until == current.lease_until))
    except UpdateError as exc:
        raise PageBusy(key) from exc
    if current.status == RETRY:
        return Claim(fresh=False, owed=frozenset(current.pending or ()))
    log.error("page %s of space %s was left half done; its pushes are skipped",
              key, space_id)
    return Claim(fresh=False)


def _release(page: DeliveryPage, claim: Claim) -> None:
    """Gives the page back after a failure before any push went out, so that the retry
    starts where this attempt did."""
    key = AlertLog(page.trigger.space_id, _page_key(page))
    if claim.fresh:
        key.delete(condition=AlertLog.status == WORKING)
    else:
        key.update(actions=[AlertLog.lease_until.set(0)])


def _record(page: DeliveryPage, owed: set[str]) -> None:
    key = AlertLog(page.trigger.space_id, _page_key(page))
    if owed:
        key.update(actions=[AlertLog.status.set(RETRY), AlertLog.pending.set(owed),
                            AlertLog.lease_until.set(0)])
    else:
        key.update(actions=[AlertLog.status.set(DONE), AlertLog.pending.remove(),
                            AlertLog.lease_until.remove()])


def _write_entries(page: DeliveryPage) -> None:
    trigger, now = page.trigger, time.time()
    with TimelineEntry.batch_write() as batch:
        for user_id in page.users:
            batch.save(TimelineEntry(user_id, trigger.entry_key, space_id=trigger.space_id,
                                     person_id=trigger.person_id, host_id=trigger.host_id,
                                     created_at=now, expires_at=int(now + ENTRY_TTL_SECONDS)))


def _delete_entries(page: DeliveryPage) -> None:
    with TimelineEntry.batch_write() as batch:
        for user_id in page.users:
            batch.delete(TimelineEntry(user_id, page.trigger.entry_key))


def _reach(user_ids: list[str]) -> list[AlertSettings]:
    return list(AlertSettings.batch_get(user_ids)) if user_ids else []


@dataclass
class Outcome:
    owed: set[str]
    disabled: list[tuple[str, str, str]]  # user, device id, endpoint
    gone: list[tuple[str, str]]  # user, connection id


@dataclass(frozen=True)
class Job:
    """One push to a device (target: device id) or post to a connection."""

    kind: str  # push | post
    user_id: str
    target: str
    send: Callable[[], Any]
    endpoint: str = ""


def _attempt(job: Job) -> tuple[Job, str]:
    try:
        delivered = job.send()
    except devices.EndpointDisabled:
        return job, "disabled"
    except Exception:
        # Any other failure is the device's or the network's, not the page's: it is
        # recorded and retried by itself.
        log.exception("%s to %s of %s failed", job.kind, job.target, job.user_id)
        return job, "failed"
    return job, "gone" if delivered is False else "sent"


def _send_all(jobs: list[Job], outcome: Outcome) -> None:
    if not jobs:
        return
    with ThreadPoolExecutor(max_workers=min(PUSH_WORKERS, len(jobs))) as pool:
        for job, result in pool.map(_attempt, jobs):
            if result == "disabled":
                outcome.disabled.append((job.user_id, job.target, job.endpoint))
            elif result == "failed" and job.kind == "push":
                outcome.owed.add(f"{job.user_id} {job.target}")
            elif result == "gone":
                outcome.gone.append((job.user_id, job.target))


def _push_jobs(page: DeliveryPage, reach: list[AlertSettings],
               only: frozenset[str] | None) -> list[Job]:
    trigger = page.trigger
    text, data = trigger.text(), {"space_id": trigger.space_id, "person_id": trigger.person_id}
    jobs = []
    for settings in reach:
        if settings.push_enabled is False or not settings.devices:
            continue
        for device_id, device in settings.devices.as_dict().items():
            if only is not None and f"{settings.user_id} {device_id}" not in only:
                continue
            endpoint = str(device.get("endpoint_arn", ""))
            send = (partial(devices.push_web, str(device["subscription"]), text, data)
                    if device["platform"] == devices.WEB
                    else partial(devices.push, endpoint, text, data))
            jobs.append(Job("push", settings.user_id, device_id, send, endpoint))
    return jobs


def _post_jobs(page: DeliveryPage, reach: list[AlertSettings], channel: Channel) -> list[Job]:
    """Live updates are best effort (the bar is what counts): a failed post is logged,
    not retried."""
    if not channel.enabled:
        return []
    trigger = page.trigger
    payload = {"type": "timeline", "event": "removed" if trigger.action == CLEAR else "added",
               "space_id": trigger.space_id, "person_id": trigger.person_id}
    return [Job("post", s.user_id, cid, partial(channel.post, cid, payload))
            for s in reach for cid in sorted(s.connections or ())]


def _tidy(outcome: Outcome) -> None:
    for user_id, device_id, endpoint in outcome.disabled:
        log.info("endpoint of device %s of %s is disabled; removed", device_id, user_id)
        devices.forget(user_id, device_id, endpoint)
    for user_id, connection_id in outcome.gone:
        connections.forget(user_id, connection_id)


def _live(space_id: str) -> bool:
    # Strongly consistent: a page can arrive within a second of the Space going live.
    try:
        return bool(Space.get(space_id, consistent_read=True).state == "live")
    except DoesNotExist:
        return False


def _jobs(page: DeliveryPage, claim: Claim, channel: Channel) -> list[Job]:
    if claim.owed is not None:
        owed_users = sorted({pair.split(" ", 1)[0] for pair in claim.owed})
        return _push_jobs(page, _reach(owed_users), claim.owed)
    _write_entries(page)
    if not claim.fresh:
        return []
    reach = _reach(page.users)
    return _push_jobs(page, reach, None) + _post_jobs(page, reach, channel)


def deliver(page: DeliveryPage, channel: Channel) -> None:
    outcome = Outcome(owed=set(), disabled=[], gone=[])
    if page.trigger.action == CLEAR:
        reach = _reach(page.users) if channel.enabled else []
        _delete_entries(page)
        posts = _post_jobs(page, reach, channel)
        _send_all(posts, outcome)
        _tidy(outcome)
        log.info("cleared %s: %d users, %d live updates", _page_key(page), len(page.users),
                 len(posts))
        return
    if not _live(page.trigger.space_id):
        return
    claim = _claim(page)
    if claim is None:
        return
    try:
        jobs = _jobs(page, claim, channel)
    except Exception:
        _release(page, claim)
        raise
    _send_all(jobs, outcome)
    _record(page, outcome.owed)
    _tidy(outcome)
    log.info("delivered %s: %d users, %d pushes and live updates, %d owed",
             _page_key(page), len(page.users), len(jobs), len(outcome.owed))
    if outcome.owed:
        raise DeliveryIncomplete(f"{len(outcome.owed)} pushes of {_page_key(page)} failed")


def record_from_sqs(record: Any, channel: Channel) -> None:
    """One SQS record of the delivery queue (a Powertools SQSRecord)."""
    deliver(messages.parse_delivery(record.body), channel)

