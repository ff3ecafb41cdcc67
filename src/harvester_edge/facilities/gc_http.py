"""Globus Compute's web service through globus-sdk: our retry policy, a rate limit, our errors.

The requests themselves are globus-sdk's (``ComputeClientV2``/``V3``, with ``base_url`` the
configured service URL), the payloads globus-compute-sdk's (``Batch.prepare``,
``FunctionRegistrationData``, ``ComputeSerializer``).  What this module adds:

- globus-sdk's own retries are OFF on every client it builds (``RetryConfig(max_retries=0)``,
  set at construction, never toggled with ``tune()``, which restores nothing when its block
  raises): globus-sdk retries a POST after a read timeout or a 5xx, so a submit could run
  sbatch twice.  ``GCService.call`` applies our ``RetryPolicy`` instead: reads (batch
  status, endpoint status) are retried on 429/5xx, a submit only on 429 (nothing was done);
  a submit answered 5xx or not answered is ambiguous and the caller looks its tag up.
- ``RateBucket``: GC allows about 20 requests per 10 s per user.  One bucket per credential
  (process-wide, shared by every client and plugin of that credential) keeps every request
  under ``limit`` per ``window`` seconds; a 429 holds the bucket for its ``Retry-After``.  A
  request that cannot get a slot within its call's deadline raises a transient 429-like
  error: "not now", never a failed worker.
- every globus-sdk error becomes ours (``EdgeAPIError``/``EdgeAuthError``/
  ``EdgeNetworkError`` with ``maybe_sent``), with the service's words and never a header.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import globus_sdk
import requests
from globus_sdk.transport import RequestsTransport, RetryConfig

from ..edge.retry import RetryPolicy, Timeouts, is_retryable, parse_retry_after
from ..errors import EdgeAPIError, EdgeAuthError, EdgeNetworkError
from .auth import AuthorizerAuth
from .transport import SendFailure, StatusError, _requests_failure

T = TypeVar("T")

#: GC's documented limit is 20 requests per 10 s per user: stay a little under it
DEFAULT_RATE = (18, 10.0)


class RateBucket:
    """A sliding-window limit: at most ``limit`` requests in any ``window`` seconds.

    Thread-safe; ``acquire`` waits for a slot at most ``max_wait`` seconds, else raises a
    transient ``EdgeAPIError(status=429)`` (the plugins answer "not now")."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._sent: list[float] = []
        self._hold_until = 0.0
        #: requests let through (for tests and benchmarks)
        self.granted = 0
        #: the most requests ever seen in one window (benchmarks check it against the limit)
        self.peak = 0

    def _wait_for(self, now: float) -> float:
        self._sent = [t for t in self._sent if now - t < self.window]
        wait = max(0.0, self._hold_until - now)
        if len(self._sent) >= self.limit:
            wait = max(wait, self._sent[len(self._sent) - self.limit] + self.window - now)
        return wait

    def acquire(self, max_wait: float) -> None:
        deadline = self._clock() + max(0.0, max_wait)
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait_for(now)
                if wait <= 0:
                    self._sent.append(now)
                    self.granted += 1
                    self.peak = max(self.peak, len(self._sent))
                    return
            if now + wait > deadline:
                raise StatusError(
                    f"globus compute: request rate limit ({self.limit} per {self.window:.0f}s) "
                    f"reached; next slot in {wait:.1f}s",
                    429,
                    wait,
                )
            self._sleep(min(wait, 1.0))

    def hold(self, seconds: float) -> None:
        """The service answered 429: no request before ``seconds`` from now."""
        with self._lock:
            self._hold_until = max(self._hold_until, self._clock() + max(0.0, seconds))


_BUCKETS: dict[Hashable, RateBucket] = {}
_BUCKETS_LOCK = threading.Lock()


def bucket_for(key: Hashable, limit: int, window: float) -> RateBucket:
    """The one bucket of a credential (``key``), shared by every client in the process."""
    with _BUCKETS_LOCK:
        bucket = _BUCKETS.get(key)
        if bucket is None or (bucket.limit, bucket.window) != (limit, window):
            bucket = _BUCKETS[key] = RateBucket(limit, window)
        return bucket


def forget_buckets() -> None:
    with _BUCKETS_LOCK:
        _BUCKETS.clear()


def _service_words(exc: globus_sdk.GlobusAPIError) -> str:
    """The service's message (never headers or our request)."""
    text = ""
    try:
        text = str(exc.message or "")
    except Exception:  # noqa: BLE001 - an unreadable body: status only
        text = ""
    return " ".join(text.split())[:300]


def network_error(what: str, exc: BaseException) -> EdgeNetworkError:
    """A ``globus_sdk.NetworkError`` (or a ``requests`` error) as ours: the cause decides
    whether the request may have reached the service."""
    cause = getattr(exc, "underlying_exception", exc)
    if isinstance(cause, requests.RequestException):
        failure = _requests_failure(cause)
    elif isinstance(exc, globus_sdk.GlobusConnectionTimeoutError):
        failure = SendFailure(SendFailure.NOT_SENT, type(exc).__name__)
    elif isinstance(exc, globus_sdk.GlobusTimeoutError):
        failure = SendFailure(SendFailure.TIMEOUT, type(exc).__name__)
    else:
        failure = SendFailure(SendFailure.BROKEN, type(exc).__name__)
    if failure.kind == SendFailure.NOT_SENT:
        return EdgeNetworkError(f"{what}: cannot connect ({failure.name})", maybe_sent=False)
    if failure.kind == SendFailure.TIMEOUT:
        return EdgeNetworkError(f"{what}: no answer in time ({failure.name})", maybe_sent=True)
    return EdgeNetworkError(
        f"{what}: connection failed ({failure.name})", maybe_sent=True, silent=False
    )


