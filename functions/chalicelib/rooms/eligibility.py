"""Who may host: a policy of follower threshold, an allowlist that administrators keep
(a new deployment's users have no followers yet), and account standing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..platform.config import settings
from ..platform.errors import Forbidden
from ..platform.models import User


@dataclass(frozen=True)
class Eligibility:
    eligible: bool
    reason: str | None
    message: str
    threshold: int
    follower_count: int

    def view(self) -> dict[str, Any]:
        return {
            "eligible": self.eligible,
            "reason": self.reason,
            "message": self.message,
            "threshold": self.threshold,
            "follower_count": self.follower_count,
        }


def evaluate(user: User | None) -> Eligibility:
    threshold = settings().hosting_follower_threshold
    if user is None:
        return Eligibility(False, "profile_required", "Create your profile first (PUT /me)",
                           threshold, 0)
    count = int(user.follower_count)
    if user.suspended:
        return Eligibility(False, "suspended", "Suspended accounts cannot host Spaces",
                           threshold, count)
    if user.hosting_allowed:
        return Eligibility(True, "allowlisted", "An administrator allowed you to host Spaces",
                           threshold, count)
    if count < threshold:
        return Eligibility(
            False, "not_enough_followers",
            f"Hosting needs {threshold} followers; you have {count}", threshold, count)
    return Eligibility(True, None, "You can host Spaces", threshold, count)


def require_host_eligible(user: User | None) -> None:
    result = evaluate(user)
    if not result.eligible:
        raise Forbidden(result.message, code="not_eligible", reason=result.reason,
                        threshold=result.threshold, follower_count=result.follower_count)
