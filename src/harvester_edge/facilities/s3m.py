"""OLCF Secure Scientific Service Mesh (S3M) client: Slurm through the "Slurm indirect" API.

S3M relays slurmrestd's data model per resource (``/slurm/open/v0.0.43/defiant/...``), so
this client speaks slurmrestd JSON over ``requests`` (through ``RequestsTransport``: the same
error taxonomy, retry policy, deadline and redaction as SFAPI, one session per client).
Endpoint shapes: shared/FACILITY_APIS.md, S3M section.

Interface (``facilities/base.py``), capabilities: none (a job id at once, no files):

- ``submit``: ``POST {prefix}/job/submit`` with ``encoders.slurmrestd_job`` (``{"job": ...}``,
  or v0.0.44's ``{"script", "jobs": [...]}``).  slurmrestd answers a refused job with HTTP
  500 and Slurm's error (``errors: [{error, error_number, description, source}]``): an
  ESLURM error (2000-2999: account, partition, QOS, limits, ...) or a request the parser
  refused (9000-9999) is final (``EdgeAPIError``, not transient, Slurm's words; a QOS submit
  limit reads as one for the submitter); communication errors (502/504) and every other
  5xx follow the core's maybe-sent rule (the submitter looks the tag up).
- ``poll``: one ``GET {prefix}/jobs`` (the whole live list, slurmctld shape, filtered here)
  and ``GET {prefix}/job/{id}`` (slurmdb shape: accounting) only for the ids gone from the
  list or final there, ``concurrency`` at a time (``passthrough.confirm_with_accounting``).
  Callers share one list request: a list begun at most ``list_share_seconds``
  (``listShareSeconds``) before the call or in flight when it came, and after the last
  cancel; a list request that failed while a caller waited for it fails that caller too.
- ``find`` and ``live_tags``: the same live list (for ``find`` one begun after the call),
  by name.  S3M has no job-history listing (its routes: ping, partitions, job/submit,
  job/{id}, jobs, nodes, reservations, diag), so a job that already left the live list
  (``MinJobAge`` after it ended, 5 minutes by default) is not found by its tag.
- ``cancel``: ``DELETE {prefix}/job/{id}``, ``concurrency`` at a time; Slurm's "already
  completing or completed" and "Invalid job id specified" are ``already_final``.  Per-job
  requests (``job/{id}``, ``DELETE``) stop once one of a call's got no answer in time: a
  silent service costs a call one timeout, not one per round of ``concurrency``.
- ``health``: the public ``GET /olcf/v1alpha/status``: the resource not ``OPERATIONAL`` is
  unavailable, a downtime under way is a planned outage, the upcoming ones are ``outages``.

The project access token (``ProjectToken``) is read from a ``Secret`` (a mode-0600 file or
an environment variable) at every request; its JWT carries no ``exp``, so its expiry is read
from ``GET /olcf/v1/token/ctls/introspect`` (``plannedExpiration``) once per
``token_check_seconds`` per token, before the token is first used and on the health check.
An expired token (``token_margin`` before ``plannedExpiration``) sends nothing: every call
raises ``EdgeAuthError`` naming the expiry date.  A refused token is not sent again for
``refusal_backoff`` seconds.  A new token in the file is introspected before its first use.
The token never appears in a log, an exception or a repr (only its ``sha256:`` fingerprint).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..config import Secret
from ..edge.budget import CallBudget
from ..edge.encoders import slurmrestd_job, slurmrestd_unmapped
from ..edge.jobs import JobRecord, JobState, SubmitReceipt
from ..edge.retry import RetryPolicy, Timeouts
from ..edge.spec import JobSpec
from ..errors import EdgeAPIError, EdgeAuthError, EdgeConfigError, EdgeNetworkError
from .auth import StaticTokenAuth, fingerprint, jwt_expiry, secret_values
from .base import (
    CancelOutcome,
    Capabilities,
    CredentialFacts,
    FacilityClient,
    Health,
    Outage,
    iso_epoch,
)
from .passthrough import confirm_with_accounting, record_from_slurmrestd
from .transport import (
    RefusedError,
    RequestsSender,
    StatusError,
    Transport,
    redact,
    run_bounded,
)

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://s3m.olcf.ornl.gov"
DEFAULT_PATH_PREFIX = "/slurm/open/{version}/{resource}"
STATUS_PATH = "/olcf/v1alpha/status"
INTROSPECT_PATH = "olcf/v1/token/ctls/introspect"
API_VERSIONS = ("v0.0.42", "v0.0.43", "v0.0.44")
AUTH_HEADERS = ("raw", "bearer")
SUBMIT_FORMS = ("job", "jobs")
CREDENTIAL_KIND = "olcf-project-token"
TOKEN_KIND = "S3M project token"

_RESOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PREFIX_FIELD = re.compile(r"\{([^{}]*)\}")
#: job ids we put in a URL path: N, N_M (array task), N+M (het component)
JOB_ID = re.compile(r"^[0-9]{1,12}(?:[_+][0-9]{1,9})?$")
#: an introspection that could not be read is tried again after this long (seconds)
_UNREAD_RETRY = 60.0

# Slurm error numbers (slurm_errno.h): 2000-2999 ESLURM_* (the controller refused the
# request: account, partition, QOS, limits, job id...), 9000-9999 slurmrestd's own (the
# request could not be parsed); 1000-1999 and 5000-5999 are communication errors.
ESLURM_INVALID_JOB_ID = 2017
ESLURM_ALREADY_DONE = 2021
#: ESLURM errors that say "not now" rather than "never": not final for a submit
_TRY_AGAIN = re.compile(r"try again|standby|temporarily", re.IGNORECASE)
#: Slurm's words for a job that had already ended (or never existed): nothing to cancel
_ALREADY_FINAL = re.compile(
    r"already complet|invalid job ?id|already finished|already done|does not exist",
    re.IGNORECASE,
)
#: downtime statuses that leave the machine running jobs
_RUNNING_DOWNTIME = frozenset({"OPERATIONAL", "DEGRADED"})


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class S3MSettings:
    """Everything that shapes one S3M client (hashable: the shared client is keyed on it).
    Invalid values raise ``EdgeConfigError`` naming the queue-config key."""

    resource: str
    token: Secret
    timeouts: Timeouts
    policy: RetryPolicy
    api_url: str = DEFAULT_API_URL
    api_version: str = "v0.0.43"
    #: ``{version}`` and ``{resource}`` are filled in; hosts before March 2026 had no /open/
    path_prefix: str = DEFAULT_PATH_PREFIX
    #: ``raw`` (``Authorization: <token>``, as OLCF documents) or ``bearer``
    auth_header: str = "raw"
    #: ``job`` (``{"job": {...}}``) or ``jobs`` (v0.0.44's ``{"script", "jobs": [...]}``)
    submit_form: str = "job"
    #: the public status route ("": ``{api_url}/olcf/v1alpha/status``)
    status_url: str = ""
    #: the token counts as expired this long before its plannedExpiration (seconds)
    token_margin: float = 300.0
    #: a token's introspection is read again after this long (seconds)
    token_check_seconds: float = 600.0
    #: after a refusal the token is not sent again for this long (seconds)
    refusal_backoff: float = 60.0
    #: a ``GET .../jobs`` list begun this long before a poll is shared with it (seconds;
    #: ``listShareSeconds``); 0: only a list in flight when the poll comes
    list_share_seconds: float = 5.0
    #: ``GET .../job/{id}`` and ``DELETE`` requests of one call in flight at once
    concurrency: int = 8
    #: connections kept per host by the session (the plugins' threads and concurrency)
    pool_size: int = 32

    def __post_init__(self) -> None:
        def bad(key: str, message: str) -> EdgeConfigError:
            return EdgeConfigError(f"config key '{key}' {message}")

        if not _RESOURCE.match(self.resource):
            raise bad("resource", f"is not an S3M resource name: {self.resource!r}")
        for key, url in (("apiUrl", self.api_url), ("statusUrl", self.status_url)):
            if url and not url.startswith(("https://", "http://")):
                raise bad(key, f"must be an http(s) URL, got {url!r}")
        if self.api_version not in API_VERSIONS:
            raise bad("apiVersion", f"must be one of {', '.join(API_VERSIONS)}")
        if self.auth_header not in AUTH_HEADERS:
            raise bad("authHeader", "must be 'raw' (Authorization: <token>) or 'bearer'")
        if self.submit_form not in SUBMIT_FORMS:
            raise bad("submitForm", "must be 'job' or 'jobs'")
        if self.submit_form == "jobs" and self.api_version != "v0.0.44":
            raise bad(
                "submitForm",
                f"'jobs' needs apiVersion v0.0.44 (got {self.api_version}); use 'job'",
            )
        fields = set(_PREFIX_FIELD.findall(self.path_prefix))
        if not self.path_prefix.startswith("/") or not fields <= {"version", "resource"}:
            raise bad(
                "pathPrefix",
                f"must be an absolute path with only {{version}} and {{resource}} in it, "
                f"got {self.path_prefix!r}",
            )
        for key in ("token_margin", "token_check_seconds", "refusal_backoff", "list_share_seconds"):
            if getattr(self, key) < 0:
                raise bad(_CAMEL[key], f"must be >= 0, got {getattr(self, key)}")

    @property
    def prefix(self) -> str:
        """The resource's Slurm path, e.g. ``slurm/open/v0.0.43/defiant``."""
        return self.path_prefix.format(version=self.api_version, resource=self.resource).strip("/")

    @property
    def status(self) -> str:
        return self.status_url or self.api_url.rstrip("/") + STATUS_PATH