class GCService:
    """The Compute web service at ``url`` for one credential (``auth``), shared by threads.

    :param url: the web service's base URL (``https://compute.api.globus.org``).
    :param auth: the credential as an ``AuthorizerAuth`` (tokens fetched and mapped by it).
    :param bucket: the credential's rate bucket.
    """

    def __init__(
        self,
        url: str,
        auth: AuthorizerAuth,
        *,
        bucket: RateBucket,
        timeouts: Timeouts,
        policy: RetryPolicy,
    ) -> None:
        self.url = url.rstrip("/")
        self.auth = auth
        self.bucket = bucket
        self.timeouts = timeouts
        self.policy = policy
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._v2: globus_sdk.ComputeClientV2 | None = None
        self._v3: globus_sdk.ComputeClientV3 | None = None

    def __repr__(self) -> str:
        return f"GCService({self.url!r})"

    def _clients(self) -> tuple[globus_sdk.ComputeClientV2, globus_sdk.ComputeClientV3]:
        """Made on first use (constructors do no I/O): retries off for good, one session."""
        with self._lock:
            if self._v2 is None or self._v3 is None:
                transport = RequestsTransport(http_timeout=self.timeouts.read)
                kwargs: dict[str, Any] = {
                    "base_url": self.url,
                    "authorizer": self.auth.authorizer,
                    "transport": transport,
                    "app_name": "harvester-edge",
                }
                self._v2 = globus_sdk.ComputeClientV2(
                    retry_config=RetryConfig(max_retries=0), **kwargs
                )
                self._v3 = globus_sdk.ComputeClientV3(
                    retry_config=RetryConfig(max_retries=0), **kwargs
                )
            return self._v2, self._v3

    @property
    def v2(self) -> globus_sdk.ComputeClientV2:
        return self._clients()[0]

    @property
    def v3(self) -> globus_sdk.ComputeClientV3:
        return self._clients()[1]

    def close(self) -> None:
        with self._lock:
            for client in (self._v2, self._v3):
                if client is not None:
                    client.transport.close()
            self._v2 = self._v3 = None

    def call(
        self, what: str, fn: Callable[[], T], *, idempotent: bool, deadline: float | None = None
    ) -> T:
        """``fn`` (one globus-sdk request) under our policy, the rate limit and the deadline."""
        policy = self.policy
        if deadline is not None:
            policy = RetryPolicy(policy.attempts, policy.backoff, policy.max_backoff, deadline)
        started = time.monotonic()

        def attempt() -> T:
            left = policy.deadline - (time.monotonic() - started)
            self.bucket.acquire(max(0.0, left - 0.05))
            return self._once(what, fn)

        def silent(exc: BaseException) -> bool:
            return isinstance(exc, EdgeNetworkError) and exc.silent and exc.maybe_sent

        attempt_no = 0
        while True:
            attempt_no += 1
            try:
                return attempt()
            except EdgeAPIError as exc:
                # a request not answered in time is never sent again (the service is silent:
                # the plugin call's budget stops asking); others follow the policy's checks
                if silent(exc) or attempt_no >= policy.attempts:
                    raise
                if not is_retryable(exc, idempotent=idempotent):
                    raise
                wait = policy.delay(attempt_no, getattr(exc, "retry_after", None))
                if time.monotonic() - started + wait >= policy.deadline:
                    raise
                time.sleep(wait)

    def _once(self, what: str, fn: Callable[[], T], refreshed: bool = False) -> T:
        sent = self.auth.headers()  # a token now (its errors mapped), before anything is sent
        self.requests[what] += 1
        try:
            return fn()
        except globus_sdk.GlobusAPIError as exc:
            status = int(exc.http_status)
            if status in (401, 403):
                if status == 401 and not refreshed and self.auth.refresh(sent):
                    if self.auth.headers() != sent:  # one more try with a new token only
                        return self._once(what, fn, refreshed=True)
                refused = EdgeAuthError(
                    f"{what}: credential refused (HTTP {status}) {_service_words(exc)}".rstrip(),
                    status=status,
                )
                note = getattr(self.auth, "credential", None)
                if note is not None:
                    note.note_refusal(str(refused))
                raise refused from None
            if status == 429 or status >= 500:
                retry_after = parse_retry_after(exc.headers.get("Retry-After"))
                if status == 429:
                    self.bucket.hold(retry_after if retry_after is not None else 10.0)
                raise StatusError(
                    f"{what}: HTTP {status} {_service_words(exc)}".rstrip(),
                    status,
                    retry_after,
                    maybe_sent=status != 429,
                ) from None
            raise EdgeAPIError(
                f"{what}: HTTP {status}: {_service_words(exc)}", status=status
            ) from None
        except globus_sdk.NetworkError as exc:
            raise network_error(what, exc) from None
        except requests.RequestException as exc:
            raise network_error(what, exc) from None
