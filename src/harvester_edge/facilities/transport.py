"""HTTP transport for every edge service: timeouts, error taxonomy, pluggable auth, retries.

The facility clients call ``Transport.request``; it turns every failure into our
``EdgeNetworkError``/``EdgeAPIError``/``EdgeAuthError`` and applies the ``RetryPolicy``.
Bodies are form fields (``data=``), JSON (``json=``) or bytes the caller encoded
(``content=``: the same bytes on every attempt, e.g. IRI's canonical JSON under an
``Idempotency-Key``); ``headers=`` adds request headers (an ``Idempotency-Key``, ...).
``with_response=True`` answers a ``Reply`` (status, headers, decoded body) instead of the
body alone, for a caller that reads an answer's headers (IRI's ``Idempotency-Key-Reply``).
A path that is a whole ``http(s)://`` URL is sent there (a status page on another host) with
the same rules.

The HTTP library is a ``Sender``: ``HttpxSender`` (SFAPI and IRI, the default:
``HttpxTransport``) or ``RequestsSender`` (S3M, on ``requests``: one ``Session`` with a pool
sized for the plugins' concurrency, no redirects, no ``.netrc``).  A sender only sends (form
fields, JSON or bytes) and maps its library's failures onto three kinds (``SendFailure``):
not sent (connection refused, connect timeout, TLS handshake), no answer in time, connection
broken after sending; everything else, the retry policy, the deadline, auth and redaction,
is the transport's, the same for both.

Authentication is an ``Auth`` (``facilities/auth.py``): the transport asks it for headers
before each authenticated attempt and sends them through its plain sender (no
library that renews tokens behind our back).  401 and 403 (NERSC answers an expired token
with 403) make the auth ``refresh``; when it has a new credential the request gets exactly
one more try; a second refusal (or one with nothing to refresh) is reported to the auth
(which may then stop asking for a while) and raised as ``EdgeAuthError``.  Where 403 can
also mean "not allowed for this resource" (a utility a client may not use, a file outside
the allowed roots) the caller says so with ``forbidden=`` and a 403 is then an ordinary
``EdgeAPIError(status=403)``.

Error taxonomy (after the retries the policy allows):

- no connection / timeout: ``EdgeNetworkError`` (``maybe_sent`` when it may have arrived);
  a request not answered in time is never sent again, idempotent or not: the service is
  silent, and the plugin call's budget (``edge/budget.py``) answers "could not" for the rest
  of the call at once, so a silent service holds a call for one timeout, not attempts x it;
- 401/403 on an authenticated request: ``EdgeAuthError`` (see above);
- 409 (conflict: a request with the same idempotency key still in flight), 429 and 5xx:
  ``StatusError``, transient, with ``Retry-After``; ``maybe_sent`` for a non-idempotent
  request answered 409 or 5xx (the job may exist: look the tag up);
- 422 (unprocessable: the service understood the request and will not do it): not
  transient, the service's ``detail`` in the message;
- other 4xx: ``EdgeAPIError`` with the status, not transient;
- an error answer a request's ``refusal`` reads as the service's final word (slurmrestd's
  HTTP 500 carrying Slurm's "Invalid account" for a submit, 404 "Invalid job id" for a job):
  ``RefusedError``, not transient, never retried, never maybe-sent.

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
from typing import Any, Literal, NamedTuple, Protocol
from urllib.parse import urlsplit

import httpx
import requests
import requests.adapters
import urllib3.exceptions

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


class RefusedError(EdgeAPIError):
    """An error answer that is the service's final word on this request (a request's
    ``refusal`` said so): not transient, never retried.  ``status`` is None, so that no caller
    reads a slurmrestd 500 that says "Invalid account" as a 5xx that may have created a job;
    ``http_status`` keeps the status."""

    def __init__(self, message: str, http_status: int):
        super().__init__(message, status=None, transient=False)
        self.http_status = http_status


#: A request's reading of an error answer: ``(status, decoded body or None)`` -> the service's
#: words when the answer is its final refusal (raised as ``RefusedError``), else None (the
#: taxonomy above applies).  Called for every status >= 400 but 429 and an auth refusal.
Refusal = Callable[[int, Any], str | None]


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


class Response(Protocol):
    """What the transport reads of an answer (``httpx.Response`` and ``requests.Response``
    both are one)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