_CAMEL = {
    "token_margin": "tokenMarginSeconds",
    "token_check_seconds": "tokenCheckSeconds",
    "refusal_backoff": "authRefusalBackoffSeconds",
    "list_share_seconds": "listShareSeconds",
}


def settings_from_config(cfg: Any) -> S3MSettings:
    """Settings from a validated plugin config (``plugins/s3m.py``'s ``S3MOptions``)."""
    if cfg.token is None:
        raise EdgeConfigError(
            "config key 'token' is required: 'file:/path/to/token' (mode 0600) or 'env:NAME'"
        )
    return S3MSettings(
        resource=cfg.resource,
        token=cfg.token,
        timeouts=Timeouts(cfg.connectTimeout, cfg.readTimeout),
        policy=RetryPolicy(
            attempts=cfg.retryAttempts, backoff=cfg.retryBackoff, deadline=cfg.callDeadline
        ),
        api_url=cfg.apiUrl.rstrip("/"),
        api_version=cfg.apiVersion,
        path_prefix=cfg.pathPrefix,
        auth_header=cfg.authHeader,
        submit_form=cfg.submitForm,
        status_url=cfg.statusUrl,
        token_margin=cfg.tokenMarginSeconds,
        token_check_seconds=cfg.tokenCheckSeconds,
        refusal_backoff=cfg.authRefusalBackoffSeconds,
        list_share_seconds=cfg.listShareSeconds,
        pool_size=cfg.submitConcurrency + cfg.queryConcurrency * 8 + 8,
    )


