"""HTTP transport for httpx-based services: timeouts, error taxonomy, bearer auth, retries.

The facility clients call ``HttpxTransport.request``; it turns every httpx failure into our
``EdgeNetworkError``/``EdgeAPIError``/``EdgeAuthError`` and applies the ``RetryPolicy``.

Authentication is a :class:`BearerAuth`: the transport asks it for a token before each
authenticated attempt and sends ``Authorization: Bearer <token>`` itself through one plain
``httpx.Client`` (no library that renews tokens behind our back).  401 and 403 (NERSC answers
an expired token with 403) invalidate *that* token and get exactly one more try with a new
one; a second refusal is reported to the ``BearerAuth`` (which may then stop asking for a
while) and raised as ``EdgeAuthError``.  Where 403 can also mean "not allowed for this
resource" (a utility a client may not use, a file outside the allowed roots) the caller says
so with ``forbidden=`` and a 403 is then an ordinary ``EdgeAPIError(status=403)``.

Every attempt's timeout is capped by what is left of the call's deadline, and no attempt
starts once it has passed.  Messages carry the method, path and status, never headers, tokens
or bodies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol

import httpx

from ..edge.retry import RetryPolicy, Timeouts, call_with_retry, parse_retry_after
from ..errors import EdgeAPIError, EdgeAuthError, EdgeNetworkError

NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)

#: What a 403 means for one request: ``auth`` a refused credential (refresh once, then
#: EdgeAuthError and the auth's back-off); ``either`` refresh once, then an ordinary
#: EdgeAPIError(403) (an expired token or a forbidden operation); ``resource`` an ordinary
#: EdgeAPIError(403) at once (a forbidden file or job: no token churn).
Forbidden = Literal["auth", "either", "resource"]


class BearerAuth(Protocol):
    """Where the transport gets its access tokens (e.g. the SFAPI Iris credential)."""

    def bearer(self) -> str:
        """A token valid now.  Raises EdgeAuthError (refused, unusable key) or
        EdgeNetworkError(maybe_sent=False) (the token endpoint could not answer)."""
        ...

    def invalidate(self, token: str) -> None:
        """The API refused ``token``: drop it if it is still the current one."""
        ...

    def refused(self, token: str, status: int) -> EdgeAuthError:
        """The API refused a token fetched after ``invalidate``: remember, return the error."""
        ...


class StatusError(EdgeAPIError):
    """The service answered 429 or 5xx.  ``status`` tells which; for a non-idempotent request
    ``maybe_sent`` is True unless it was a 429 (the service did nothing), so a submitter can
    look its job up by tag before trying again."""

    def __init__(
        self, message: str, status: int, retry_after: float | None, *, maybe_sent: bool = False
    ):
        super().__init__(message, status=status, transient=True)
        self.retry_after = retry_after
        self.maybe_sent = maybe_sent


def error_text(response: httpx.Response, limit: int = 300) -> str:
    """The service's own error message from a JSON answer, shortened; never the request."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:limit].strip()
    if isinstance(body, dict):
        for key in ("error", "detail", "message", "errors"):
            if body.get(key):
                return str(body[key])[:limit]
    return str(body)[:limit]


class HttpxTransport:
    """Requests against one base URL, with bearer tokens from ``auth``."""

    def __init__(
        self,
        service: str,
        base_url: str,
        auth: BearerAuth | None,
        *,
        timeouts: Timeouts,
        policy: RetryPolicy,
        stop: threading.Event | None = None,
    ):
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeouts = timeouts
        self.policy = policy
        self._stop = stop
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HttpxTransport({self.service!r}, {self.base_url!r})"

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    headers={"accept": "application/json"},
                    timeout=httpx.Timeout(self.timeouts.read, connect=self.timeouts.connect),
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        data: dict[str, Any] | None = None,
        idempotent: bool = True,
        authenticated: bool = True,
        forbidden: Forbidden = "auth",
    ) -> Any:
        """Send one logical request (with retries) and return the decoded JSON answer."""
        started = time.monotonic()
        deadline_at = started + self.policy.deadline

        def once() -> Any:
            return self._send(
                method, path, params, data, authenticated, idempotent, forbidden, deadline_at
            )

        return call_with_retry(
            once,
            self.policy,
            idempotent=idempotent,
            stop=self._stop,
            retry_after_of=lambda e: getattr(e, "retry_after", None),
            started=started,
        )

    def _timeout(self, what: str, deadline_at: float) -> httpx.Timeout:
        left = deadline_at - time.monotonic()
        if left <= 0:
            raise EdgeNetworkError(f"{what}: call deadline reached", maybe_sent=False)
        return httpx.Timeout(
            min(self.timeouts.read, left), connect=min(self.timeouts.connect, left)
        )

    def _send(
        self,
        method: str,
        path: str,
        params: Any,
        data: dict[str, Any] | None,
        authenticated: bool,
        idempotent: bool,
        forbidden: Forbidden,
        deadline_at: float,
        refreshed: bool = False,
    ) -> Any:
        what = f"{self.service} {method} /{path.lstrip('/').split('?', 1)[0]}"
        url = f"{self.base_url}/{path.lstrip('/')}"
        auth = self.auth if authenticated else None
        token = auth.bearer() if auth is not None else None
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        timeout = self._timeout(what, deadline_at)
        try:
            response = self._http().request(
                method, url, params=params, data=data, headers=headers, timeout=timeout
            )
        except NOT_SENT as exc:
            raise EdgeNetworkError(
                f"{what}: cannot connect ({type(exc).__name__})", maybe_sent=False
            ) from None
        except httpx.TimeoutException as exc:
            raise EdgeNetworkError(
                f"{what}: no answer in time ({type(exc).__name__})", maybe_sent=True
            ) from None
        except httpx.TransportError as exc:
            raise EdgeNetworkError(
                f"{what}: connection failed ({type(exc).__name__})", maybe_sent=True
            ) from None
        status = response.status_code
        if auth is not None and token is not None and status in (401, 403):
            if status == 403 and forbidden == "resource":
                raise EdgeAPIError(f"{what}: HTTP 403: {error_text(response)}", status=403)
            if not refreshed and time.monotonic() < deadline_at:
                auth.invalidate(token)
                return self._send(
                    method, path, params, data, authenticated, idempotent, forbidden,
                    deadline_at, refreshed=True,
                )  # fmt: skip
            if status == 403 and forbidden == "either":
                raise EdgeAPIError(f"{what}: HTTP 403: {error_text(response)}", status=403)
            refusal = auth.refused(token, status)
            raise EdgeAuthError(f"{what}: {refusal}", status=status)
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise StatusError(
                f"{what}: HTTP {status} {error_text(response, 120)}".rstrip(),
                status,
                retry_after,
                maybe_sent=not idempotent and status != 429,
            )
        if status >= 400:
            raise EdgeAPIError(f"{what}: HTTP {status}: {error_text(response)}", status=status)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise EdgeAPIError(f"{what}: the answer is not JSON", status=status) from None


def run_bounded(fn: Callable[[Any], Any], items: list[Any], workers: int) -> list[Any]:
    """``[fn(x) for x in items]`` on at most ``workers`` threads, in order (no pool for one)."""
    if len(items) <= 1 or workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))
