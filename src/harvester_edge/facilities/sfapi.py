"""NERSC Superfacility API client.

We do the requests ourselves through ``HttpxTransport`` (``facilities/transport.py``)
because ``sfapi_client``'s own calls retry a POST after a read timeout (duplicate jobs), wait
for tasks in a sleep loop with no timeout, query one job per call, and renew tokens inside
every request with authlib's fixed 60 s leeway (two grants per request once tokens live 60 s
or less).  Its wire formats are what we follow; endpoint shapes: shared/FACILITY_APIS.md.

Credentials (:class:`IrisCredential`, the transport's ``Auth``): the Iris key file in
``sfapi_client``'s format (client id on the first line then the PEM key, or ``.json`` with
``client_id``/``secret``), mode 0600.  Tokens come from one ``private_key_jwt``
client-credentials grant, made in one place under a lock, renewed ``min(60 s, lifetime /
4)`` before they expire and swapped in whole; a refused credential is not asked again for
``refusal_backoff`` seconds; a changed key file is picked up (checked with ``os.stat``
every ``key_check_seconds``).

Interface (``facilities/base.py``): submit posts the spec's Slurm script and answers a task
(``async_submit``); ``poll`` is one squeue request for the ids plus one sacct request for those
gone from the queue or final there (``passthrough.confirm_with_accounting``); ``find`` the
same by job name; the records come from the rows through the Slurm passthrough.

Bulk operations go through the command utility (``POST /utilities/command/{machine}``, an
asynchronous task whose result is ``{"status", "output", "error", "exit_code"}``): one
``scancel`` per chunk of ids, one ``cat`` per chunk of files.  When a client may not use it
(404/403/405, or a task saying the command is not allowed) we fall back, for the rest of the
client's life, to per-job ``DELETE`` and per-file downloads.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import httpx
from authlib.oauth2.rfc7523 import private_key_jwt_sign
from joserfc.jwk import RSAKey
from sfapi_client._models import Outage as SfapiOutage

from ..edge.directives import DIRECTIVE_VALUE
from ..edge.jobs import JobRecord, Resolution, SubmitReceipt
from ..edge.retry import RetryPolicy, Timeouts
from ..edge.sbatch_header import read_header
from ..edge.spec import JobSpec
from ..errors import EdgeAPIError, EdgeAuthError, EdgeConfigError, EdgeNetworkError
from .base import (
    CancelOutcome,
    Capabilities,
    CredentialFacts,
    FacilityClient,
    Health,
    Outage,
    chunks,
    iso_epoch,
)
from .passthrough import confirm_with_accounting, record_from_row
from .tails import split_tail_output, tail_command, tail_of
from .transport import NOT_SENT, HttpxTransport, run_bounded

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.nersc.gov/api/v1.2"
DEFAULT_TOKEN_URL = "https://oidc.nersc.gov/c2id/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CREDENTIAL_KIND = "sfapi-iris-key"

_UNAVAILABLE = {"unavailable"}
_NO_SUCH_JOB = ("invalid job id", "not found", "no jobs found")


@dataclass(frozen=True)
class SFAPISettings:
    """Everything that shapes one SFAPI client (hashable: the lead keys the shared client on
    the whole object).  Endpoint and credential first, then behaviour with defaults."""

    machine: str
    api_url: str
    token_url: str
    key_file: str
    timeouts: Timeouts
    policy: RetryPolicy
    #: after the credential is refused, raise at once (no request) for this many seconds
    refusal_backoff: float = 60.0
    #: how often (seconds) the key file is stat-ed for a rotation
    key_check_seconds: float = 5.0
    #: a token is renewed min(this, lifetime / 4) seconds before it expires
    token_leeway: float = 60.0
    #: job ids per ``scancel`` command
    cancel_chunk: int = 500
    #: files per ``cat`` command
    cat_chunk: int = 500
    #: up to this many task handles are read one by one (``GET /tasks/{id}``), more with
    #: one ``GET /tasks`` (the whole list: the real API has no filter)
    task_reads_max: int = 2
    #: seconds to wait for command tasks (scancel, cat) to finish, polling
    command_wait: float = 10.0
    #: first poll interval for command tasks (doubles, at most 4 s); scancel and cat of a
    #: chunk finish in well under a second, so the first look comes early
    command_poll: float = 0.1
    #: parallel requests when falling back to one request per job or file
    fallback_concurrency: int = 8
    #: when the Iris client itself expires (epoch seconds; Iris shows it, the API does not)
    client_expires: float | None = None


def check_key_file(path: str) -> os.stat_result:
    """Refuse a key file that is missing or that others can read (stat only)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise EdgeAuthError(f"SFAPI key file {path} does not exist") from None
    except OSError as exc:
        raise EdgeAuthError(f"SFAPI key file {path} cannot be read ({exc.strerror})") from None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise EdgeAuthError(
            f"SFAPI key file {path} has mode {mode:04o}; it must be 0600 (run: chmod 600 {path})"
        )
    return st


def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class _Key:
    """One loaded Iris key: the client id (not secret) and the private key object."""

    client_id: str
    key: RSAKey = field(repr=False)
    signature: tuple[int, int, int, int]


def _read_key(path: str) -> _Key:
    """Read an Iris key file (sfapi_client's format); messages never hold any of its text."""
    st = check_key_file(path)
    bad = EdgeAuthError(
        f"SFAPI key file {path} is not an Iris client key "
        "(client id on the first line, then the private key; or JSON client_id/secret)"
    )
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        raise EdgeAuthError(f"SFAPI key file {path} cannot be read") from None
    secret: Any
    try:
        if path.endswith(".json"):
            data = json.loads(text)
            client_id, secret = str(data["client_id"]), data["secret"]
        else:
            client_id, secret = text.split("\n", 1)[0], text[text.find("-----BEGIN") :]
    except (ValueError, KeyError, TypeError):
        raise bad from None
    client_id = client_id.strip()
    if len(client_id) != 13 or not client_id.isalnum():
        raise bad
    try:
        key = RSAKey.import_key(secret)
    except Exception:  # joserfc raises many kinds; none may carry the key text out
        raise bad from None
    if not key.is_private:
        raise bad
    return _Key(client_id, key, _signature(st))


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    renew_at: float  # clock time from which we fetch a new one
    expires_at: float  # clock time after which the service refuses it


