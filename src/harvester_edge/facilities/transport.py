"""HTTP transport for httpx-based services: timeouts, error taxonomy, pluggable auth, retries.

The facility clients call ``HttpxTransport.request``; it turns every httpx failure into our
``EdgeNetworkError``/``EdgeAPIError``/``EdgeAuthError`` and applies the ``RetryPolicy``.
Bodies are form fields (``data=``), JSON (``json=``) or bytes the caller encoded
(``content=``: the same bytes on every attempt, e.g. IRI's canonical JSON under an
``Idempotency-Key``); ``headers=`` adds request headers.  ``with_response=True`` answers a
``Reply`` (status, headers, decoded body) instead of the body alone, for a caller that reads
an answer's headers (IRI's ``Idempotency-Key-Reply``).

Authentication is an ``Auth`` (``facilities/auth.py``): the transport asks it for headers
before each authenticated attempt and sends them through one plain ``httpx.Client`` (no
library that renews tokens behind our back).  401 and 403 (NERSC answers an expired token
with 403) make the auth ``refresh``; when it has a new credential the request gets exactly
one more try; a second refusal (or one with nothing to refresh) is reported to the auth
(which may then stop asking for a while) and raised as ``EdgeAuthError``.  Where 403 can
also mean "not allowed for this resource" (a utility a client may not use, a file outside
the allowed roots) the caller says so with ``forbidden=`` and a 403 is then an ordinary
``EdgeAPIError(status=403)``.

Error taxonomy (after the retries the policy allows):

- no connection / timeout: ``EdgeNetworkError`` (``maybe_sent`` when it may have arrived);
- 401/403 on an authenticated request: ``EdgeAuthError`` (see above);
- 409 (conflict: a request with the same idempotency key still in flight), 429 and 5xx:
  ``StatusError``, transient, with ``Retry-After``; ``maybe_sent`` for a non-idempotent
  request answered 409 or 5xx (the job may exist: look the tag up);
- 422 (unprocessable: the service understood the request and will not do it): not
  transient, the service's ``detail`` in the message;
- other 4xx: ``EdgeAPIError`` with the status, not transient.

Error bodies are read as RFC 7807 problems (``{type, title, status, detail}``), FastAPI
validation lists, or ``error``/``detail``/``message`` fields; a ``detail`` that is itself
JSON text (S3M) is read one level down.  Every attempt's timeout is capped by what is left
of the call's deadline, and no attempt starts once it has passed.  Messages carry the method,
path and status and the service's words, never headers, tokens or bodies we sent: a service
echoing a credential has it replaced by ``***``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from json import loads as json_loads
from typing import Any, Literal, NamedTuple

import httpx

from ..edge.retry import RetryPolicy, Timeouts, call_with_retry, parse_retry_after
from ..errors import EdgeAPIError, EdgeAuthError, EdgeNetworkError
from .auth import Auth, secret_values

NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)

#: What a 403 means for one request: ``auth`` a refused credential (refresh once, then
#: EdgeAuthError and the auth's back-off); ``either`` refresh once, then an ordinary
#: EdgeAPIError(403) (an expired token or a forbidden operation); ``resource`` an ordinary
#: EdgeAPIError(403) at once (a forbidden file or job: no token churn).
Forbidden = Literal["auth", "either", "resource"]

#: statuses answered as a transient ``StatusError``
TRANSIENT_STATUSES = frozenset({409, 429})
MASK = "***"


class Reply(NamedTuple):
    """One successful answer in full (``request(..., with_response=True)``): the HTTP status,
    the response headers (case-insensitive) and the decoded JSON body (None when empty)."""

    status: int
    headers: Mapping[str, str]
    body: Any


class StatusError(EdgeAPIError):
    """The service answered 409, 429 or 5xx.  ``status`` tells which; for a non-idempotent
    request ``maybe_sent`` is True unless it was a 429 (the service did nothing), so a
    submitter can look its job up by tag before trying again."""

    def __init__(
        self, message: str, status: int, retry_after: float | None, *, maybe_sent: bool = False
    ):
        super().__init__(message, status=status, transient=True)
        self.retry_after = retry_after
        self.maybe_sent = maybe_sent


def _is_problem(body: Mapping[str, Any]) -> bool:
    return ("title" in body or "type" in body) and ("status" in body or "detail" in body)


def describe(value: Any, depth: int = 0, *, decoded: bool = False) -> str:
    """The service's words from a decoded error body: an RFC 7807 problem as ``title:
    detail``, a FastAPI validation list as ``loc: msg; ...``, the first of ``error``,
    ``detail``, ``message``, ``errors``; JSON text inside a field (S3M) read once more."""
    if depth > 8:
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if not decoded and text[:1] in ("{", "["):
            try:
                return describe(json_loads(text), depth + 1, decoded=True)
            except ValueError:
                pass
        return text
    if isinstance(value, list):
        parts = (describe(v, depth + 1, decoded=decoded) for v in value)
        return "; ".join(x for x in parts if x)
    if isinstance(value, dict):
        if "msg" in value:  # FastAPI/pydantic validation item
            loc = value.get("loc")
            where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
            return f"{where}: {value['msg']}" if where else str(value["msg"])
        if _is_problem(value):
            title = str(value.get("title") or "")
            kind = str(value.get("type") or "")
            head = title or (kind if kind not in ("", "about:blank") else "")
            detail = value.get("detail")
            said = describe(detail, depth + 1, decoded=decoded) if detail else ""
            return ": ".join(x for x in (head, said) if x)
        for key in ("error", "detail", "message", "errors"):
            if value.get(key):
                return describe(value[key], depth + 1, decoded=decoded)
    return str(value)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def error_text(response: httpx.Response, limit: int = 300, secrets: tuple[str, ...] = ()) -> str:
    """The service's own error message, shortened, credentials masked; never the request."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
    else:
        text = describe(body)
    return redact(text, secrets)[:limit].strip()


