"""Facility submit limits seen recently, per queue: the throttler's memory of "not now".

When sbatch refuses a job for a QOS/association submit limit, the workers already made get a
falsy answer (Harvester marks them missed); the queue must then stop *making* workers for a
while, which is the throttler's job.  Submitter and monitor record the refusal here; the
throttler reads it.  In process, like every Harvester agent thread of one instance.
"""

from __future__ import annotations

import threading
import time


class SubmitLimits:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: dict[str, tuple[float, str]] = {}

    def hit(self, prefix: str, message: str, now: float | None = None) -> None:
        """Record a submit-limit refusal for the queue with this tag prefix."""
        with self._lock:
            self._hits[prefix] = (time.time() if now is None else now, message[:200])

    def recent(self, prefix: str, hold: float, now: float | None = None) -> str | None:
        """The last refusal's text if it is younger than ``hold`` seconds, else None."""
        now = time.time() if now is None else now
        with self._lock:
            hit = self._hits.get(prefix)
        if hit is None or now - hit[0] >= hold:
            return None
        return hit[1]

    def forget(self) -> None:
        with self._lock:
            self._hits.clear()


LIMITS = SubmitLimits()
