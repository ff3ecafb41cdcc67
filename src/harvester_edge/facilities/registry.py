"""Process-wide sharing of facility clients: one per credential and endpoint.

Harvester builds a new plugin instance every cycle in every agent thread; the HTTP sessions,
token caches and health caches must outlive them.  ``shared_client`` returns the same client
object for the same key, creating it (without I/O) under a lock the first time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TypeVar

from .base import FacilityClient

C = TypeVar("C", bound=FacilityClient)

_lock = threading.Lock()
_clients: dict[Hashable, FacilityClient] = {}


def shared_client(key: Hashable, factory: Callable[[], C]) -> C:
    """The client for ``key``; ``factory`` runs at most once per key and must do no I/O."""
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = factory()
            client.cache_key = key  # health and watch caches are keyed like the client
            _clients[key] = client
        return client  # type: ignore[return-value]


def forget_clients() -> None:
    """Close and drop every shared client (tests, credential rotation)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
