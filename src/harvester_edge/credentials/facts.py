"""Pilot credentials' facts per queue, for the throttler (no secrets, no I/O to read).

The credential manager publishes, after each check and renewal, what it knows of each pilot
credential of the queues a setup serves (its ``queueName`` in the per-queue style, else its
``queues`` option); the throttler, in the same Harvester process, stops new workers of a queue
whose pilots would start without a valid credential.  A queue nobody published for has no
facts: the throttler then says nothing about pilot credentials.
"""

from __future__ import annotations

import threading

from ..facilities.base import CredentialFacts

_lock = threading.Lock()
_facts: dict[str, dict[str, CredentialFacts]] = {}


def publish(queue: str, setup: str, facts: list[CredentialFacts]) -> None:
    """Replace what ``setup`` said about ``queue``."""
    with _lock:
        _facts.setdefault(queue, {})
        for key in [k for k in _facts[queue] if k.startswith(setup + "\0")]:
            del _facts[queue][key]
        for item in facts:
            _facts[queue][f"{setup}\0{item.kind}"] = item


def for_queue(queue: str) -> list[CredentialFacts]:
    with _lock:
        return list(_facts.get(queue, {}).values())


def forget() -> None:
    with _lock:
        _facts.clear()
