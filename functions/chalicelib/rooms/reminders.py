"""Reminders: a user asks to be told when a scheduled Space goes live. The alert
fan-out reads the Space's reminders when it starts (see triggers.py)."""

from __future__ import annotations

import time
from typing import Any

from ..platform.errors import Conflict
from ..platform.models import Reminder
from . import spaces


def _scheduled(space_id: str) -> None:
    """Reminders change only before the Space starts: once it is live, they say whose
    bar entries go when it ends."""
    space = spaces.load(space_id)
    if space.state != spaces.SCHEDULED:
        raise Conflict(f"The Space is {space.state}, not scheduled", code="space_not_scheduled",
                       state=space.state)


def remind(space_id: str, user_id: str) -> dict[str, Any]:
    """Idempotent."""
    _scheduled(space_id)
    Reminder(space_id, user_id, created_at=time.time()).save()
    return {"space_id": space_id, "reminder": True}


def forget(space_id: str, user_id: str) -> dict[str, Any]:
    """Idempotent."""
    _scheduled(space_id)
    Reminder(space_id, user_id).delete()
    return {"space_id": space_id, "reminder": False}


def status(space_id: str, user_id: str) -> dict[str, Any]:
    """Whether the user asked to be told when the Space goes live (any state)."""
    spaces.load(space_id)
    try:
        Reminder.get(space_id, user_id, consistent_read=True)
    except Reminder.DoesNotExist:
        return {"space_id": space_id, "reminder": False}
    return {"space_id": space_id, "reminder": True}
