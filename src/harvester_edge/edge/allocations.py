"""Level-3 parallelism: how many allocations of a queue are alive right now.

The monitor sees every tracked job each cycle and records the live ones here, per tag; the
submitter reads the count before submitting and adds its own fresh submissions, which the
monitor has not seen yet.  Harvester runs monitor and submitter threads in one process, so an
in-process book is the shared view.  Entries not refreshed for ``max_age`` seconds (a worker
the monitor no longer checks) drop out; a queue the monitor has never reported on is unknown
(``None``), and the submitter then asks the facility once.
"""

from __future__ import annotations

import threading
import time

from ..facilities.base import FacilityClient


class AllocationBook:
    def __init__(self, max_age: float = 900.0) -> None:
        self.max_age = max_age
        self._lock = threading.Lock()
        self._live: dict[str, dict[str, float]] = {}  # prefix -> tag -> last seen live
        self._fresh: dict[str, dict[str, float]] = {}  # prefix -> tag -> submitted at
        self._known: set[str] = set()

    def observe(self, prefix: str, tag: str, live: bool, now: float | None = None) -> None:
        """The monitor saw this job live (or ended).  This does not make the queue's count
        known: one monitor pass may see only some of a queue's workers (Harvester checks them
        in batches), so only ``seed`` (the facility's own list) does."""
        now = time.time() if now is None else now
        with self._lock:
            self._fresh.get(prefix, {}).pop(tag, None)
            if live:
                self._live.setdefault(prefix, {})[tag] = now
            else:
                self._live.get(prefix, {}).pop(tag, None)

    def submitted(self, prefix: str, tag: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._fresh.setdefault(prefix, {})[tag] = now

    def released(self, prefix: str, tag: str) -> None:
        """A submit was refused or failed for sure: its slot is free again at once."""
        with self._lock:
            self._fresh.get(prefix, {}).pop(tag, None)
            self._live.get(prefix, {}).pop(tag, None)

    def counts(self, prefix: str, now: float | None = None) -> tuple[int, int] | None:
        """(live allocations seen by the monitor, fresh submissions not seen yet), or None
        for a queue never reported on."""
        now = time.time() if now is None else now
        with self._lock:
            if prefix not in self._known:
                return None
            live = {
                t for t, seen in self._live.get(prefix, {}).items() if now - seen < self.max_age
            }
            fresh = {t for t, at in self._fresh.get(prefix, {}).items() if now - at < self.max_age}
            return len(live), len(fresh - live)

    def count(self, prefix: str, now: float | None = None) -> int | None:
        """All live allocations of a queue (seen and just submitted), or None if unknown."""
        counts = self.counts(prefix, now)
        return None if counts is None else sum(counts)

    def seed(self, prefix: str, tags: list[str], now: float | None = None) -> None:
        """Start a queue's count from the facility's own list (first use after a restart)."""
        now = time.time() if now is None else now
        with self._lock:
            self._known.add(prefix)
            book = self._live.setdefault(prefix, {})
            for tag in tags:
                book[tag] = now


BOOK = AllocationBook()


def live_counts(client: FacilityClient, prefix: str) -> tuple[int, int]:
    """(live, just submitted) allocations of a queue, seeding the book from the facility's
    own list once per process (one request).  Raises EdgeAPIError when that list cannot be
    read: an unknown count is never taken for zero."""
    counts = BOOK.counts(prefix)
    if counts is None:
        try:
            live = client.live_tags(prefix)
        except NotImplementedError:
            live = []
        BOOK.seed(prefix, live)
        counts = BOOK.counts(prefix) or (0, 0)
    return counts