def _decoded(response: Response) -> Any:
    """The answer's JSON, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def error_text(response: Response, limit: int = 300, secrets: tuple[str, ...] = ()) -> str:
    """The service's own error message, shortened, credentials masked; never the request."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
    else:
        text = describe(body)
    return redact(text, secrets)[:limit].strip()


# ------------------------------------------------------------------------------ senders
class SendFailure(Exception):
    """A request that got no HTTP answer, as a sender reports it.  ``kind``: ``not_sent``
    (it surely never reached the service), ``timeout`` (no answer in time: it may have), or
    ``broken`` (the connection failed after sending: it may have); ``name`` is the library's
    exception class name (never its text, which may hold a URL with a query)."""

    NOT_SENT = "not_sent"
    TIMEOUT = "timeout"
    BROKEN = "broken"

    def __init__(self, kind: str, name: str):
        super().__init__(f"{kind} ({name})")
        self.kind = kind
        self.name = name


class Sender(Protocol):
    """One HTTP library behind the transport: sends one attempt, raises only
    ``SendFailure`` for a request without an answer; thread-safe; its connections are made
    on first use (never in a constructor) and released by ``close``."""

    def send(
        self,
        method: str,
        url: str,
        *,
        params: Any,
        data: Mapping[str, Any] | None,
        json: Any,
        content: bytes | None = None,
        headers: Mapping[str, str],
        timeout: tuple[float, float],
    ) -> Response: ...

    def close(self) -> None: ...


class HttpxSender:
    """``httpx.Client`` (made on first use): SFAPI's sender."""

    def __init__(self, headers: Mapping[str, str], timeouts: Timeouts):
        self._headers = dict(headers)
        self._timeouts = timeouts
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "HttpxSender()"

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    headers=self._headers,
                    timeout=httpx.Timeout(self._timeouts.read, connect=self._timeouts.connect),
                )
            return self._client

    def send(
        self,
        method: str,
        url: str,
        *,
        params: Any,
        data: Mapping[str, Any] | None,
        json: Any,
        content: bytes | None = None,
        headers: Mapping[str, str],
        timeout: tuple[float, float],
    ) -> Response:
        connect, read = timeout
        try:
            return self._http().request(
                method, url, params=params, data=data, json=json, content=content,
                headers=dict(headers), timeout=httpx.Timeout(read, connect=connect),
            )  # fmt: skip
        except NOT_SENT as exc:
            raise SendFailure(SendFailure.NOT_SENT, type(exc).__name__) from None
        except httpx.TimeoutException as exc:
            raise SendFailure(SendFailure.TIMEOUT, type(exc).__name__) from None
        except httpx.TransportError as exc:
            raise SendFailure(SendFailure.BROKEN, type(exc).__name__) from None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _no_netrc(request: Any) -> Any:
    """An explicit no-op auth: with it ``requests`` never reads ``~/.netrc`` (which would
    put a Basic ``Authorization`` over ours, or on an unauthenticated request)."""
    return request


#: ``requests`` errors raised before anything is sent (a URL or header it cannot use)
_REQUESTS_NOT_SENT = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidHeader,
)


def _requests_failure(exc: requests.RequestException) -> SendFailure:
    """A ``requests`` failure as one of the three kinds.  ``ConnectionError`` covers both
    "could not connect" (urllib3's ``NewConnectionError``/``NameResolutionError``, a connect
    timeout: not sent) and "connection aborted" after sending (maybe sent): the cause tells."""
    name = type(exc).__name__
    if isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError)):
        return SendFailure(SendFailure.NOT_SENT, name)
    if isinstance(exc, _REQUESTS_NOT_SENT):
        return SendFailure(SendFailure.NOT_SENT, name)
    if isinstance(exc, requests.exceptions.Timeout):  # ReadTimeout
        return SendFailure(SendFailure.TIMEOUT, name)
    if isinstance(exc, requests.exceptions.ConnectionError):
        seen: set[int] = set()
        todo: list[Any] = [exc]
        while todo:
            item = todo.pop()
            if item is None or id(item) in seen:
                continue
            seen.add(id(item))
            if isinstance(item, urllib3.exceptions.ConnectTimeoutError):  # NewConnectionError too
                return SendFailure(SendFailure.NOT_SENT, type(item).__name__)
            if isinstance(item, urllib3.exceptions.MaxRetryError):
                todo.append(item.reason)
            if isinstance(item, BaseException):
                todo += [a for a in item.args if isinstance(a, BaseException)]
                todo += [item.__cause__, item.__context__]
    return SendFailure(SendFailure.BROKEN, name)


