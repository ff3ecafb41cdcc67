"""The ``Idempotency-Key`` store of the loopback DOE IRI gateway (API v2).

Semantics of the reference server (iri-facility-api-python 2.0.0, ``app/idempotency.py``, with
its demo in-memory store), which the gateway reproduces:

- an entry is scoped by user, endpoint and key (a key of user A never matches user B);
- the first request locks the key and runs; only a successful reply is stored (a refusal
  releases the lock, so the client may retry);
- the same key with the same body (compared as the parsed spec, see
  ``iri_spec.fingerprint``) replays the stored reply unchanged;
- the same key while the first request is still running -> "conflict" (409), whatever the
  body; the same key with another body after it finished -> "mismatch" (422);
- stored replies expire after ``ttl`` seconds (24 h), locks after ``lock_ttl`` (60 s: a
  request that died holding the lock does not block the key for ever).

TTLs are read through callables at each check, so shortening the gateway's knobs also ages
the entries already stored.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Claim", "IdempotencyStore"]


@dataclass(frozen=True)
class Claim:
    """The store's verdict on one request.

    :ivar action: ``proceed`` (run it, then :meth:`IdempotencyStore.finish` or
        :meth:`IdempotencyStore.release` with ``token``), ``hit`` (answer ``reply``),
        ``conflict`` (in flight: 409) or ``mismatch`` (other body: 422).
    """

    action: str
    key: str
    token: int = 0
    reply: tuple[int, Any] | None = None


@dataclass
class _Entry:
    fingerprint: str
    since: float  # time.monotonic() when locked or when the reply was stored
    token: int
    reply: tuple[int, Any] | None = None  # None while locked


class IdempotencyStore:
    """In-memory, thread-safe store for one gateway."""

    def __init__(self, ttl: Callable[[], float], lock_ttl: Callable[[], float]) -> None:
        self._ttl = ttl
        self._lock_ttl = lock_ttl
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._next_purge = 1024

    @staticmethod
    def scope(user: str, endpoint: str, key: str) -> str:
        """The store key of (user, endpoint, Idempotency-Key): opaque, like the reference's."""
        return hashlib.sha256(f"{user}:{endpoint}:{key}".encode()).hexdigest()

    def _expired(self, entry: _Entry, now: float) -> bool:
        limit = self._lock_ttl() if entry.reply is None else self._ttl()
        return now - entry.since >= limit

    def begin(self, key: str, fingerprint: str) -> Claim:
        """Check ``key`` and lock it when it is new (or expired)."""
        with self._lock:
            now = time.monotonic()
            if len(self._entries) >= self._next_purge:  # bounded memory, amortised
                self._entries = {
                    k: e for k, e in self._entries.items() if not self._expired(e, now)
                }
                self._next_purge = max(1024, 2 * len(self._entries))
            entry = self._entries.get(key)
            if entry is not None and self._expired(entry, now):
                entry = None
            if entry is None:
                token = next(self._tokens)
                self._entries[key] = _Entry(fingerprint, now, token)
                return Claim("proceed", key, token)
            if entry.reply is None:
                return Claim("conflict", key)
            if entry.fingerprint != fingerprint:
                return Claim("mismatch", key)
            return Claim("hit", key, reply=entry.reply)

    def finish(self, claim: Claim, reply: tuple[int, Any]) -> None:
        """Store the reply of a request that proceeded (only while it still holds the lock)."""
        with self._lock:
            entry = self._entries.get(claim.key)
            if entry is not None and entry.token == claim.token and entry.reply is None:
                entry.reply = reply
                entry.since = time.monotonic()

    def release(self, claim: Claim) -> None:
        """Drop the lock of a request that failed, so the key can be used again."""
        with self._lock:
            entry = self._entries.get(claim.key)
            if entry is not None and entry.token == claim.token and entry.reply is None:
                del self._entries[claim.key]

    def purge(self) -> int:
        """Forget expired entries; returns how many remain."""
        with self._lock:
            now = time.monotonic()
            self._entries = {k: e for k, e in self._entries.items() if not self._expired(e, now)}
            return len(self._entries)