# --------------------------------------------------------------------------- slurmrestd errors
def slurm_errors(body: Any, depth: int = 0) -> list[dict[str, Any]]:
    """slurmrestd's ``errors`` items of an answer, also when S3M wrapped the upstream answer
    as JSON text (or an object) inside ``detail``."""
    if depth > 4:
        return []
    if isinstance(body, str) and body.strip()[:1] in ("{", "["):
        try:
            return slurm_errors(json.loads(body), depth + 1)
        except ValueError:
            return []
    if isinstance(body, list):
        return [e for item in body for e in slurm_errors(item, depth + 1)]
    if not isinstance(body, dict):
        return []
    errors = body.get("errors")
    found = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    if not found and "detail" in body:
        found = slurm_errors(body["detail"], depth + 1)
    return found


def error_number(item: Mapping[str, Any]) -> int | None:
    number = item.get("error_number", item.get("error_code"))
    if isinstance(number, bool):
        return None
    if isinstance(number, int):
        return number
    if isinstance(number, str) and number.lstrip("-").isdigit():
        return int(number)
    return None


def error_words(item: Mapping[str, Any]) -> str:
    """One error item in Slurm's words: ``description: error (Slurm error N)``."""
    error = str(item.get("error") or "").strip()
    description = str(item.get("description") or "").strip()
    number = error_number(item)
    parts = [p for p in (description, error) if p]
    if len(parts) == 2 and (parts[1] in parts[0] or parts[0] in parts[1]):
        parts = [max(parts, key=len)]
    text = ": ".join(parts) or "unspecified error"
    return f"{text} (Slurm error {number})" if number not in (None, 0) else text


def errors_text(errors: Sequence[Mapping[str, Any]], limit: int = 400) -> str:
    return "; ".join(error_words(e) for e in errors)[:limit]


def _final_error(item: Mapping[str, Any]) -> bool:
    """Is this Slurm error the controller's (or the parser's) final "no"?"""
    number = error_number(item)
    words = f"{item.get('error') or ''} {item.get('description') or ''}"
    if number is not None and 2000 <= number <= 2999:
        return not _TRY_AGAIN.search(words)
    if number is not None and 9000 <= number <= 9999:
        return True
    if number in (None, -1, 0):
        return "sbatch: error" in words
    return False


def slurm_refusal(status: int, body: Any) -> str | None:
    """The transport's ``refusal`` reading for every Slurm route: an error answer carrying
    Slurm's final "no" (a refused submit, so no job was made; "Invalid job id", "already
    completing or completed" or "access denied" for a job) -> Slurm's words, else None."""
    final = [e for e in slurm_errors(body) if _final_error(e)]
    return errors_text(final) if final else None


def _no_such_job(text: str) -> bool:
    return bool(
        re.search(rf"invalid job ?id|Slurm error {ESLURM_INVALID_JOB_ID}\b", text, re.IGNORECASE)
    )


# --------------------------------------------------------------------------- the token