class RequestsSender:
    """One ``requests.Session`` (made on first use) shared by every thread of a client.

    Its connection pool keeps up to ``pool_size`` connections per host (the plugins' threads
    times their bounded concurrency); urllib3 retries nothing (the transport's policy
    decides), redirects are not followed and ``.netrc`` is never read; proxies from the
    environment are honoured.  ``requests`` documents ``Session`` as not formally
    thread-safe; what is shared here (the pool, default headers set once) is, in practice,
    and nothing else (cookies are not used) is written after creation."""

    def __init__(self, headers: Mapping[str, str], *, pool_size: int = 32):
        self._headers = dict(headers)
        self._pool_size = max(1, pool_size)
        self._session: requests.Session | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RequestsSender(pool_size={self._pool_size})"

    def _http(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                session = requests.Session()
                adapter = requests.adapters.HTTPAdapter(
                    pool_connections=4, pool_maxsize=self._pool_size, max_retries=0
                )
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                session.headers.update(self._headers)
                self._session = session
            return self._session

    def send(
        self,
        method: str,
        url: str,
        *,
        params: Any,
        data: Mapping[str, Any] | None,
        json: Any,
        content: bytes | None = None,
        headers: Mapping[str, str],
        timeout: tuple[float, float],
    ) -> Response:
        try:
            return self._http().request(
                method, url, params=params, data=content if content is not None else data,
                json=json, headers=dict(headers), timeout=timeout, allow_redirects=False,
                auth=_no_netrc,
            )  # fmt: skip
        except requests.RequestException as exc:
            raise _requests_failure(exc) from None

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None


# ------------------------------------------------------------------------------ transport
class Transport:
    """Requests against one base URL, authenticated by ``auth`` (None: never), sent by
    ``sender`` (default: an ``HttpxSender``; several transports may share one sender, e.g.
    one session per credential)."""

    def __init__(
        self,
        service: str,
        base_url: str,
        auth: Auth | None,
        *,
        timeouts: Timeouts,
        policy: RetryPolicy,
        headers: Mapping[str, str] | None = None,
        sender: Sender | None = None,
    ):
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeouts = timeouts
        self.policy = policy
        self._headers = {"accept": "application/json", **(headers or {})}
        self.sender: Sender = sender or HttpxSender(self._headers, timeouts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.service!r}, {self.base_url!r})"

    def close(self) -> None:
        self.sender.close()

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
        refusal: Refusal | None = None,
    ) -> Any:
        """Send one logical request (with retries) and return the decoded JSON answer (None
        for an empty one), or with ``with_response`` a ``Reply``.  ``data`` is sent
        form-encoded, ``json`` as JSON, ``content`` as the given bytes (one of them at most;
        with ``content`` the caller sets the content type in ``headers``); ``headers`` are
        added to this request (the auth's headers win over them).  A request carrying an
        idempotency key may pass ``idempotent=True``.  ``refusal`` reads an error answer that
        may be the service's final word (see ``Refusal``)."""
        if sum(body is not None for body in (data, json, content)) > 1:
            raise ValueError("a request has one body (form fields, JSON or bytes), not both")
        started = time.monotonic()
        deadline_at = started + self.policy.deadline
        call = _Call(
            method, path, params, data, json, dict(headers or {}), idempotent, authenticated,
            forbidden, deadline_at, refusal, content, with_response,
        )  # fmt: skip
        try:
            return call_with_retry(
                lambda: self._attempt(call),
                self.policy,
                idempotent=idempotent,
                retry_after_of=lambda e: getattr(e, "retry_after", None),
                started=started,
            )
        except _Unanswered as unanswered:
            raise unanswered.error from None

    def _attempt(self, call: _Call) -> Any:
        """One attempt; a timeout leaves the retry loop at once (see the module docstring)."""
        try:
            return self._send(call)
        except EdgeNetworkError as exc:
            if exc.maybe_sent and exc.silent:
                raise _Unanswered(exc) from None
            raise

    def _timeout(self, what: str, deadline_at: float) -> tuple[float, float]:
        """(connect, read) seconds for one attempt, capped by what is left of the call."""
        left = deadline_at - time.monotonic()
        if left <= 0:
            raise EdgeNetworkError(f"{what}: call deadline reached", maybe_sent=False)
        return min(self.timeouts.connect, left), min(self.timeouts.read, left)

    def _where(self, path: str) -> tuple[str, str]:
        """(URL, the path shown in messages) of a request path or whole URL."""
        if path.startswith(("https://", "http://")):
            return path, urlsplit(path).path or "/"
        shown = "/" + path.lstrip("/").split("?", 1)[0]
        return f"{self.base_url}/{path.lstrip('/')}", shown

    def _send(self, call: _Call, refreshed: bool = False) -> Any:
        url, shown = self._where(call.path)
        what = f"{self.service} {call.method} {shown}"
        auth = self.auth if call.authenticated else None
        sent = auth.headers() if auth is not None else {}
        secrets = secret_values(sent)
        timeout = self._timeout(what, call.deadline_at)
        own = {name.lower() for name in sent}
        headers = {k: v for k, v in call.headers.items() if k.lower() not in own} | sent
        try:
            response = self.sender.send(
                call.method, url, params=call.params, data=call.data, json=call.json,
                content=call.content, headers=headers, timeout=timeout,
            )  # fmt: skip
        except SendFailure as failure:
            if failure.kind == SendFailure.NOT_SENT:
                raise EdgeNetworkError(
                    f"{what}: cannot connect ({failure.name})", maybe_sent=False
                ) from None
            if failure.kind == SendFailure.TIMEOUT:
                raise EdgeNetworkError(
                    f"{what}: no answer in time ({failure.name})", maybe_sent=True
                ) from None
            raise EdgeNetworkError(
                f"{what}: connection failed ({failure.name})", maybe_sent=True, silent=False
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
        if call.refusal is not None and status >= 400 and status != 429:
            said = call.refusal(status, _decoded(response))
            if said:
                raise RefusedError(f"{what}: HTTP {status}: {redact(said, secrets)}", status)
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


class _Unanswered(Exception):
    """A request not answered in time, carried past the retry loop (which retries only
    ``EdgeAPIError``): the caller gets ``error`` after this one attempt."""

    def __init__(self, error: EdgeNetworkError):
        super().__init__(str(error))
        self.error = error


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
    refusal: Refusal | None = field(default=None, repr=False)
    content: bytes | None = field(default=None, repr=False)
    with_response: bool = False


class HttpxTransport(Transport):
    """The transport over httpx (SFAPI's)."""


class RequestsTransport(Transport):
    """The transport over ``requests`` (S3M): on ``sender`` when given (one session shared
    by several transports of one credential), else on a new ``RequestsSender``."""

    def __init__(
        self,
        service: str,
        base_url: str,
        auth: Auth | None,
        *,
        timeouts: Timeouts,
        policy: RetryPolicy,
        headers: Mapping[str, str] | None = None,
        sender: RequestsSender | None = None,
        pool_size: int = 32,
    ):
        merged = {"accept": "application/json", **(headers or {})}
        super().__init__(
            service, base_url, auth, timeouts=timeouts, policy=policy, headers=headers,
            sender=sender or RequestsSender(merged, pool_size=pool_size),
        )  # fmt: skip


def run_bounded(fn: Callable[[Any], Any], items: list[Any], workers: int) -> list[Any]:
    """``[fn(x) for x in items]`` on at most ``workers`` threads, in order (no pool for one)."""
    if len(items) <= 1 or workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))
