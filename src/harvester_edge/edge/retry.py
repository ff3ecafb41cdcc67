"""One retry policy for every remote call, as data.

Why not the libraries' own retries: sfapi_client retries a POST after a read timeout (a
duplicate job), globus_sdk retries POSTs on 5xx, and none bounds the total time a Harvester
thread can spend in one call.  Here an idempotent request (GET, DELETE of a known id, a
submit carrying an idempotency key) is retried on network errors, 409 (a request with the
same key still in flight), 429 and 5xx, honouring ``Retry-After``.  A non-idempotent request
(a submit) is retried only when the service surely did nothing: 429 ("not now") and network
errors before the request was sent.  Any other 5xx on a submit may come after the job was
created (a proxy's 502/504, a 500 or even a 503 from a handler that had already called
sbatch), so it is raised with its ``status`` and the caller looks the tag up.  Every call stops
at ``deadline`` seconds, whatever the number of attempts left: no attempt starts, and no wait
begins, once that time is used up.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import EdgeAPIError, EdgeNetworkError

T = TypeVar("T")

#: statuses an idempotent request is retried on: 409 (IRI v2: a request with the same
#: idempotency key is still being processed), 429, and the transient 5xx
RETRY_STATUSES = frozenset({409, 429, 500, 502, 503, 504})


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


#: the only status a non-idempotent request may be retried on: the service did nothing
NOT_DONE_STATUSES = frozenset({429})


def is_retryable(exc: BaseException, *, idempotent: bool) -> bool:
    """The chain of checks: may this failure be retried for this kind of request?"""
    if isinstance(exc, EdgeNetworkError):
        return idempotent or not exc.maybe_sent
    if isinstance(exc, EdgeAPIError):
        if idempotent:
            return exc.status in RETRY_STATUSES
        # 429 says "not now" before anything was done: safe even for a submit.  Every other
        # 5xx may come after the job was created: the submit's caller looks the tag up.
        return exc.status in NOT_DONE_STATUSES
    return False


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    idempotent: bool,
    retry_after_of: Callable[[BaseException], float | None] = lambda e: None,
    started: float | None = None,
) -> T:
    """Run ``fn`` under ``policy``; re-raise the last error when attempts or time run out.

    ``started`` (a ``time.monotonic()`` value) lets a caller count time it spent before this
    call (e.g. on a token) against the same deadline."""
    start = time.monotonic() if started is None else started
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
            time.sleep(wait)