def utc_text(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


@dataclass(frozen=True)
class TokenInfo:
    """What introspection told of one token (by fingerprint; never the token)."""

    fingerprint: str
    checked_at: float
    #: plannedExpiration (epoch seconds), None when unknown
    expires_at: float | None = None
    description: str = ""
    project: str = ""
    #: False: the introspection could not be read (asked again after a minute)
    read: bool = True


class _Presented:
    """The transport ``Auth`` of an introspection request: exactly the headers about to be
    verified (no introspection of its own, nothing to refresh)."""

    def __init__(self, sent: Mapping[str, str]):
        self._sent = dict(sent)

    def __repr__(self) -> str:
        return "_Presented(<token>)"

    def headers(self) -> dict[str, str]:
        return dict(self._sent)

    def refresh(self, sent: Mapping[str, str]) -> bool:
        return False

    def refused(self, sent: Mapping[str, str], status: int) -> EdgeAuthError:
        return EdgeAuthError(f"HTTP {status}", status=status)


Introspect = Callable[[Mapping[str, str]], Any]


class ProjectToken:
    """An OLCF project access token as the S3M transport's ``Auth``, shared by every thread.

    - The token is read from its ``Secret`` at every request (a ``file:`` secret must be mode
      0600); a token seen for the first time is introspected before it is sent, and again
      every ``check_seconds`` (one introspection at a time; an unreadable one is retried
      after a minute, and the token is used meanwhile: the service has the last word).
    - Expired (``margin`` seconds before ``plannedExpiration``): ``headers()`` raises
      ``EdgeAuthError`` naming the date; nothing is sent.
    - Refused (the API's 401/403 with nothing new in the secret, or its introspection
      refused): not sent again for ``backoff`` seconds, then introspected again before it is
      sent; the refusal stays a credential problem until that introspection passes.  A new
      token in the secret ends all of it.
    - ``facts()`` reads the secret only (no network): fingerprint, description, expiry and
      the problem, for the throttler and the submitter's gate.
    """

    def __init__(
        self,
        secret: Secret,
        introspect: Introspect,
        *,
        scheme: str = "",
        check_seconds: float = 600.0,
        margin: float = 300.0,
        backoff: float = 60.0,
        clock: Callable[[], float] = time.time,
    ):
        self.static = StaticTokenAuth(secret, scheme=scheme, kind=TOKEN_KIND, owner_only=True)
        self._introspect = introspect
        self._check_seconds = check_seconds
        self._margin = margin
        self._backoff = backoff
        self._clock = clock
        self._info: dict[str, TokenInfo] = {}
        self._refused: dict[str, tuple[float, str]] = {}  # fingerprint -> (until, reason)
        self._warned: set[tuple[str, str]] = set()
        self._current = ""
        self._lock = threading.Lock()
        self._check_lock = threading.Lock()
        #: introspections sent (for tests and diagnostics)
        self.introspections = 0

    def __repr__(self) -> str:
        return f"ProjectToken({self.static.secret.source}, {self._current or 'not read yet'})"

    @property
    def source(self) -> str:
        return self.static.secret.source

    # the transport's Auth ---------------------------------------------------------------
    def headers(self) -> dict[str, str]:
        sent = self.static.headers()
        fp = self._fingerprint(sent)
        self._note_current(fp)
        self._raise_if_refused(fp)
        info = self._checked(fp, sent)
        self._raise_if_expired(info)
        return sent

    def refresh(self, sent: Mapping[str, str]) -> bool:
        return self.static.refresh(sent)

    def refused(self, sent: Mapping[str, str], status: int) -> EdgeAuthError:
        return self._refuse(self._fingerprint(sent), f"refused by S3M (HTTP {status})", status)

    def secrets(self) -> tuple[str, ...]:
        """The strings to mask in texts we compose ourselves (the token now in the secret)."""
        try:
            return secret_values(self.static.headers())
        except EdgeAuthError:
            return ()

    def prime(self) -> None:
        """Introspect the current token when due (the health check calls this, so that the
        throttler knows the expiry before anything is submitted); never raises."""
        try:
            self.headers()
        except EdgeAPIError:
            pass

    # facts ------------------------------------------------------------------------------
    def facts(self) -> CredentialFacts:
        try:
            sent = self.static.headers()
        except EdgeAuthError as exc:
            return CredentialFacts(kind=CREDENTIAL_KIND, problem=str(exc))
        fp = self._fingerprint(sent)
        now = self._clock()
        with self._lock:
            info = self._info.get(fp)
            refusal = self._refused.get(fp)
        problem = None
        if refusal is not None:  # stands until an introspection of this token passes
            left = refusal[0] - now
            problem = refusal[1] + (
                f"; not sent again for {left:.0f}s" if left > 0 else "; asked again at next use"
            )
        expires = info.expires_at if info is not None else None
        if expires is None:
            expires = jwt_expiry(self.static.token())
        if problem is None and expires is not None and now >= expires - self._margin:
            problem = self._expiry_text(expires, now)
        return CredentialFacts(
            kind=CREDENTIAL_KIND, identity=self._identity(fp, info), expires_at=expires,
            problem=problem,
        )  # fmt: skip

    # internals --------------------------------------------------------------------------
    def _fingerprint(self, sent: Mapping[str, str]) -> str:
        value = sent.get(self.static.header, "")
        if self.static.scheme:
            value = value.partition(" ")[2]
        return fingerprint(value)

    def _identity(self, fp: str, info: TokenInfo | None) -> str:
        if info is not None and info.description:
            return f"{fp} ({info.description[:60]})"
        return fp

    def _note_current(self, fp: str) -> None:
        if fp == self._current:
            return
        with self._lock:
            before, self._current = self._current, fp
        if before:
            log.info(f"{TOKEN_KIND} in {self.source} changed: {fp} now (was {before})")

    def _checked(self, fp: str, sent: Mapping[str, str]) -> TokenInfo | None:
        """The token's introspection, read now when it is missing or due, or when the token
        was refused (its back-off over): a refusal stands until an introspection passes."""
        info = self._fresh(fp)
        if info is not None:
            return info
        with self._check_lock:  # one introspection at a time; the others wait for its answer
            info = self._fresh(fp)
            if info is not None:
                return info
            self._raise_if_refused(fp)
            self.introspections += 1
            try:
                answer = self._introspect(sent)
            except EdgeAuthError as exc:
                raise self._refuse(
                    fp, f"refused by introspection ({_short(exc)})", exc.status
                ) from None
            except EdgeAPIError as exc:
                if exc.status in (401, 403):  # a 403 with the service's words
                    raise self._refuse(
                        fp, f"refused by introspection ({_short(exc)})", exc.status
                    ) from None
                with self._lock:
                    old = self._info.get(fp)
                unread = TokenInfo(
                    fp, self._clock(), old.expires_at if old else None,
                    old.description if old else "", old.project if old else "", read=False,
                )  # fmt: skip
                self._store(unread)
                log.info(f"{TOKEN_KIND} {fp}: introspection not readable now ({exc})")
                return unread
            info = self._parse(fp, answer)
            self._store(info)
            with self._lock:
                self._refused.pop(fp, None)
            if info.expires_at is None:
                log.warning(f"{TOKEN_KIND} {fp}: introspection names no plannedExpiration")
            else:
                log.info(
                    f"{TOKEN_KIND} {self._identity(fp, info)} from {self.source}: planned "
                    f"expiration {utc_text(info.expires_at)}"
                )
            return info

    def _fresh(self, fp: str) -> TokenInfo | None:
        with self._lock:
            info = self._info.get(fp)
            refused = fp in self._refused
        if info is None or refused:
            return None
        ttl = self._check_seconds if info.read else min(self._check_seconds, _UNREAD_RETRY)
        return info if self._clock() < info.checked_at + ttl else None

    def _parse(self, fp: str, answer: Any) -> TokenInfo:
        token = answer.get("token") if isinstance(answer, dict) else None
        token = token if isinstance(token, dict) else (answer if isinstance(answer, dict) else {})
        return TokenInfo(
            fp,
            self._clock(),
            iso_epoch(token.get("plannedExpiration")),
            str(token.get("description") or "")[:120],
            str(token.get("project") or "")[:60],
        )

    def _store(self, info: TokenInfo) -> None:
        with self._lock:
            self._info[info.fingerprint] = info
            while len(self._info) > 8:  # rotations: keep the last few
                self._info.pop(next(iter(self._info)))

    def _refuse(self, fp: str, reason: str, status: int | None) -> EdgeAuthError:
        until = self._clock() + self._backoff
        with self._lock:
            self._refused[fp] = (until, reason)
            while len(self._refused) > 8:
                self._refused.pop(next(iter(self._refused)))
        log.warning(
            f"{TOKEN_KIND} {fp} from {self.source} {reason}; not sent again for "
            f"{self._backoff:.0f}s (or until a new token is in place)"
        )
        return EdgeAuthError(f"{TOKEN_KIND} {fp} from {self.source} {reason}", status=status)

    def _raise_if_refused(self, fp: str) -> None:
        with self._lock:
            refusal = self._refused.get(fp)
        now = self._clock()
        if refusal is not None and now < refusal[0]:
            raise EdgeAuthError(
                f"{TOKEN_KIND} {fp} from {self.source} {refusal[1]}; not sent again for "
                f"{refusal[0] - now:.0f}s"
            )

    def _raise_if_expired(self, info: TokenInfo | None) -> None:
        if info is None or info.expires_at is None:
            return
        now = self._clock()
        if now < info.expires_at - self._margin:
            return
        text = self._expiry_text(info.expires_at, now)
        key = (info.fingerprint, "expired")
        if key not in self._warned:
            self._warned.add(key)
            log.warning(f"{TOKEN_KIND} {self._identity(info.fingerprint, info)}: {text}")
        raise EdgeAuthError(f"{TOKEN_KIND} {self._identity(info.fingerprint, info)}: {text}")

    def _expiry_text(self, expires: float, now: float) -> str:
        when = utc_text(expires)
        if now >= expires:
            said = f"expired {when}"
        else:
            said = f"expires {when}, within tokenMarginSeconds={self._margin:.0f}"
        return f"{said}; put a new project access token in {self.source}"


def _short(exc: EdgeAPIError) -> str:
    """An error's message without the ``s3m GET /path: `` head."""
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("s3m ") and ": " in text else text


# --------------------------------------------------------------------------- the client
@dataclass(frozen=True)
class _JobList:
    """One ``GET .../jobs`` answer (or its error), by job id; ``started`` and ``ended`` are
    monotonic."""

    started: float
    ended: float
    records: dict[str, JobRecord] = field(default_factory=dict)
    error: EdgeAPIError | None = None


def _copy(exc: EdgeAPIError) -> EdgeAPIError:
    """A fresh exception with the same meaning (one object is not raised in many threads)."""
    if isinstance(exc, EdgeNetworkError):
        return EdgeNetworkError(str(exc), maybe_sent=exc.maybe_sent, silent=exc.silent)
    if isinstance(exc, EdgeAuthError):
        return EdgeAuthError(str(exc), status=exc.status)
    return EdgeAPIError(str(exc), status=exc.status, transient=exc.transient)


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(str(i) for i in items))