class _Refused(Exception):
    def __init__(self, reason: str, status: int | None):
        super().__init__(reason)
        self.reason = reason
        self.status = status


_OAUTH_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,60}$")


def _bearer_of(sent: Mapping[str, str]) -> str:
    return sent.get("Authorization", "").removeprefix("Bearer ")


def _copy(exc: EdgeAPIError) -> EdgeAPIError:
    """A fresh exception with the same meaning (one object must not be raised in many threads)."""
    if isinstance(exc, EdgeNetworkError):
        return EdgeNetworkError(str(exc), maybe_sent=exc.maybe_sent)
    if isinstance(exc, EdgeAuthError):
        return EdgeAuthError(str(exc), status=exc.status)
    return EdgeAPIError(str(exc), status=exc.status, transient=exc.transient)


class IrisCredential:
    """One Iris client key and its access tokens, shared by every thread of one client.

    - One grant at a time (``_grant_lock``); threads that waited for a grant that failed get
      its error instead of asking again; while a still-valid token is being renewed, other
      threads keep using it.
    - The token is replaced whole (no moment without one); ``invalidate`` drops only the
      token that failed, so N threads refused together cause one new grant.
    - A refusal (the token endpoint's OAuth error, or the API refusing a fresh token) makes
      ``bearer()`` raise EdgeAuthError without any request for ``refusal_backoff`` seconds.
      An unreachable or failing (5xx/429) token endpoint is transient: EdgeNetworkError with
      ``maybe_sent=False`` (the API request itself was never sent), no back-off.
    - The key file is stat-ed at most every ``key_check_seconds``; a changed file (inode,
      size or mtime) is read again and swapped in; the current token stays valid (calls in
      flight keep theirs), the back-off is cleared.

    As the transport's ``Auth``: ``headers()`` is ``Authorization: Bearer <token>``,
    ``refresh`` drops the refused token (a new grant always follows), ``refused`` starts the
    back-off.
    """

    def __init__(
        self,
        key_file: str,
        token_url: str,
        *,
        timeouts: Timeouts,
        refusal_backoff: float = 60.0,
        key_check_seconds: float = 5.0,
        token_leeway: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        client_expires: float | None = None,
    ):
        self.key_file = key_file
        #: the Iris client's own expiry (epoch seconds), from the operator's config
        self.client_expires = client_expires
        self.token_url = token_url
        self._timeout = httpx.Timeout(timeouts.read, connect=timeouts.connect)
        self._backoff = refusal_backoff
        self._check_every = key_check_seconds
        self._leeway = token_leeway
        self._clock = clock
        self._key: _Key | None = None
        self._bad_signature: tuple[int, int, int, int] | None = None
        self._bad_error: EdgeAuthError | None = None
        self._file_problem: str | None = None
        self._next_check = float("-inf")
        self._token: _Token | None = None
        self._refused_until = float("-inf")
        self._refusal: str | None = None
        self._grants = 0  # grants started
        self._failure: tuple[int, EdgeAPIError] | None = None  # (grant number, its error)
        self._grant_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._http: httpx.Client | None = None
        self.grant_count = 0  # successful grants (for tests and diagnostics)

    def __repr__(self) -> str:
        return f"IrisCredential({self.key_file!r}, client_id={self.identity!r})"

    @property
    def identity(self) -> str:
        key = self._key
        return key.client_id if key is not None else ""

    # key file ---------------------------------------------------------------------------
    def _loaded_key(self) -> _Key:
        """The current key, read on first use; a bad file raises EdgeAuthError."""
        self._check_file()
        key = self._key
        if key is not None:
            return key
        with self._state_lock:
            if self._key is not None:
                return self._key
            self._key = self._load()
            return self._key

    def _load(self) -> _Key:
        try:
            st = check_key_file(self.key_file)
        except EdgeAuthError as exc:
            self._file_problem = str(exc)
            raise
        if self._bad_error is not None and _signature(st) == self._bad_signature:
            raise _copy(self._bad_error)  # the same bad file: do not read it again
        try:
            key = _read_key(self.key_file)
        except EdgeAuthError as exc:
            self._bad_signature, self._bad_error = _signature(st), exc
            self._file_problem = str(exc)
            raise
        self._file_problem = None
        self._bad_signature = self._bad_error = None
        return key

    def _check_file(self) -> None:
        """At most every ``key_check_seconds``: stat the key file, reload it when changed."""
        now = self._clock()
        if now < self._next_check:
            return
        with self._state_lock:
            if now < self._next_check:
                return
            self._next_check = now + self._check_every
            if self._key is None:
                return  # read on first use
            try:
                st = check_key_file(self.key_file)
            except EdgeAuthError as exc:
                self._file_problem = f"{exc} (using the key read before)"
                return
            if _signature(st) == self._key.signature:
                self._file_problem = None
                return
            try:
                new = self._load()
            except EdgeAuthError:
                return  # keep the key we have; _load noted the problem
            log.info(f"SFAPI key file {self.key_file} changed: client {new.client_id} now")
            self._key = new
            self._refused_until, self._refusal = float("-inf"), None
            self._failure = None

    # tokens -----------------------------------------------------------------------------
    def bearer(self) -> str:
        now = self._clock()
        self._check_file()
        self._raise_if_refused(now)
        tok = self._token
        if tok is not None and now < tok.renew_at:
            return tok.value
        seen = self._grants
        if tok is not None and now < tok.expires_at:
            # due for renewal but still valid: if another thread renews, use this one
            if not self._grant_lock.acquire(blocking=False):
                return tok.value
        else:
            self._grant_lock.acquire()
        try:
            now = self._clock()
            tok = self._token
            if tok is not None and now < tok.renew_at:
                return tok.value
            self._raise_if_refused(now)
            failure = self._failure
            if failure is not None and failure[0] > seen:
                raise _copy(failure[1])  # a grant tried while we waited failed: same answer
            key = self._loaded_key()
            self._grants += 1
            try:
                new = self._grant(key)
            except _Refused as refusal:
                raise self._refuse(refusal.reason, refusal.status) from None
            except EdgeAPIError as exc:
                self._failure = (self._grants, exc)
                raise
            self._failure = None
            self._token = new
            self.grant_count += 1
            return new.value
        finally:
            self._grant_lock.release()

    # the transport's Auth -----------------------------------------------------------------
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.bearer()}"}

    def refresh(self, sent: Mapping[str, str]) -> bool:
        self.invalidate(_bearer_of(sent))
        return True

    def refused(self, sent: Mapping[str, str], status: int) -> EdgeAuthError:
        """The API refused a token we fetched after the previous one was refused."""
        self.invalidate(_bearer_of(sent))
        return self._refuse(f"the API refused a new token (HTTP {status})", status)

    def invalidate(self, token: str) -> None:
        with self._state_lock:
            tok = self._token
            if tok is not None and tok.value == token:
                self._token = replace(tok, renew_at=float("-inf"), expires_at=float("-inf"))

    def _refuse(self, reason: str, status: int | None) -> EdgeAuthError:
        until = self._clock() + self._backoff
        with self._state_lock:
            self._refused_until, self._refusal = until, reason
        log.warning(
            f"SFAPI credential {self.identity or self.key_file} refused: {reason}; "
            f"not asking again for {self._backoff:.0f}s"
        )
        return EdgeAuthError(
            f"SFAPI credential {self.identity or self.key_file} refused: {reason}", status=status
        )

    def _raise_if_refused(self, now: float) -> None:
        if now < self._refused_until:
            left = self._refused_until - now
            raise EdgeAuthError(
                f"SFAPI credential {self.identity or self.key_file} refused: {self._refusal}; "
                f"not asking again for {left:.0f}s"
            )

    def _client(self) -> httpx.Client:
        with self._state_lock:
            if self._http is None:
                self._http = httpx.Client(timeout=self._timeout)
            return self._http

    def _grant(self, key: _Key) -> _Token:
        """One client-credentials grant with a private_key_jwt assertion."""
        what = "SFAPI token endpoint"
        assertion = private_key_jwt_sign(
            key.key, client_id=key.client_id, token_endpoint=self.token_url
        )
        started = self._clock()
        try:
            response = self._client().post(
                self.token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": key.client_id,
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": assertion,
                },
                headers={"accept": "application/json"},
            )
        except NOT_SENT as exc:
            raise EdgeNetworkError(
                f"{what} unreachable ({type(exc).__name__})", maybe_sent=False
            ) from None
        except httpx.HTTPError as exc:
            raise EdgeNetworkError(
                f"{what} did not answer ({type(exc).__name__})", maybe_sent=False
            ) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise EdgeNetworkError(f"{what} answered HTTP {status}", maybe_sent=False)
        try:
            body = response.json()
        except ValueError:
            body = None
        if status >= 400:
            code = body.get("error") if isinstance(body, dict) else None
            if isinstance(code, str) and _OAUTH_CODE.match(code):
                raise _Refused(f"token endpoint: {code} (HTTP {status})", status)
            raise _Refused(f"token endpoint: HTTP {status}", status)
        value = body.get("access_token") if isinstance(body, dict) else None
        kind = str(body.get("token_type") or "bearer") if isinstance(body, dict) else ""
        if not isinstance(value, str) or not value or kind.lower() != "bearer":
            raise EdgeNetworkError(f"{what}: the answer holds no bearer token", maybe_sent=False)
        try:
            lifetime = float(body.get("expires_in") or 600.0)
        except (TypeError, ValueError):
            lifetime = 600.0
        lifetime = max(lifetime, 1.0)
        leeway = min(self._leeway, lifetime / 4)
        return _Token(value, started + lifetime - leeway, started + lifetime)

    # facts ------------------------------------------------------------------------------
    def facts(self) -> CredentialFacts:
        """Kind, client id and the current problem; stat only (reads the key if not yet)."""
        problem: str | None = None
        try:
            self._loaded_key()
        except EdgeAuthError as exc:
            problem = str(exc)
        problem = problem or self._file_problem
        now = self._clock()
        if problem is None and now < self._refused_until:
            left = self._refused_until - now
            problem = f"refused: {self._refusal}; next try in {left:.0f}s"
        expires = self.client_expires
        if problem is None and expires is not None and expires <= time.time():
            problem = client_expired_text(self.identity or self.key_file, expires, self.key_file)
        return CredentialFacts(
            kind=CREDENTIAL_KIND, identity=self.identity, expires_at=expires, problem=problem
        )

    def close(self) -> None:
        with self._state_lock:
            if self._http is not None:
                self._http.close()
                self._http = None


