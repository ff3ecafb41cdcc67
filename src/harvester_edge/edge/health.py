"""Health gating: ask the facility's status once per interval, shared by all threads.

When the machine is unavailable (or its status cannot be read at all), submit answers
``None`` (retry later) and monitor answers ``None`` (could not check) for every worker:
during a maintenance window nothing is failed and nothing is submitted into a black hole.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

from ..errors import EdgeAPIError
from ..facilities.base import FacilityClient, Health

# A status that could not be read is kept only briefly, so recovery is noticed soon.
_FAILED_READ_TTL = 10.0
#: the state of a status that could not be read (the throttler then looks at the credential)
UNREADABLE = "unknown"


class HealthGate:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[Hashable, tuple[float, Health]] = {}
        self._inflight: dict[Hashable, threading.Lock] = {}

    def check(self, client: FacilityClient, ttl: float) -> Health:
        key = client.cache_key if client.cache_key is not None else id(client)
        with self._lock:
            cached = self._cache.get(key)
            if cached and cached[0] > time.monotonic():
                return cached[1]
            fetch_lock = self._inflight.setdefault(key, threading.Lock())
        with fetch_lock:  # one thread asks; the others wait for its answer
            with self._lock:
                cached = self._cache.get(key)
                if cached and cached[0] > time.monotonic():
                    return cached[1]
            try:
                health = client.health()
                expires = time.monotonic() + ttl
            except EdgeAPIError as exc:
                health = Health(False, UNREADABLE, f"could not read the facility status: {exc}")
                expires = time.monotonic() + min(ttl, _FAILED_READ_TTL)
            with self._lock:
                self._cache[key] = (expires, health)
            return health

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()


GATE = HealthGate()
