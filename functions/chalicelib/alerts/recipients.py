"""Fan-out: one page of recipients per message, whatever the follower count.

A fan-out message names a trigger, a source (the person's followers, or the Space's
reminders) and a cursor. Handling it reads one page of the source (one Query, up to
QUERY_PAGE keys from a KEYS_ONLY index), leaves out who must not hear about it, sends
the rest as delivery pages of up to DELIVERY_PAGE users, and sends the continuation
(the same message with the next cursor) back to the fan-out queue. A retry repeats one
page; the page ids are derived from the page's keys, so the delivery recognises a page
it has seen."""

from __future__ import annotations

from typing import Any

from ..platform.models import Follow, Reminder
from ..social import preferences
from . import messages
from .messages import ALERT, REMINDERS, DeliveryPage, FanoutPage

# One Query returns at most 1 MB: 5,000 keys of the followers index are about 300 KB.
QUERY_PAGE = 5000
# Users per delivery message: 40 BatchWriteItem calls and 10 BatchGetItem calls, and
# the pushes of their devices, fit well inside one short Lambda invocation.
DELIVERY_PAGE = 1000


def _read(page: FanoutPage) -> tuple[list[str], dict[str, Any] | None]:
    trigger = page.trigger
    if page.source == REMINDERS:
        reminders = Reminder.query(trigger.space_id, limit=QUERY_PAGE, page_size=QUERY_PAGE,
                                   last_evaluated_key=page.cursor)
        return [r.user_id for r in reminders], reminders.last_evaluated_key
    followers = Follow.followers.query(trigger.person_id, limit=QUERY_PAGE,
                                       page_size=QUERY_PAGE, last_evaluated_key=page.cursor)
    return [f.follower_id for f in followers], followers.last_evaluated_key


def _left_out(page: FanoutPage, ids: list[str]) -> set[str]:
    """Nobody is alerted about their own Space, nor about an account they blocked or
    muted (the person, or the host of the Space they speak in). A reminder goes only to
    those who do not follow the host: followers hear about it from the host's fan-out."""
    trigger = page.trigger
    out = {trigger.host_id, trigger.person_id}
    out |= preferences.restricting({trigger.person_id, trigger.host_id}, ids[0], ids[-1])
    if page.source == REMINDERS:
        keys = [(uid, trigger.host_id) for uid in ids if uid not in out]
        out |= {f.follower_id for f in Follow.batch_get(keys)} if keys else set()
    return out


def plan(page: FanoutPage) -> tuple[list[DeliveryPage], FanoutPage | None]:
    """The delivery pages of one fan-out page, and its continuation if any."""
    ids, last_key = _read(page)
    deliveries = []
    if ids:
        # Clearing the bar deletes whatever is there: nobody is left out.
        out = _left_out(page, ids) if page.trigger.action == ALERT else set()
        for index, start in enumerate(range(0, len(ids), DELIVERY_PAGE)):
            users = [u for u in ids[start:start + DELIVERY_PAGE] if u not in out]
            if users:
                page_id = f"{ids[0]}/{index}"
                deliveries.append(DeliveryPage(page.trigger, page.source, page_id, users))
    follow_on = FanoutPage(page.trigger, page.source, last_key) if last_key else None
    return deliveries, follow_on


def run(page: FanoutPage) -> None:
    deliveries, follow_on = plan(page)
    if deliveries:
        messages.send(messages.delivery_queue(), [d.body() for d in deliveries])
    if follow_on is not None:
        messages.send(messages.fanout_queue(), [follow_on.body()])


def record_from_sqs(record: Any) -> None:
    """One SQS record of the fan-out queue (a Powertools SQSRecord)."""
    run(messages.parse_fanout(record.body))