class HttpxTransport:
    """Requests against one base URL, authenticated by ``auth`` (None: never)."""

    def __init__(
        self,
        service: str,
        base_url: str,
        auth: Auth | None,
        *,
        timeouts: Timeouts,
        policy: RetryPolicy,
        headers: Mapping[str, str] | None = None,
    ):
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeouts = timeouts
        self.policy = policy
        self._headers = {"accept": "application/json", **(headers or {})}
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HttpxTransport({self.service!r}, {self.base_url!r})"

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    headers=self._headers,
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
        data: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        authenticated: bool = True,
        forbidden: Forbidden = "auth",
        with_response: bool = False,
    ) -> Any:
        """Send one logical request (with retries) and return the decoded JSON answer (None
        for an empty one), or with ``with_response`` a ``Reply``.  ``data`` is sent
        form-encoded, ``json`` as JSON, ``content`` as the given bytes (one of them at most;
        with ``content`` the caller sets the content type in ``headers``); ``headers`` are
        added to this request (the auth's headers win over them).  A request carrying an
        idempotency key may pass ``idempotent=True``."""
        if sum(body is not None for body in (data, json, content)) > 1:
            raise ValueError("a request has one body (form fields, JSON or bytes), not both")
        started = time.monotonic()
        deadline_at = started + self.policy.deadline
        call = _Call(
            method, path, params, data, json, dict(headers or {}), idempotent, authenticated,
            forbidden, deadline_at, content, with_response,
        )  # fmt: skip
        return call_with_retry(
            lambda: self._send(call),
            self.policy,
            idempotent=idempotent,
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

    def _send(self, call: _Call, refreshed: bool = False) -> Any:
        what = f"{self.service} {call.method} /{call.path.lstrip('/').split('?', 1)[0]}"
        url = f"{self.base_url}/{call.path.lstrip('/')}"
        auth = self.auth if call.authenticated else None
        sent = auth.headers() if auth is not None else {}
        secrets = secret_values(sent)
        timeout = self._timeout(what, call.deadline_at)
        own = {name.lower() for name in sent}
        headers = {k: v for k, v in call.headers.items() if k.lower() not in own} | sent
        try:
            response = self._http().request(
                call.method, url, params=call.params, data=call.data, json=call.json,
                content=call.content, headers=headers, timeout=timeout,
            )  # fmt: skip
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
                f"{what}: connection failed ({type(exc).__name__})", maybe_sent=True, silent=False
            ) from None
        status = response.status_code
        if auth is not None and sent and status in (401, 403):
            forbidden = EdgeAPIError(
                f"{what}: HTTP 403: {error_text(response, secrets=secrets)}", status=403
            )
            if status == 403 and call.forbidden == "resource":
                raise forbidden
            if not refreshed and time.monotonic() < call.deadline_at and auth.refresh(sent):
                return self._send(call, refreshed=True)
            if status == 403 and call.forbidden == "either":
                raise forbidden
            refusal = auth.refused(sent, status)
            raise EdgeAuthError(f"{what}: {refusal}", status=status)
        if status in TRANSIENT_STATUSES or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            word = " conflict" if status == 409 else ""
            raise StatusError(
                f"{what}: HTTP {status}{word} {error_text(response, 120, secrets)}".rstrip(),
                status,
                retry_after,
                maybe_sent=not call.idempotent and status != 429,
            )
        if status == 422:
            raise EdgeAPIError(
                f"{what}: HTTP 422 unprocessable: {error_text(response, secrets=secrets)}",
                status=422,
            )
        if status >= 400:
            raise EdgeAPIError(
                f"{what}: HTTP {status}: {error_text(response, secrets=secrets)}", status=status
            )
        body = None
        if response.content:
            try:
                body = response.json()
            except ValueError:
                raise EdgeAPIError(f"{what}: the answer is not JSON", status=status) from None
        return Reply(status, response.headers, body) if call.with_response else body


@dataclass(frozen=True)
class _Call:
    """One logical request's fixed parts, the same for every attempt (shown without body or
    headers)."""

    method: str
    path: str
    params: Any = field(repr=False)
    data: Mapping[str, Any] | None = field(repr=False)
    json: Any = field(repr=False)
    headers: Mapping[str, str] = field(repr=False)
    idempotent: bool
    authenticated: bool
    forbidden: Forbidden
    deadline_at: float
    content: bytes | None = field(default=None, repr=False)
    with_response: bool = False


def run_bounded(fn: Callable[[Any], Any], items: list[Any], workers: int) -> list[Any]:
    """``[fn(x) for x in items]`` on at most ``workers`` threads, in order (no pool for one)."""
    if len(items) <= 1 or workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))
