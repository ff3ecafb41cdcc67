"""HTTP transport for httpx-based services: timeouts, error taxonomy, auth refresh, retries.

The facility clients call ``HttpxTransport.request``; it turns every httpx/authlib failure into
our ``EdgeNetworkError``/``EdgeAPIError``/``EdgeAuthError`` and applies the ``RetryPolicy``.
401 and 403 (NERSC answers an expired token with 403) get exactly one token refresh and one
more try, then fail.  Messages carry the method, path and status, never headers or bodies.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx

from ..edge.retry import RetryPolicy, Timeouts, call_with_retry, parse_retry_after
from ..errors import EdgeAPIError, EdgeAuthError, EdgeNetworkError

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class _RetryableStatus(EdgeAPIError):
    def __init__(self, message: str, status: int, retry_after: float | None):
        super().__init__(message, status=status, transient=True)
        self.retry_after = retry_after


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
    """Requests against one base URL through a (possibly token-managing) httpx client."""

    def __init__(
        self,
        service: str,
        base_url: str,
        session: Callable[[], httpx.Client],
        *,
        timeouts: Timeouts,
        policy: RetryPolicy,
        refresh_auth: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
    ):
        self.service = service
        self.base_url = base_url.rstrip("/")
        self._session = session
        self.timeouts = timeouts
        self.policy = policy
        self._refresh_auth = refresh_auth
        self._stop = stop

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        data: dict[str, Any] | None = None,
        idempotent: bool = True,
        authenticated: bool = True,
    ) -> Any:
        """Send one logical request (with retries) and return the decoded JSON answer."""

        def once() -> Any:
            return self._send(method, path, params, data, authenticated, refreshed=False)

        return call_with_retry(
            once,
            self.policy,
            idempotent=idempotent,
            stop=self._stop,
            retry_after_of=lambda e: getattr(e, "retry_after", None),
        )

    def _send(
        self,
        method: str,
        path: str,
        params: Any,
        data: dict[str, Any] | None,
        authenticated: bool,
        refreshed: bool,
    ) -> Any:
        what = f"{self.service} {method} /{path.lstrip('/').split('?', 1)[0]}"
        timeout = httpx.Timeout(self.timeouts.read, connect=self.timeouts.connect)
        url = f"{self.base_url}/{path.lstrip('/')}"
        try:
            session = self._session() if authenticated else None
            if session is None:
                with httpx.Client(timeout=timeout) as anon:
                    response = anon.request(method, url, params=params, data=data)
            else:
                response = session.request(method, url, params=params, data=data, timeout=timeout)
        except _NOT_SENT as exc:
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
        except EdgeAPIError:
            raise
        except Exception as exc:  # authlib token errors and the like: never leak their text
            raise EdgeAuthError(
                f"{what}: could not obtain an access token ({type(exc).__name__})"
            ) from None
        status = response.status_code
        if status in (401, 403) and authenticated:
            if not refreshed and self._refresh_auth is not None:
                self._refresh_auth()
                return self._send(method, path, params, data, authenticated, refreshed=True)
            raise EdgeAuthError(f"{what}: credentials refused (HTTP {status})", status=status)
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise _RetryableStatus(
                f"{what}: HTTP {status} {error_text(response, 120)}".rstrip(), status, retry_after
            )
        if status >= 400:
            raise EdgeAPIError(f"{what}: HTTP {status}: {error_text(response)}", status=status)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise EdgeAPIError(f"{what}: the answer is not JSON", status=status) from None
