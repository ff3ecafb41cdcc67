"""Tags to keep watching after their worker ended: a job appearing under one is cancelled.

A worker can end while its job may still appear: its submit task never resolved and the lookup
grace ran out (SUBMIT_LOST), a kill was answered before the job showed up, a task named
another worker's job.  Harvester stops checking a final worker, so the monitor keeps these tags
here (per facility client) and looks them up in bulk each cycle until ``watch`` seconds pass;
any job found under one is cancelled, so nothing runs unaccounted for.  In process: a restart
forgets the list (the lookup grace before a worker is given up makes that window small).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable


class OrphanWatch:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tags: dict[Hashable, dict[str, float]] = {}

    def add(self, client_key: Hashable, tag: str, now: float | None = None) -> None:
        with self._lock:
            self._tags.setdefault(client_key, {})[tag] = time.time() if now is None else now

    def tags(self, client_key: Hashable, watch: float, now: float | None = None) -> list[str]:
        """The tags still watched for this client (expired ones are dropped)."""
        now = time.time() if now is None else now
        with self._lock:
            book = self._tags.get(client_key, {})
            for tag in [t for t, since in book.items() if now - since >= watch]:
                del book[tag]
            return sorted(book)

    def forget(self) -> None:
        with self._lock:
            self._tags.clear()


WATCH = OrphanWatch()