class S3MClient(FacilityClient):
    """One S3M Slurm resource through one project access token."""

    service = "s3m"
    #: the live list is one request whatever the number of ids
    capabilities = Capabilities(async_submit=False, files=False, max_ids_per_query=10_000)

    def __init__(self, settings: S3MSettings, *, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.sender = RequestsSender({"accept": "application/json"}, pool_size=settings.pool_size)
        self.token = ProjectToken(
            settings.token,
            self._introspect,
            scheme="Bearer" if settings.auth_header == "bearer" else "",
            check_seconds=settings.token_check_seconds,
            margin=settings.token_margin,
            backoff=settings.refusal_backoff,
            clock=clock,
        )
        self.transport = Transport(
            "s3m", settings.api_url, self.token, timeouts=settings.timeouts,
            policy=settings.policy, sender=self.sender,
        )  # fmt: skip
        self._prefix = settings.prefix
        self._list_lock = threading.Lock()
        self._list: _JobList | None = None
        self._stale_before = float("-inf")  # lists begun before the last cancel are stale

    def __repr__(self) -> str:
        return f"S3MClient({self.settings.resource!r}, {self.settings.api_url!r})"

    def close(self) -> None:
        self.sender.close()

    def credential(self) -> CredentialFacts:
        return self.token.facts()

    def introspect_token(self, token: str) -> TokenInfo:
        """Introspect a token that is not in use yet (a rotation candidate the credential
        manager verifies before it replaces the token file).  Raises EdgeAuthError when S3M
        refuses it, EdgeAPIError when S3M cannot answer; the token never enters a message."""
        scheme = self.token.static.scheme
        sent = {self.token.static.header: f"{scheme} {token}" if scheme else token}
        return self.token._parse(fingerprint(token), self._introspect(sent))

    def _introspect(self, sent: Mapping[str, str]) -> Any:
        transport = Transport(
            "s3m", self.settings.api_url, _Presented(sent), timeouts=self.settings.timeouts,
            policy=self.settings.policy, sender=self.sender,
        )  # fmt: skip
        return transport.request("GET", INTROSPECT_PATH, forbidden="resource")

    # health -------------------------------------------------------------------------------
    def health(self) -> Health:
        """The resource's entry in the public status; then, S3M answering, the token's expiry
        is read when due (no request when it is not), so that the throttler knows it."""
        answer = self.transport.request("GET", self.settings.status, authenticated=False)
        self.token.prime()
        resources = answer.get("resources") if isinstance(answer, dict) else None
        if not isinstance(resources, list):
            raise EdgeAPIError("s3m status: answer has no 'resources' list", transient=True)
        wanted = self.settings.resource.lower()
        named = (r for r in resources if isinstance(r, dict))
        entry = next((r for r in named if str(r.get("name", "")).lower() == wanted), None)
        if entry is None:
            names = ", ".join(str(r.get("name")) for r in resources if isinstance(r, dict))
            return Health(
                False, "unknown",
                f"resource {self.settings.resource!r} is not in the S3M status ({names[:200]})",
            )  # fmt: skip
        state = str(entry.get("status") or "unknown")
        message = str(entry.get("description") or "")
        outages = self._downtimes(entry.get("upcomingDowntimes"))
        now = time.time()
        current = next((o for o in outages if o.covers(now)), None)
        if state.upper() != "OPERATIONAL":
            return Health(False, state.lower(), message, planned=current, outages=outages)
        if current is not None:
            text = f"planned outage {current.until_text()}: {current.text}"
            return Health(False, "maintenance", text, planned=current, outages=outages)
        return Health(True, state.lower(), message, outages=outages)

    def _downtimes(self, items: Any) -> tuple[Outage, ...]:
        """Announced downtimes of the resource under way or to come, by start."""
        if not isinstance(items, list):
            return ()
        now = time.time()
        found = []
        for item in items:
            if not isinstance(item, dict):
                continue
            name = str(item.get("resourceName") or self.settings.resource).lower()
            if name != self.settings.resource.lower():
                continue
            if str(item.get("status") or "").upper() in _RUNNING_DOWNTIME:
                continue  # a downtime that leaves the machine running jobs
            start, end = iso_epoch(item.get("start")), iso_epoch(item.get("end"))
            if start is None and end is None:
                continue
            outage = Outage(
                start=start if start is not None else now,
                end=end,
                text=str(item.get("description") or "planned downtime")[:300],
            )
            if outage.end is None or outage.end > now:
                found.append(outage)
        return tuple(sorted(found, key=lambda o: o.start))

    # submit -------------------------------------------------------------------------------
    def submit_body(self, spec: JobSpec) -> dict[str, Any]:
        """The slurmrestd ``job/submit`` body of ``spec`` in the configured version and form."""
        return slurmrestd_job(spec, self.settings.api_version, self.settings.submit_form)

    def submit(self, spec: JobSpec) -> SubmitReceipt:
        """Post the spec as slurmrestd JSON; the answer carries the job id at once."""
        try:
            body = self.submit_body(spec)
        except EdgeConfigError as exc:
            raise EdgeAPIError(f"s3m submit: cannot encode job {spec.tag}: {exc}") from None
        unmapped = slurmrestd_unmapped(spec)
        if unmapped:
            log.debug(f"s3m submit {spec.tag}: no slurmrestd field for {', '.join(unmapped)}")
        path = f"{self._prefix}/job/submit"
        answer = self.transport.request(
            "POST", path, json=body, idempotent=False, refusal=slurm_refusal
        )
        return self._receipt(spec.tag, path, answer)

    def _receipt(self, tag: str, path: str, answer: Any) -> SubmitReceipt:
        what = f"s3m POST /{path}"
        if not isinstance(answer, dict):
            raise StatusError(f"{what}: the answer is not an object", 502, None, maybe_sent=True)
        errors = slurm_errors(answer)
        warnings = [w for w in answer.get("warnings") or [] if isinstance(w, dict)]
        result = answer.get("result")
        result = result if isinstance(result, dict) else {}
        job_id = str(answer.get("job_id") or result.get("job_id") or "").strip()
        secrets = self.token.secrets()
        if job_id and JOB_ID.match(job_id) and job_id != "0":
            if errors:
                said = redact(errors_text(errors), secrets)
                log.warning(f"{what}: job {job_id} ({tag}) made, with errors: {said}")
            if warnings:
                log.info(f"{what}: job {job_id} ({tag}): {redact(errors_text(warnings), secrets)}")
            return SubmitReceipt(job_id=job_id)
        final = [e for e in errors if _final_error(e)]
        if final:
            raise EdgeAPIError(f"{what}: {redact(errors_text(final), secrets)}", transient=False)
        said = f": {redact(errors_text(errors), secrets)}" if errors else ""
        raise StatusError(f"{what}: the answer holds no job id{said}", 502, None, maybe_sent=True)

    # the live list --------------------------------------------------------------------------
    def _job_list(self, max_age: float, *, join: bool = True) -> dict[str, JobRecord]:
        """The live list begun at most ``max_age`` seconds before this call, or (``join``)
        one that was in flight when the call came; never one begun before the last cancel.
        Concurrent callers share one request, and its error: a list request that failed
        while this call waited for it is this call's failure too (the service did not answer
        this call either), so a silent service costs concurrent callers one timeout."""
        asked = time.monotonic()
        with self._list_lock:
            cached = self._list
            if cached is not None and cached.started >= self._stale_before:
                recent = cached.started >= asked - max_age
                overlapped = cached.ended >= asked
                if cached.error is not None and (recent or overlapped):
                    raise _copy(cached.error)
                if cached.error is None and (recent or (join and overlapped)):
                    return cached.records
            started = time.monotonic()
            try:
                records = self._fetch_list()
            except EdgeAuthError:
                raise  # the token's own back-off answers the next callers
            except EdgeAPIError as exc:
                self._list = _JobList(started, time.monotonic(), error=exc)
                raise
            self._list = _JobList(started, time.monotonic(), records)
            return records

    def _fetch_list(self) -> dict[str, JobRecord]:
        answer = self.transport.request("GET", f"{self._prefix}/jobs")
        jobs = answer.get("jobs") if isinstance(answer, dict) else None
        if not isinstance(jobs, list):
            said = errors_text(slurm_errors(answer)) if isinstance(answer, dict) else ""
            raise EdgeAPIError(
                f"s3m jobs: the answer has no 'jobs' list{': ' + said if said else ''}",
                transient=True,
            )
        if not jobs and slurm_errors(answer):
            # slurmrestd answers jobs: [] with errors when it could not ask slurmctld
            raise EdgeAPIError(f"s3m jobs: {errors_text(slurm_errors(answer))}", transient=True)
        records: dict[str, JobRecord] = {}
        skipped = 0
        for job in jobs:
            try:
                record = record_from_slurmrestd(job) if isinstance(job, dict) else None
            except ValueError:
                record = None
            if record is None:
                skipped += 1
                continue
            records[record.job_id] = record
        if skipped and not records:
            raise EdgeAPIError(f"s3m jobs: none of {skipped} jobs is readable", transient=True)
        if skipped:
            log.warning(f"s3m jobs: skipped {skipped} unreadable jobs")
        return records

    # poll ---------------------------------------------------------------------------------
    def poll(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """One live list for all ids, then ``job/{id}`` for those gone from it or final there
        (accounting, with the exit code: ``confirmed_final``).  Ids in neither are absent.
        A history request that fails (other than "Invalid job id") fails the call: "could
        not check", never "gone"."""
        ids = _unique(job_ids)
        share = self.settings.list_share_seconds

        def live(wanted: Sequence[str]) -> dict[str, JobRecord]:
            listing = self._job_list(share)
            return {j: listing[j] for j in wanted if j in listing}

        return confirm_with_accounting(ids, live, self._history)

    def _history(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        wanted = [j for j in job_ids if JOB_ID.match(j)]
        budget = self._fan_out_budget()
        results = run_bounded(lambda j: self._one_job(j, budget), wanted, self.settings.concurrency)
        errors = [e for _, _, e in results if e is not None]
        silent = [e for e in errors if isinstance(e, EdgeNetworkError) and e.silent]
        if errors:
            raise (silent or errors)[0]
        return {j: r for j, r, _ in results if r is not None}

    def _fan_out_budget(self) -> CallBudget:
        """One client call's per-job requests (``job/{id}``, ``DELETE``): once one of them
        got no answer in time, the ones not started yet are not sent (the service is silent:
        a call costs one timeout, not one per round of ``concurrency`` requests), and none
        starts after the call's deadline."""
        return CallBudget(self.settings.policy.deadline)

    def _one_job(
        self, job_id: str, budget: CallBudget
    ) -> tuple[str, JobRecord | None, EdgeAPIError | None]:
        spent = budget.spent()
        if spent:
            unasked = EdgeNetworkError(f"s3m job {job_id}: not asked: {spent}", maybe_sent=False)
            return job_id, None, unasked
        try:
            answer = self.transport.request(
                "GET", f"{self._prefix}/job/{job_id}", refusal=slurm_refusal
            )
        except RefusedError as exc:
            if _no_such_job(str(exc)):
                return job_id, None, None
            return job_id, None, exc
        except EdgeAPIError as exc:
            budget.note(exc)
            if exc.status == 404 and _no_such_job(str(exc)):
                return job_id, None, None
            return job_id, None, exc
        jobs = answer.get("jobs") if isinstance(answer, dict) else None
        if not isinstance(jobs, list):
            return (
                job_id,
                None,
                EdgeAPIError(f"s3m job {job_id}: the answer has no 'jobs' list", transient=True),
            )
        for job in jobs:
            if not isinstance(job, dict) or str(job.get("job_id", "")).strip() != job_id:
                continue
            try:
                record = record_from_slurmrestd(job)
            except ValueError:
                continue
            # the per-job route is S3M's history (slurmdb): a final state there is confirmed
            record = replace(record, confirmed_final=record.state.is_final)
            return job_id, _with_canceller(record, job), None
        errors = slurm_errors(answer)
        if errors and not _no_such_job(errors_text(errors)):
            return (
                job_id,
                None,
                EdgeAPIError(f"s3m job {job_id}: {errors_text(errors)}", transient=True),
            )
        return job_id, None, None

    # find / live tags ----------------------------------------------------------------------
    def find(self, tags: Sequence[str]) -> dict[str, list[JobRecord]]:
        """Jobs named by these tags in a live list begun after this call.  Jobs that already
        left the live list are not found (S3M has no history listing)."""
        wanted = set(tags)
        if not wanted:
            return {}
        found: dict[str, list[JobRecord]] = {}
        for record in self._job_list(0.0, join=False).values():
            if record.name in wanted:
                found.setdefault(record.name, []).append(record)
        return found

    def live_tags(self, prefix: str) -> list[str]:
        listing = self._job_list(self.settings.list_share_seconds)
        return [
            r.name for r in listing.values() if r.name.startswith(prefix) and not r.state.is_final
        ]

    # cancel --------------------------------------------------------------------------------
    def cancel(self, job_ids: Sequence[str]) -> dict[str, CancelOutcome]:
        """``DELETE .../job/{id}`` per id, ``concurrency`` at a time.  Accepted; already final
        (Slurm: already completing or completed, invalid job id); refused with the reason.
        A ``DELETE`` not answered in time raises that ``EdgeNetworkError`` once the requests
        in flight are done (the service is silent: the caller asks nothing more in its call;
        Slurm shows the cancels that arrived on its next call)."""
        ids = _unique(job_ids)
        out = {
            i: CancelOutcome.refused(f"not a Slurm job id: {i[:40]!r}")
            for i in ids
            if not JOB_ID.match(i)
        }
        valid = [i for i in ids if i not in out]
        budget = self._fan_out_budget()
        silent: list[EdgeNetworkError] = []
        try:
            results = run_bounded(
                lambda j: self._cancel_one(j, budget, silent), valid, self.settings.concurrency
            )
        finally:
            self._stale_before = time.monotonic()
        if silent:
            raise silent[0]
        out.update(dict(results))
        return out

    def _cancel_one(
        self, job_id: str, budget: CallBudget, silent: list[EdgeNetworkError]
    ) -> tuple[str, CancelOutcome]:
        spent = budget.spent()
        if spent:
            return job_id, CancelOutcome.refused(f"not asked: {spent}")
        try:
            answer = self.transport.request(
                "DELETE", f"{self._prefix}/job/{job_id}", refusal=slurm_refusal
            )
        except RefusedError as exc:
            return job_id, _cancel_outcome(_short(exc))
        except EdgeAPIError as exc:
            budget.note(exc)
            if isinstance(exc, EdgeNetworkError) and exc.silent:
                silent.append(exc)
            return job_id, CancelOutcome.refused(f"cancel failed: {exc}")
        problems = slurm_errors(answer) + _kill_errors(answer)
        if problems:
            return job_id, _cancel_outcome(errors_text(problems, 200))
        return job_id, CancelOutcome.accepted()


def _with_canceller(record: JobRecord, job: Mapping[str, Any]) -> JobRecord:
    """A cancelled job's record saying who cancelled it, as sacct's ``CANCELLED by <uid>``
    does: slurmdb's ``kill_request_user`` (v0.0.41+)."""
    user = str(job.get("kill_request_user") or "").strip()
    if record.state is not JobState.CANCELED or not user or " by " in record.native:
        return record
    return replace(record, native=f"{record.native} by {user[:64]}")


def _kill_errors(answer: Any) -> list[dict[str, Any]]:
    """v0.0.42+ ``DELETE`` answers: ``status: [{error: {string, code, message}, job_id}]``;
    the items whose error code is not 0, as error items."""
    items = answer.get("status") if isinstance(answer, dict) else None
    found: list[dict[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        error = item.get("error") if isinstance(item, dict) else None
        if isinstance(error, dict) and error_number({"error_number": error.get("code")}):
            found.append(
                {
                    "error_number": error.get("code"),
                    "error": error.get("string") or "",
                    "description": error.get("message") or "",
                }
            )
    return found


def _cancel_outcome(text: str) -> CancelOutcome:
    numbers = rf"Slurm error ({ESLURM_INVALID_JOB_ID}|{ESLURM_ALREADY_DONE})\b"
    if _ALREADY_FINAL.search(text) or re.search(numbers, text):
        return CancelOutcome.already_final(text)
    return CancelOutcome.refused(f"cancel failed: {text}")
