"""One time budget per Harvester plugin call.

A silent API must not hold a ``check_workers``/``submit_workers``/``kill_workers`` call for
chunks x deadline: once one request of the call has timed out (the facility is not answering)
or the budget is spent, the remaining chunks answer "could not" at once.
"""

from __future__ import annotations

import threading
import time

from ..errors import EdgeNetworkError


class CallBudget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._reason: str | None = None

    def trip(self, reason: str) -> None:
        """The facility stopped answering: nothing more is asked in this call."""
        with self._lock:
            if self._reason is None:
                self._reason = reason

    def note(self, exc: BaseException) -> None:
        """Trip on a silent facility (unreachable, no answer in time), not on one reset."""
        if isinstance(exc, EdgeNetworkError) and exc.silent:
            self.trip(str(exc))

    def spent(self) -> str | None:
        """Why no more requests should start in this call, or None while there is time."""
        with self._lock:
            if self._reason is not None:
                return self._reason
        if time.monotonic() >= self.deadline:
            return "the plugin call's time budget is spent"
        return None