def client_expired_text(client: str, expires: float, key_file: str) -> str:
    """What to tell about an expired Iris client: the date, and what to do."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires))
    return (
        f"SFAPI client {client} expired on {when}; make a new client in Iris and put its "
        f"key in {key_file}"
    )


def _kwargs(key: str, values: Sequence[str]) -> str:
    return f"{key}={','.join(values)}"


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(str(i) for i in items))


#: job ids we put on a scancel command line: N, N_M (array task), N+M (het component)
JOB_ID = re.compile(r"^[0-9]{1,12}(?:[_+][0-9]{1,9})?$")
#: file paths we put on a cat command line unquoted (others go through downloads)
_CAT_SAFE = re.compile(r"^[A-Za-z0-9_./+,=@%:~-]{1,1024}$")


@dataclass
class _Run:
    """One command's outcome: ``done`` (result), ``pending``, ``refused`` or ``error``."""

    state: str
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""


class SFAPIClient(FacilityClient):
    """One SFAPI machine through one Iris client key."""

    service = "sfapi"
    capabilities = Capabilities(async_submit=True, files=True, max_ids_per_query=500)

    def __init__(self, settings: SFAPISettings, *, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self._clock = clock
        self.credentials = IrisCredential(
            settings.key_file,
            settings.token_url,
            timeouts=settings.timeouts,
            refusal_backoff=settings.refusal_backoff,
            key_check_seconds=settings.key_check_seconds,
            token_leeway=settings.token_leeway,
            clock=clock,
            client_expires=settings.client_expires,
        )
        self._user_name: str | None = None
        self._lock = threading.Lock()
        #: why the command utility may not be used (None: not refused so far)
        self.commands_refused: str | None = None
        self.transport = HttpxTransport(
            "sfapi",
            settings.api_url,
            self.credentials,
            timeouts=settings.timeouts,
            policy=settings.policy,
        )

    def __repr__(self) -> str:
        return f"SFAPIClient({self.settings.machine!r}, {self.settings.api_url!r})"

    def close(self) -> None:
        self.transport.close()
        self.credentials.close()

    def credential(self) -> CredentialFacts:
        return self.credentials.facts()

    # FacilityClient ------------------------------------------------------------------------
    def health(self) -> Health:
        answer = self.transport.request(
            "GET", f"status/{self.settings.machine}", authenticated=False
        )
        if not isinstance(answer, dict) or "status" not in answer:
            raise EdgeAPIError("sfapi status: answer has no 'status' field", transient=True)
        state = str(answer["status"])
        notes = "; ".join(str(n) for n in (answer.get("notes") or []))
        message = " ".join(x for x in (str(answer.get("description") or ""), notes) if x)
        outages = self._planned_outages()
        now = time.time()
        current = next((o for o in outages if o.covers(now)), None)
        if state in _UNAVAILABLE:
            return Health(False, state, message, planned=current, outages=outages)
        if current is not None:
            text = f"planned outage {current.until_text()}: {current.text}"
            return Health(False, "maintenance", text, planned=current, outages=outages)
        return Health(True, state, message, outages=outages)

    def _planned_outages(self) -> tuple[Outage, ...]:
        """Announced outages under way or to come, by start; () when they cannot be read
        (the machine's own status, read just before, is the authority then)."""
        try:
            answer = self.transport.request(
                "GET", f"status/outages/planned/{self.settings.machine}", authenticated=False
            )
            listed = [SfapiOutage.model_validate(o) for o in answer or []]
        except (EdgeAPIError, ValueError, TypeError):
            return ()
        now = time.time()
        found = []
        for o in listed:
            if o.status is not None and o.status.value in ("Cancelled", "Completed"):
                continue
            start = o.start_at if o.start_at and o.start_at.tzinfo else None
            end = o.end_at if o.end_at and o.end_at.tzinfo else None
            if start is None and end is None:
                continue
            outage = Outage(
                start=start.timestamp() if start else now,  # no start given: under way
                end=end.timestamp() if end else None,
                text=str(o.description or o.name or "planned outage"),
            )
            if outage.end is None or outage.end > now:
                found.append(outage)
        return tuple(sorted(found, key=lambda o: o.start))

    def submit_body(self, spec: JobSpec) -> str:
        """The spec's Slurm script, with ``#SBATCH --output=<spec.stdout_path>`` after its
        first line when it names no output itself: sbatch would write ``slurm-<id>.out``
        wherever SFAPI runs it, a directory nobody can name; so the batch log is where the
        spec (and the monitor's batch-log copy) says, as S3M's and IRI's fields put it."""
        return with_output(spec)

    def submit(self, spec: JobSpec) -> SubmitReceipt:
        """Post the spec's Slurm script (SFAPI's encoding is the script itself, with its
        output named: ``submit_body``); the answer is a task, resolved by ``resolve``."""
        answer = self.transport.request(
            "POST",
            f"compute/jobs/{self.settings.machine}",
            data={"job": self.submit_body(spec), "isPath": "false"},
            idempotent=False,
        )
        if not isinstance(answer, dict):
            raise EdgeAPIError("sfapi submit: answer is not an object")
        if str(answer.get("status", "")).upper() != "OK" or not answer.get("task_id"):
            raise EdgeAPIError(f"sfapi submit refused: {answer.get('error') or 'no task id'}")
        return SubmitReceipt(handle=str(answer["task_id"]))

    def resolve(self, handles: Sequence[str]) -> dict[str, Resolution]:
        return {h: parse_submit_task(t) for h, t in self._tasks(handles).items()}

    def _tasks(self, handles: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The tasks with these ids (absent: unknown to the service or not readable now).

        The real SFAPI has no filter on ``GET /tasks`` (its OpenAPI "Read Tasks" takes no
        parameter; sfapi_client itself only reads ``GET /tasks/{id}``): the list holds every
        task the account still has, so its size grows with the history.  One task per
        request stays small whatever the history, but costs a request per handle.  So: up
        to ``task_reads_max`` (2) handles are read one by one, in parallel; more with one
        list read.  A cycle costs ``N`` requests for N <= 2, else 1 -- within the
        ``ceil(N / chunk) + 2`` budget of a bulk operation (e.g. cancel of 500 ids in chunks
        of 200: 3 commands + 1 list = 4 requests; 1 chunk of 500: 1 command + 1 task = 2).
        """
        wanted = _unique(handles)
        if not wanted:
            return {}
        if len(wanted) > self.settings.task_reads_max:
            return self._task_list(wanted)

        def one(handle: str) -> tuple[str, dict[str, Any] | None, EdgeAPIError | None]:
            try:
                answer = self.transport.request("GET", f"tasks/{quote(handle, safe='')}")
            except EdgeAPIError as exc:
                return handle, None, None if exc.status == 404 else exc
            if not isinstance(answer, dict):
                return handle, None, EdgeAPIError("sfapi task: not an object", transient=True)
            return handle, answer, None

        results = run_bounded(one, wanted, self.settings.fallback_concurrency)
        found = {h: t for h, t, _ in results if t is not None}
        errors = [e for _, _, e in results if e is not None]
        if errors and not found and len(errors) == len(wanted):
            raise errors[0]
        return found

    def _task_list(self, wanted: list[str]) -> dict[str, dict[str, Any]]:
        answer = self.transport.request("GET", "tasks/")
        tasks = answer.get("tasks") if isinstance(answer, dict) else None
        if not isinstance(tasks, list):
            raise EdgeAPIError("sfapi tasks: answer has no 'tasks' list", transient=True)
        keep = set(wanted)
        return {str(t["id"]): t for t in tasks if isinstance(t, dict) and str(t.get("id")) in keep}

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """One squeue request for all ids, then one sacct request for those gone from the
        queue or final there: a final state comes from accounting, with its exit code
        (``confirmed_final``).  Ids in neither answer are absent."""
        return confirm_with_accounting(
            job_ids, lambda ids: self._query(ids, False), lambda ids: self._query(ids, True)
        )

    def _query(self, job_ids: Sequence[str], accounting: bool) -> dict[str, JobRecord]:
        params = {"sacct": "true" if accounting else "false"}
        rows = self._jobs(params, _kwargs("jobid", job_ids))
        return {r.job_id: r for r in self._records(rows, accounting)}

    def find(self, tags: Sequence[str]) -> dict[str, list[JobRecord]]:
        """Jobs named by these tags: one squeue and one sacct request by name; a live record
        wins over the accounting one of the same job."""
        found: dict[str, dict[str, JobRecord]] = {}
        if not tags:
            return {}
        for accounting in (False, True):
            params = {"sacct": "true" if accounting else "false"}
            for record in self._records(self._jobs(params, _kwargs("name", tags)), accounting):
                found.setdefault(record.name, {}).setdefault(record.job_id, record)
        wanted = set(tags)
        return {tag: list(jobs.values()) for tag, jobs in found.items() if tag in wanted}

    # command utility -----------------------------------------------------------------------
    def run_commands(self, commands: list[str]) -> list[tuple[str, dict[str, Any], str]]:
        """Run command lines (each already quoted) as tasks and wait up to ``command_wait``:
        per command ``(state, result, error)``, state ``done``/``pending``/``refused``/
        ``error`` (the credential manager's delivery uses this)."""
        return [(r.state, r.result, r.error) for r in self._run_commands(commands)]

    def _refuse_commands(self, reason: str) -> None:
        if self.commands_refused is None:
            log.warning(
                f"sfapi: the command utility is refused ({reason}); using one request per "
                "job or file from now on"
            )
        self.commands_refused = reason

    def _run_commands(self, commands: list[str]) -> list[_Run]:
        """Start each command as a task, then poll the tasks until done or ``command_wait``."""
        machine = self.settings.machine

        def post(command: str) -> _Run:
            try:
                answer = self.transport.request(
                    "POST", f"utilities/command/{machine}", data={"executable": command},
                    forbidden="either",
                )  # fmt: skip
            except EdgeAuthError as exc:
                return _Run("error", error=str(exc))
            except EdgeAPIError as exc:
                if exc.status in (403, 404, 405, 501):
                    return _Run("refused", error=f"HTTP {exc.status}")
                return _Run("error", error=str(exc))
            if not isinstance(answer, dict):
                return _Run("error", error="sfapi command: answer is not an object")
            if str(answer.get("status", "")).upper() != "OK" or not answer.get("task_id"):
                error = str(answer.get("error") or "no task id")[:300]
                return _Run("refused" if _COMMAND_REFUSED.search(error) else "error", error=error)
            return _Run("pending", result={"task_id": str(answer["task_id"])})

        runs = run_bounded(post, commands, 4)
        waiting = {r.result["task_id"]: r for r in runs if r.state == "pending"}
        give_up = self._clock() + self.settings.command_wait
        interval = self.settings.command_poll
        while waiting:
            if interval > 0:
                time.sleep(interval)
            try:
                tasks = self._tasks(list(waiting))
            except EdgeAPIError as exc:
                log.info(f"sfapi: command tasks not readable now ({exc})")
                break
            for task_id, task in tasks.items():
                status = str(task.get("status") or "").lower()
                if status in _TASK_UNFINISHED:
                    continue
                run = waiting.pop(task_id)
                result = _task_result(task)
                refusal = _command_refusal(status, result)
                if refusal:
                    run.state, run.error = "refused", refusal
                else:
                    run.state, run.result = "done", {**result, "task_status": status}
            if self._clock() >= give_up:
                break
            interval = min(max(interval * 2, 0.1), 4.0)
        for run in runs:
            if run.state == "refused":
                self._refuse_commands(run.error)
        return runs

    def cancel(self, job_ids: Sequence[str]) -> dict[str, CancelOutcome]:
        """Cancel in bulk: one ``scancel id...`` command per ``cancel_chunk`` ids, then the
        tasks read.  Per id: accepted (also a task not finished in ``command_wait``: the
        sweeper confirms every id with Slurm); already final with scancel's words (``already
        completing or completed``, ``Invalid job id specified``); refused with the reason
        (scancel's error, a failed request, an id we will not put on a command line).
        Falls back to one ``DELETE`` per job when the command utility is refused."""
        ids = _unique(job_ids)
        out: dict[str, CancelOutcome] = {
            i: CancelOutcome.refused(f"not a Slurm job id: {i[:40]!r}")
            for i in ids
            if not JOB_ID.match(i)
        }
        valid = [i for i in ids if i not in out]
        rest: list[str] = []
        if valid and self.commands_refused is None:
            parts = chunks(valid, self.settings.cancel_chunk)
            runs = self._run_commands(["scancel " + " ".join(p) for p in parts])
            for part, run in zip(parts, runs, strict=True):
                if run.state == "refused":
                    rest += part
                elif run.state == "error":
                    out.update(
                        dict.fromkeys(part, CancelOutcome.refused(f"cancel failed: {run.error}"))
                    )
                elif run.state == "pending":
                    out.update(dict.fromkeys(part, CancelOutcome.accepted()))
                else:
                    out.update(parse_scancel(part, run.result))
        else:
            rest = valid
        if rest:
            out.update(self._cancel_each(rest))
        return out

    def _cancel_each(self, job_ids: list[str]) -> dict[str, CancelOutcome]:
        def delete(job_id: str) -> tuple[str, str | None, CancelOutcome | None]:
            try:
                answer = self.transport.request(
                    "DELETE", f"compute/jobs/{self.settings.machine}/{job_id}",
                    forbidden="resource",
                )  # fmt: skip
            except EdgeAPIError as exc:
                return job_id, None, _cancel_error(str(exc))
            if not isinstance(answer, dict) or str(answer.get("status", "")).upper() != "OK":
                error = answer.get("error") if isinstance(answer, dict) else None
                return job_id, None, _cancel_error(f"cancel refused: {error or 'malformed answer'}")
            return job_id, str(answer.get("task_id") or ""), None

        results = run_bounded(delete, job_ids, self.settings.fallback_concurrency)
        out = {job_id: outcome or CancelOutcome.accepted() for job_id, _, outcome in results}
        # The DELETE only queues a task; a task that ended in error means scancel refused.
        task_of = {task: job_id for job_id, task, outcome in results if task and outcome is None}
        if task_of:
            try:
                done = self._tasks(list(task_of))
            except EdgeAPIError:
                done = {}  # unknown: the caller confirms with Slurm anyway
            for task_id, task in done.items():
                error = task_error(task)
                if error:
                    out[task_of[task_id]] = _cancel_error(f"cancel failed: {error}")
        return out

    def read_texts(self, paths: Sequence[str]) -> dict[str, str | None]:
        """Many small files: one ``cat p1 p2 ...`` per ``cat_chunk`` paths, then the tasks
        read.  The output is split into files with ``json.JSONDecoder.raw_decode`` (each file
        must hold one JSON object, like ``worker-summary.json``), matched to the paths by
        order; cat's ``cat: PATH: No such file or directory`` lines say which are missing
        (None).  When the count does not add up, that chunk is read file by file (exact,
        never guessed).  Paths with characters we will not put on a command line, and all
        paths once the command utility is refused, are downloaded one by one (at most
        ``fallback_concurrency`` at a time).  Absent from the answer: could not read now."""
        out: dict[str, str | None] = {}
        cat, download = self._command_or_download(paths)
        if cat:
            parts = chunks(cat, self.settings.cat_chunk)
            runs = self._run_commands(["cat " + " ".join(p) for p in parts])
            for part, run in zip(parts, runs, strict=True):
                if run.state == "refused":
                    download += part
                elif run.state == "done":
                    texts, missing = split_cat_output(part, run.result)
                    out.update(dict.fromkeys(missing))
                    if texts is None:
                        log.info(f"sfapi: cat of {len(part)} files did not split; reading each")
                        download += [p for p in part if p not in missing]
                    else:
                        out.update(texts)
        if download:
            out.update(self._download_each(download))
        return out

    def read_tails(self, paths: Sequence[str], max_bytes: int) -> dict[str, str | None]:
        """The ends of many files: one ``tail -v -c N`` command per ``cat_chunk`` paths
        (``tails.py`` splits the answer), its tasks polled together like ``read_texts``;
        files the command cannot serve are downloaded one by one (``fallback_concurrency``
        at a time) and cut here."""
        out: dict[str, str | None] = {}
        tail, download = self._command_or_download(paths)
        if tail:
            parts = chunks(tail, self.settings.cat_chunk)
            runs = self._run_commands([tail_command(part, max_bytes) for part in parts])
            for part, run in zip(parts, runs, strict=True):
                if run.state == "refused":
                    download += part
                elif run.state == "done":
                    result = run.result
                    stdout = str(result.get("output") or "")
                    stderr = str(result.get("error") or "")
                    texts, unsplit = split_tail_output(part, stdout, stderr, max_bytes)
                    out.update(texts)
                    download += unsplit
        if download:
            whole = self._download_each(download)
            out.update({p: None if t is None else tail_of(t, max_bytes) for p, t in whole.items()})
        return out

    def _command_or_download(self, paths: Sequence[str]) -> tuple[list[str], list[str]]:
        """The paths (each once) a command line may carry (characters we put on one, no
        leading dash) while the command utility is not refused, and the rest, to download."""
        wanted = _unique(paths)
        use = self.commands_refused is None
        command = [p for p in wanted if use and _CAT_SAFE.match(p) and not p.startswith("-")]
        chosen = set(command)
        return command, [p for p in wanted if p not in chosen]

    def _download_each(self, paths: list[str]) -> dict[str, str | None]:
        def one(path: str) -> tuple[str, str | None, bool]:
            try:
                return path, self._download(path), True
            except EdgeAPIError:
                return path, None, False

        results = run_bounded(one, paths, self.settings.fallback_concurrency)
        return {path: text for path, text, ok in results if ok}

    def missing_dirs(self, paths: Sequence[str]) -> list[str]:
        """One ``ls`` each (a check's few paths): a directory lists itself as ``.``."""
        missing = []
        for path in paths:
            answer = self.transport.request(
                "GET", f"utilities/ls/{self.settings.machine}/{path}",
                forbidden="resource",
            )  # fmt: skip
            if not isinstance(answer, dict):
                raise EdgeAPIError("sfapi ls: answer is not an object")
            entries = answer.get("entries") if str(answer.get("status")).upper() == "OK" else None
            if not any(
                isinstance(e, dict) and e.get("name") == "." and str(e.get("perms", ""))[:1] == "d"
                for e in entries or []
            ):
                missing.append(path)
        return missing

    def live_tags(self, prefix: str) -> list[str]:
        rows = self._jobs({"sacct": "false"}, f"user={self._user()}")
        names = [str(r.get("name", "")) for r in rows if isinstance(r, dict)]
        return [name for name in names if name.startswith(prefix)]

    def _user(self) -> str:
        with self._lock:
            if self._user_name:
                return self._user_name
        answer = self.transport.request("GET", "account/")
        name = answer.get("name") if isinstance(answer, dict) else None
        if not name:
            raise EdgeAPIError("sfapi account: answer has no 'name'", transient=True)
        with self._lock:
            self._user_name = str(name)
        return self._user_name

    def _download(self, path: str) -> str | None:
        """One file by the download utility: its text, or None when it does not exist."""
        answer = self.transport.request(
            "GET", f"utilities/download/{self.settings.machine}/{path}", forbidden="resource"
        )
        if not isinstance(answer, dict):
            raise EdgeAPIError("sfapi download: answer is not an object")
        if str(answer.get("status", "")).upper() != "OK":
            return None
        content = answer.get("file")
        return content if isinstance(content, str) else None

    # helpers -------------------------------------------------------------------------------
    def _jobs(self, params: dict[str, str], kwargs: str) -> list[Any]:
        answer = self.transport.request(
            "GET",
            f"compute/jobs/{self.settings.machine}",
            params={**params, "cached": "false", "kwargs": kwargs},
        )
        if not isinstance(answer, dict):
            raise EdgeAPIError("sfapi jobs: answer is not an object", transient=True)
        if str(answer.get("status", "")).upper() != "OK":
            error = str(answer.get("error") or "")
            if any(text in error.lower() for text in _NO_SUCH_JOB):
                return []
            raise EdgeAPIError(f"sfapi jobs query failed: {error[:200]}", transient=True)
        rows = answer.get("output") or []
        if not isinstance(rows, list):
            raise EdgeAPIError("sfapi jobs: 'output' is not a list", transient=True)
        return rows

    @staticmethod
    def _records(rows: list[Any], accounting: bool) -> list[JobRecord]:
        """Records of the readable rows (squeue's, or sacct's with ``accounting``: their job
        name is ``jobname``).  A row that is not an object or has no id is skipped (one odd
        row never blanks a chunk; an unknown state reads as UNKNOWN); but rows none of which
        is readable mean the answer's shape changed: a transient error, never an empty answer
        (which would read as "every job gone")."""
        records = []
        skipped = 0
        name_key = "jobname" if accounting else "name"
        for row in rows:
            if not isinstance(row, dict):
                skipped += 1
                continue
            if "." in str(row.get("jobid", "")):
                continue  # a job step (sacct without -X)
            try:
                records.append(record_from_row(row, accounting=accounting, name_key=name_key))
            except ValueError:
                skipped += 1
        if skipped and not records:
            raise EdgeAPIError(f"sfapi jobs: none of {skipped} rows has a 'jobid'", transient=True)
        if skipped:
            log.warning(f"sfapi jobs: skipped {skipped} unreadable rows")
        return records


# SFAPI task states before a result exists
_TASK_UNFINISHED = frozenset({"new", "running", "pending", ""})

#: a command task's or command POST's error saying the command may not run at all
_COMMAND_REFUSED = re.compile(
    r"not (?:allowed|permitted)|disallowed|forbidden|allow ?list|unauthori[sz]ed|"
    r"unknown command|unsupported command",
    re.IGNORECASE,
)
#: scancel's words for a job that had already ended (or never existed): nothing to do
_BENIGN_CANCEL = (
    "already completing or completed",
    "invalid job id specified",
    "already completed",
    "already finished",
    "does not exist",
)
_SCANCEL_ID = re.compile(r"job(?:/step)? id (?P<id>[0-9]+(?:[_+][0-9]+)?)", re.IGNORECASE)
_CAT_ERROR = re.compile(r"^(?:\S*/)?cat: (?P<path>.+): (?P<why>[^:]+)$")


def _task_result(task: dict[str, Any]) -> dict[str, Any]:
    raw = task.get("result")
    try:
        result = json.loads(raw) if isinstance(raw, str) else (raw or {})
    except ValueError:
        result = {"status": "error", "error": str(raw)[:300]}
    return result if isinstance(result, dict) else {"status": "error", "error": str(result)[:300]}


def _command_refusal(task_status: str, result: dict[str, Any]) -> str | None:
    """The reason when a command task says the command may not run (not when the command
    ran and failed: cat/scancel messages are theirs)."""
    if str(result.get("status", "")).lower() == "ok" or result.get("output"):
        return None
    error = str(result.get("error") or "").strip()
    first = error.splitlines()[0] if error else ""
    if re.match(r"^(?:\S*/)?(?:cat|scancel):", first) and "command not allowed" not in first:
        return None
    return first[:300] if _COMMAND_REFUSED.search(error) else None


def _benign_cancel(text: str) -> bool:
    low = text.lower()
    return any(b in low for b in _BENIGN_CANCEL)


def _cancel_error(text: str) -> CancelOutcome:
    """A cancel's error text as an outcome: Slurm's words for a job that already ended (or
    never existed) are ``already_final``, anything else ``refused``."""
    return (
        CancelOutcome.already_final(text) if _benign_cancel(text) else CancelOutcome.refused(text)
    )


def parse_scancel(ids: Sequence[str], result: dict[str, Any]) -> dict[str, CancelOutcome]:
    """Per id the outcome of one ``scancel`` command: accepted when no line names it;
    already final with scancel's line for a job that had already ended (or that Slurm does
    not know); refused with the line otherwise.  When the command failed, a message naming
    no id (or no message at all) refuses every id not named otherwise."""
    out = dict.fromkeys(ids, CancelOutcome.accepted())
    named: set[str] = set()
    unnamed: list[str] = []
    text = "\n".join(str(result.get(k) or "") for k in ("error", "output"))
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _SCANCEL_ID.search(line)
        job = m.group("id") if m else None
        if job in out:
            named.add(job)
            if _benign_cancel(line):
                out[job] = CancelOutcome.already_final(line[:200])
            else:
                out[job] = CancelOutcome.refused(f"cancel failed: {line[:200]}")
        elif not _benign_cancel(line):
            unnamed.append(line)
    exit_code = result.get("exit_code")
    failed = str(result.get("status", "ok")).lower() != "ok" or (
        isinstance(exit_code, int) and exit_code != 0
    )
    if failed and not named and not unnamed:
        unnamed.append(f"scancel ended with exit status {exit_code}")
    if failed and unnamed:
        for job in ids:
            if job not in named:
                out[job] = CancelOutcome.refused(f"cancel failed: {unnamed[0][:200]}")
    return out


def with_output(spec: JobSpec) -> str:
    """``spec.script`` with an ``--output`` directive after the first line, unless the header
    names one (or cannot be read), the spec has no output path or it is not a plain path."""
    path = spec.stdout_path
    if not path or not DIRECTIVE_VALUE.match(path) or spec.header_problem:
        return spec.script
    try:
        if any(key in ("output", "error") for key, _ in read_header(spec.script)):
            return spec.script
    except EdgeConfigError:
        return spec.script
    first, newline, rest = spec.script.partition("\n")
    line = f"#SBATCH --output={path}\n"
    if not first.startswith("#!"):
        return line + spec.script
    return f"{first}{newline or chr(10)}{line}{rest}"


def split_cat_output(
    paths: Sequence[str], result: dict[str, Any]
) -> tuple[dict[str, str] | None, set[str]]:
    """Split ``cat p1 p2 ...`` output into files: ``(texts, missing)``.

    Each existing file is one JSON object, in path order; cat's stderr lines (in ``error``,
    or mixed into ``output``) name the paths that do not exist (``missing``) or cannot be
    read (left out of both).  ``texts`` is None when the documents do not add up to the
    readable paths: nothing is guessed."""
    wanted = set(paths)
    missing: set[str] = set()
    unreadable: set[str] = set()

    def stderr_line(line: str) -> bool:
        m = _CAT_ERROR.match(line.strip())
        if not m:
            return False
        path = m.group("path").strip("'")
        if path in wanted:
            if "no such file" in m.group("why").lower():
                missing.add(path)
            else:
                unreadable.add(path)
        return True

    for line in str(result.get("error") or "").splitlines():
        stderr_line(line)
    output = str(result.get("output") or "")
    decoder = json.JSONDecoder()
    docs: list[str] = []
    pos, size = 0, len(output)
    split_ok = True
    while True:
        while pos < size and output[pos].isspace():
            pos += 1
        if pos >= size:
            break
        end = output.find("\n", pos)
        line = output[pos : end if end >= 0 else size]
        if re.match(r"^(?:\S*/)?cat: ", line):
            stderr_line(line)
            pos = end + 1 if end >= 0 else size
            continue
        try:
            obj, stop = decoder.raw_decode(output, pos)
        except ValueError:
            split_ok = False
            break
        if not isinstance(obj, dict):
            split_ok = False
            break
        docs.append(output[pos:stop])
        pos = stop
    present = [p for p in paths if p not in missing and p not in unreadable]
    if not split_ok or len(docs) != len(present):
        return None, missing
    return dict(zip(present, docs, strict=True)), missing


def task_error(task: dict[str, Any]) -> str | None:
    """The error of a finished task (e.g. scancel refused), None if fine or still running."""
    status = str(task.get("status") or "").lower()
    if status in _TASK_UNFINISHED:
        return None
    result = _task_result(task)
    if status == "completed" and str(result.get("status", "ok")).lower() == "ok":
        return None
    return str(result.get("error") or f"task {status}").strip()[:500]


def parse_submit_task(task: dict[str, Any]) -> Resolution:
    """Read an SFAPI task created by a job submit: pending, the job id, or sbatch's error."""
    status = str(task.get("status") or "").lower()
    if status in _TASK_UNFINISHED:
        return Resolution(Resolution.PENDING)
    result = _task_result(task)
    if status == "completed" and str(result.get("status", "")).lower() == "ok":
        if result.get("jobid"):
            return Resolution(Resolution.DONE, job_id=str(result["jobid"]))
        return Resolution(Resolution.ERROR, error="task completed without a job id")
    error = result.get("error") or f"task {status}"
    return Resolution(Resolution.ERROR, error=str(error).strip()[:500])


def settings_from_config(cfg: Any) -> SFAPISettings:
    """Build settings from a validated plugin config (see ``plugins/sfapi.py``)."""
    if not cfg.keyFile:
        raise EdgeConfigError("config key 'keyFile' is required (path to the Iris client key)")
    return SFAPISettings(
        machine=cfg.machine,
        api_url=cfg.apiUrl,
        token_url=cfg.tokenUrl,
        key_file=os.path.expanduser(cfg.keyFile),
        timeouts=Timeouts(cfg.connectTimeout, cfg.readTimeout),
        policy=RetryPolicy(
            attempts=cfg.retryAttempts, backoff=cfg.retryBackoff, deadline=cfg.callDeadline
        ),
        refusal_backoff=cfg.authRefusalBackoffSeconds,
        cancel_chunk=min(cfg.chunkSize, 500),
        cat_chunk=min(cfg.chunkSize, 500),
        command_wait=min(cfg.callDeadline, 10.0),
        client_expires=iso_epoch(getattr(cfg, "clientExpires", "") or None),
    )
