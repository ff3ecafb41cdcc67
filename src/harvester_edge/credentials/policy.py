"""When a credential is renewed: a fraction of its lifetime left, on the lifecycle clock.

Time comes from ``edge.lifecycle.now`` so tests move the clock instead of sleeping.  A
credential with ``issued_at`` 0 (its start unknown) counts its lifetime from when we first
stored it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..edge import lifecycle


def clock() -> float:
    """Seconds since the epoch, as the rest of the lifecycle sees them."""
    return lifecycle.now()


def utc(when: float | None) -> str:
    if when is None:
        return "no known expiry"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when))


@dataclass(frozen=True)
class LifetimePolicy:
    """Renew when at most ``renew_fraction`` of the lifetime is left, or ``min_left``
    seconds, whichever comes first; a credential without expiry is never due."""

    renew_fraction: float = 0.25
    min_left: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.renew_fraction < 1:
            raise ValueError(f"renewFraction must be between 0 and 1, got {self.renew_fraction}")

    def left_fraction(self, issued_at: float, expires_at: float | None, now: float) -> float:
        if expires_at is None:
            return 1.0
        life = expires_at - issued_at
        if life <= 0:
            return 0.0
        return max(0.0, min(1.0, (expires_at - now) / life))

    def due(self, issued_at: float, expires_at: float | None, now: float) -> bool:
        if expires_at is None:
            return False
        if expires_at - now <= self.min_left:
            return True
        return self.left_fraction(issued_at, expires_at, now) <= self.renew_fraction
