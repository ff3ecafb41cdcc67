"""One retry policy for every remote call, as data.

Why not the libraries' own retries: sfapi_client retries a POST after a read timeout (a
duplicate job), globus_sdk retries POSTs on 5xx, and none bounds the total time a Harvester
thread can spend in one call.  Here an idempotent request (GET, DELETE of a known id) is
retried on network errors, 429 and 5xx, honouring ``Retry-After``; a submit is never retried
once it may have reached the service (the caller looks the job up by tag instead); every call
stops at ``deadline`` seconds, whatever the number of attempts left.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import EdgeAPIError, EdgeNetworkError

T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Timeouts:
    """Explicit connect/read timeouts: a silent API must never hang a Harvester thread."""

    connect: float = 5.0
    read: float = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 15.0
    deadline: float = 90.0
    jitter: float = 0.1

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (attempt counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_backoff)
        base = min(self.backoff * (2 ** (attempt - 1)), self.max_backoff)
        return base * (1 + random.uniform(-self.jitter, self.jitter))


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def is_retryable(exc: BaseException, *, idempotent: bool) -> bool:
    """The chain of checks: may this failure be retried for this kind of request?"""
    if isinstance(exc, EdgeNetworkError):
        return idempotent or not exc.maybe_sent
    if isinstance(exc, EdgeAPIError):
        if exc.status in RETRY_STATUSES:
            # 429 and 503 say "not now" before anything was done: safe even for a submit.
            # 500/502/504 may come after the job was created: the submit's caller looks
            # the tag up before it tries again.
            return idempotent or exc.status in (429, 503)
    return False


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    idempotent: bool,
    stop: threading.Event | None = None,
    retry_after_of: Callable[[BaseException], float | None] = lambda e: None,
) -> T:
    """Run ``fn`` under ``policy``; re-raise the last error when attempts or time run out."""
    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except EdgeAPIError as exc:
            if attempt >= policy.attempts or not is_retryable(exc, idempotent=idempotent):
                raise
            wait = policy.delay(attempt, retry_after_of(exc))
            if time.monotonic() - start + wait >= policy.deadline:
                raise
            if stop is not None:
                if stop.wait(wait):
                    raise
            else:
                time.sleep(wait)
