"""DOE IRI Facility API client (API v1 and v2): NERSC, ALCF and OLCF (Frontier) alike.

Requests go through ``HttpxTransport`` with a bearer token (:class:`BearerToken`: a
``file:``/``env:`` secret read at every request, a token file must be mode 0600, a refused
token is not sent again for ``refusal_backoff`` seconds unless the secret changes).  Every
route is authenticated, status included (OLCF asks for it).  Endpoint facts:
shared/FACILITY_APIS.md, IRI section; the spec is doe-iri/iri-facility-api-docs.

The compute resource is named in config and found by name in ``GET /status/resources``
(its id is a UUID at NERSC), once per client.  Wire format (docs/iri.md):

- submit: ``POST /compute/job/{rid}``, the PSI/J job spec (``encoders.psij_job_spec``) as
  canonical JSON bytes, the same on every retry.  v2 sends ``Idempotency-Key: <tag>``: a
  5xx or reset answer is recovered by sending the same bytes again (``Idempotency-Key-Reply:
  hit`` answers the original job); 409 (same key in flight) is sent again too; 422 naming the
  key (same key, another body) is a bug, raised loudly and never retried; 501 (no
  idempotency store) switches the key off for the client's life
  (``capabilities.idempotent_submit`` turns False: the core then looks the tag up after an
  ambiguous submit, as for v1).  One ``submit`` is one request (429 and "not sent" aside):
  the resends are the submitter's (``capabilities.idempotent_submit``, ``retryAttempts`` in
  all), so that retries are never nested (attempts x attempts requests to a failing
  service); a request not answered in time is not resent in the same plugin call (a silent
  service holds a call for one timeout), the monitor looks the tag up instead.
- poll: one bulk ``POST /compute/status/{rid}?offset=0&limit=1000&historical=true`` with the
  filter ``{"id": [ids]}``, paged while a page is full and ids are still unseen; find: the
  same with ``{"name": [tags]}`` and ``include_spec=true`` (names live in ``job_spec``);
  live_tags: ``historical=false``, no filter, names matched here.  The filter keys are the
  facility's choice (the spec leaves the body free-form): ``id``/``name`` by default,
  configurable; answers are filtered again here, so a facility that ignores a key costs
  pages, never a wrong record.
- PSI/J states -> ``JobState`` (``new`` is queued); the message and exit code go into the
  record, Slurm's cause words found in the message or ``meta_data`` (``TIMEOUT``,
  ``NODE_FAIL``, ``OUT_OF_MEMORY``, ...) become ``cause``; every record is the service's own
  word (``confirmed_final``: with ``historical=true`` finished jobs come from its history).
- cancel: ``DELETE /compute/cancel/{rid}/{id}`` (204) per job, ``cancel_concurrency`` at once;
  none is started once one went unanswered (that error is raised).
- health: ``GET /status/resources/{rid}`` (``current_status``) and ``GET /status/incidents``
  for the resource (planned incidents are maintenance windows; 404 means none).

Errors are RFC 7807 problems, read by the transport (``describe``) into our exceptions.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from ..edge.budget import CallBudget
from ..edge.encoders import canonical_json, psij_job_spec
from ..edge.jobs import JobRecord, JobState, SubmitReceipt
from ..edge.retry import RetryPolicy, Timeouts
from ..edge.spec import JobSpec
from ..errors import EdgeAPIError, EdgeAuthError, EdgeConfigError, EdgeNetworkError
from .auth import SecretSource, StaticTokenAuth, fingerprint
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
from .transport import HttpxTransport, Reply, run_bounded

log = logging.getLogger(__name__)

API_VERSIONS = ("v1", "v2")
CREDENTIAL_KIND = "bearer-token"
IDEMPOTENCY_KEY = "Idempotency-Key"
IDEMPOTENCY_REPLY = "Idempotency-Key-Reply"
#: the spec's largest page of the bulk status call (and of every list route)
PAGE_LIMIT = 1000

_URL_VERSION = re.compile(r"/api/(v[0-9]+)/*\Z")
_STATES = {
    "new": JobState.QUEUED,
    "queued": JobState.QUEUED,
    "held": JobState.HELD,
    "active": JobState.ACTIVE,
    "completed": JobState.COMPLETED,
    "failed": JobState.FAILED,
    "canceled": JobState.CANCELED,
    "cancelled": JobState.CANCELED,
}
#: Slurm's words for why a job ended, as a facility may pass them in the message
_CAUSE = re.compile(
    r"\b(NODE_FAIL|BOOT_FAIL|OUT_OF_MEMORY|DEADLINE|REVOKED|SPECIAL_EXIT|TIMEOUT|PREEMPTED)\b"
)
#: the ``meta_data`` key in which a Slurm-backed facility names Slurm's own state (the
#: loopback gateway does): the worker's native status when present, else the PSI/J word
_NATIVE_KEY = "slurm_state"
_CANCELLED_BY = re.compile(r"\bCANCELLED by (\S+)")
#: a 422 on a keyed submit that names the key: same key, another body
_KEY_MISMATCH = re.compile(r"idempotency", re.IGNORECASE)
#: a cancel refusal saying the job had already ended (or is unknown to the scheduler)
_ALREADY_FINAL = re.compile(
    r"already (?:completing|completed|complete|finished|final|cancel\w*|ended|terminated|done)"
    r"|invalid job id|not (?:a )?(?:running|active) job",
    re.IGNORECASE,
)
_OVER = ("cancelled", "canceled", "completed")  # incident resolutions that end it


def api_version_of(url: str) -> str | None:
    """``v1``/``v2`` from a base URL ending in ``/api/v1`` or ``/api/v2``, else None."""
    match = _URL_VERSION.search(url or "")
    return match.group(1) if match else None


@dataclass(frozen=True)
class IRISettings:
    """Everything that shapes one IRI client (hashable: the shared client is keyed on it)."""

    api_url: str
    api_version: str
    #: the compute resource's name (or id) as ``/status/resources`` lists it
    resource: str
    token: SecretSource
    timeouts: Timeouts
    policy: RetryPolicy
    #: after the service refused the token, it is not sent again for this long (unless the
    #: secret now holds another token)
    refusal_backoff: float = 60.0
    #: parallel DELETE requests of one cancel call
    cancel_concurrency: int = 8
    #: bulk status filter keys (the body is free-form: each facility chooses its keys)
    id_filter_key: str = "id"
    name_filter_key: str = "name"
    #: pages of ``PAGE_LIMIT`` read at most per bulk call (beyond: "could not check")
    max_pages: int = 20


class BearerToken:
    """An IRI bearer token (Globus at NERSC/ALCF, OLCF's at OLCF) as the transport's ``Auth``.

    The secret is read at every request (a credential manager may replace the file); a
    token file that group or others may read is refused, with the ``chmod`` to run.  When
    the service refuses the token it is not sent again for ``refusal_backoff`` seconds: the
    throttler sees the problem in ``facts()`` and stops new workers; another token in the
    secret is used at once.  Nothing here ever shows the token: ``facts`` names it by
    fingerprint.
    """

    def __init__(
        self, secret: SecretSource, *, refusal_backoff: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):  # fmt: skip
        self.secret = secret
        self._static = StaticTokenAuth(
            secret, scheme="Bearer", kind="IRI bearer token", owner_only=True
        )
        self._backoff = refusal_backoff
        self._clock = clock
        self._lock = threading.Lock()
        #: (fingerprint of the refused token, no request until, HTTP status)
        self._refused: tuple[str, float, int] | None = None

    def __repr__(self) -> str:
        return f"BearerToken({self.secret.source})"

    @staticmethod
    def _fingerprint(sent: Mapping[str, str]) -> str:
        return fingerprint(sent.get("Authorization", "").partition(" ")[2])

    def _refusal(self, print_: str) -> str | None:
        """Why this token is not sent now (refused moments ago), or None."""
        with self._lock:
            refused = self._refused
        if refused is None or refused[0] != print_:
            return None
        left = refused[1] - self._clock()
        if left <= 0:
            return None
        return (
            f"IRI bearer token {print_} from {self.secret.source} refused (HTTP {refused[2]}); "
            f"not sent again for {left:.0f}s unless the secret changes"
        )

    # the transport's Auth ---------------------------------------------------------------
    def headers(self) -> dict[str, str]:
        sent = self._static.headers()  # owner_only: an open or missing file is refused
        why = self._refusal(self._fingerprint(sent))
        if why:
            raise EdgeAuthError(why)
        return sent

    def refresh(self, sent: Mapping[str, str]) -> bool:
        return self._static.refresh(sent)

    def refused(self, sent: Mapping[str, str], status: int) -> EdgeAuthError:
        print_ = self._fingerprint(sent)
        with self._lock:
            self._refused = (print_, self._clock() + self._backoff, status)
        log.warning(
            f"IRI bearer token {print_} from {self.secret.source} refused (HTTP {status}); "
            f"not sent again for {self._backoff:.0f}s unless the secret changes"
        )
        return EdgeAuthError(
            f"IRI bearer token {print_} from {self.secret.source} refused (HTTP {status})",
            status=status,
        )

    def facts(self) -> CredentialFacts:
        """Kind, fingerprint, the JWT ``exp`` when the token is a JWT (Globus tokens are
        opaque: no expiry), and the problem: unreadable or open file, expired, refused."""
        facts = self._static.facts()
        problem = facts.problem
        if problem is None and facts.expires_at is not None and facts.expires_at <= time.time():
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(facts.expires_at))
            problem = f"IRI bearer token {facts.identity} expired at {when}"
        if problem is None:
            problem = self._refusal(facts.identity)
        return CredentialFacts(
            kind=CREDENTIAL_KIND,
            identity=facts.identity,
            expires_at=facts.expires_at,
            problem=problem,
        )


# records -----------------------------------------------------------------------------------
def _exit_code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _texts(meta: Mapping[str, Any]) -> list[str]:
    return [v for v in meta.values() if isinstance(v, str)]


def record_of(job: Mapping[str, Any]) -> JobRecord:
    """One IRI ``Job`` (``{id, status: {state, time, message, exit_code, meta_data},
    job_spec}``) as a ``JobRecord``.  The name comes from ``job_spec.name`` (with
    ``include_spec=true``) or a ``name``/``job_name`` in ``meta_data``; an unknown state is
    UNKNOWN (never final); the native words are Slurm's state when ``meta_data`` names it
    (``slurm_state``), else the PSI/J state; Slurm's cause words in the message or
    ``meta_data`` text of a final state are kept as ``cause`` and ``CANCELLED by N`` as the
    native words.  Raises
    ValueError for a job without an id."""
    job_id = job.get("id")
    if job_id is None or str(job_id).strip() == "":
        raise ValueError("job has no 'id'")
    status = _object(job.get("status"))
    meta = _object(status.get("meta_data"))
    spec = _object(job.get("job_spec"))
    text = str(status.get("state") or "").strip()
    state = _STATES.get(text.lower(), JobState.UNKNOWN)
    message = " ".join(str(status.get("message") or "").split())
    name = spec.get("name") or meta.get("name") or meta.get("job_name") or ""
    cause = None
    slurm = meta.get(_NATIVE_KEY)
    native = slurm.strip()[:64] if isinstance(slurm, str) and slurm.strip() else ""
    native = native or text.upper() or "UNKNOWN"
    if state.is_final:
        words = (message, *_texts(meta))
        cause = next((m.group(1) for m in map(_CAUSE.search, words) if m), None)
        if state is JobState.CANCELED:
            by = next((m.group(0) for m in map(_CANCELLED_BY.search, words) if m), None)
            native = by or native
    nodes = meta.get("nodes") or meta.get("nodelist") or ""
    return JobRecord(
        job_id=str(job_id),
        state=state,
        name=str(name),
        cause=cause,
        exit_code=_exit_code(status.get("exit_code")),
        native=native,
        reason=message[:300],
        nodes=nodes if isinstance(nodes, str) else "",
        confirmed_final=True,
    )


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(str(i) for i in items))


def cancel_outcome(exc: EdgeAPIError) -> CancelOutcome:
    """A refused DELETE as an outcome: a job the service does not know (404) or that had
    already ended is ``already_final`` (the sweeper confirms with a poll); anything else is
    ``refused`` with the service's words."""
    text = str(exc)
    if exc.status == 404:
        return CancelOutcome.already_final(f"invalid job id: unknown to the service ({text})")
    if _ALREADY_FINAL.search(text):
        return CancelOutcome.already_final(text)
    return CancelOutcome.refused(f"cancel failed: {text}")


@dataclass(frozen=True)
class _Resource:
    id: str
    name: str


class IRIClient(FacilityClient):
    """One compute resource of one IRI deployment through one bearer token."""

    service = "iri"

    def __init__(self, settings: IRISettings, *, clock: Callable[[], float] = time.monotonic):
        if settings.api_version not in API_VERSIONS:
            raise EdgeConfigError(f"IRI API version must be v1 or v2, got {settings.api_version}")
        self.settings = settings
        self.credentials = BearerToken(
            settings.token, refusal_backoff=settings.refusal_backoff, clock=clock
        )
        self.transport = HttpxTransport(
            "iri", settings.api_url, self.credentials,
            timeouts=settings.timeouts, policy=settings.policy,
        )  # fmt: skip
        self._lock = threading.Lock()
        self._discovery = threading.Lock()
        self._resource: _Resource | None = None
        #: why submits go without an Idempotency-Key (None: v2 with a store, so far)
        self.no_idempotency_store: str | None = None
        #: job id -> name, learned from our submits and lookups (the bulk status answer has
        #: names only with ``include_spec=true``, which poll does not ask: specs are large)
        self._names: OrderedDict[str, str] = OrderedDict()

    def __repr__(self) -> str:
        s = self.settings
        return f"IRIClient({s.api_url!r}, {s.api_version}, resource={s.resource!r})"

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]  # the base's default
        """v2 submits are idempotent until the service says it keeps no idempotency store."""
        keyed = self.settings.api_version == "v2" and self.no_idempotency_store is None
        return Capabilities(idempotent_submit=keyed, files=False, max_ids_per_query=PAGE_LIMIT)

    def close(self) -> None:
        self.transport.close()

    def credential(self) -> CredentialFacts:
        return self.credentials.facts()

    # the compute resource ----------------------------------------------------------------
    def resource_id(self) -> str:
        """The configured resource's id, found by name once (one ``GET /status/resources``
        of up to 1000 resources) and kept; a 404 on a resource route drops it."""
        found = self._resource
        if found is not None:
            return found.id
        with self._discovery:
            if self._resource is None:
                self._resource = self._discover()
                log.info(
                    f"iri: resource {self.settings.resource!r} is {self._resource.id} "
                    f"at {self.settings.api_url}"
                )
            return self._resource.id

    def _discover(self) -> _Resource:
        rows = self._pages("GET", "status/resources", {}, what="resources")
        wanted = self.settings.resource
        resources = [r for r in rows if isinstance(r, dict) and r.get("id")]
        for match in (
            lambda r: r.get("name") == wanted,
            lambda r: str(r.get("id")) == wanted,
            lambda r: str(r.get("name") or "").lower() == wanted.lower(),
        ):
            hits = [r for r in resources if match(r)]
            computes = [r for r in hits if "compute" in (r.get("supported_endpoints") or [])]
            if len(computes) == 1 or len(hits) == 1:
                hit = computes[0] if len(computes) == 1 else hits[0]
                return _Resource(str(hit["id"]), str(hit.get("name") or ""))
            if hits:
                ids = ", ".join(str(r["id"]) for r in hits[:5])
                raise EdgeAPIError(
                    f"iri: resource {wanted!r} is ambiguous at {self.settings.api_url} "
                    f"({ids}); configure its id as 'resource'"
                )
        names = sorted({str(r.get("name")) for r in resources if r.get("name")})
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise EdgeAPIError(
            f"iri: no resource named {wanted!r} at {self.settings.api_url} "
            f"(it lists: {shown or 'none'})"
        )

    def _forget_resource(self) -> None:
        self._resource = None  # one assignment (no lock: discovery itself may get a 404)

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        """A request on a resource route: a 404 may mean the cached id went stale."""
        try:
            return self.transport.request(method, path, **kw)
        except EdgeAPIError as exc:
            if exc.status == 404:
                self._forget_resource()
            raise

    def _pages(
        self, method: str, path: str, params: Mapping[str, str], *, json: Any = None,
        wanted: set[str] | None = None, what: str,
    ) -> list[Any]:  # fmt: skip
        """A list route read page by page (``offset``/``limit``), while a page is full and,
        with ``wanted``, some wanted id is still unseen (1000 ids found = 1 request)."""
        out: list[Any] = []
        seen: set[str] = set()
        offset = 0
        for _ in range(self.settings.max_pages):
            query = {"offset": str(offset), "limit": str(PAGE_LIMIT), **params}
            answer = self._request(method, path, params=query, json=json)
            if not isinstance(answer, list):
                raise EdgeAPIError(f"iri {what}: the answer is not a list", transient=True)
            out += answer
            if len(answer) < PAGE_LIMIT:
                return out
            if wanted is not None:
                seen.update(str(j.get("id")) for j in answer if isinstance(j, dict))
                if wanted <= seen:
                    return out
            offset += len(answer)
        raise EdgeAPIError(
            f"iri {what}: more than {self.settings.max_pages} pages of {PAGE_LIMIT}; "
            "does the facility ignore the status filter?",
            transient=True,
        )

    # health --------------------------------------------------------------------------------
    def health(self) -> Health:
        rid = self.resource_id()
        answer = self._request("GET", f"status/resources/{quote(rid, safe='')}")
        if not isinstance(answer, dict):
            raise EdgeAPIError("iri resource status: the answer is not an object", transient=True)
        state = str(answer.get("current_status") or "unknown").lower()
        outages, unplanned = self._incidents(rid)
        now = time.time()
        current = next((o for o in outages if o.covers(now)), None)
        name = self.settings.resource
        if state == "down":
            message = "; ".join(unplanned) or f"{name} is down"
            return Health(False, state, message, planned=current, outages=outages)
        if current is not None:
            text = f"planned outage {current.until_text()}: {current.text}"
            return Health(False, "maintenance", text, planned=current, outages=outages)
        if state == "degraded":
            message = "; ".join(unplanned) or f"{name} is degraded"
            return Health(True, state, message, outages=outages)
        return Health(True, state, outages=outages)

    def _incidents(self, rid: str) -> tuple[tuple[Outage, ...], list[str]]:
        """Planned incidents of the resource not over (by start), and the texts of the
        unplanned ones under way; nothing when they cannot be read (the resource's own
        status is the authority then) or there are none (the reference answers 404)."""
        try:
            rows = self.transport.request(
                "GET", "status/incidents", params={"resource_id": rid, "limit": str(PAGE_LIMIT)}
            )
        except EdgeAPIError as exc:
            if exc.status != 404:
                log.info(f"iri: incidents not readable now ({exc})")
            return (), []
        now = time.time()
        planned: list[Outage] = []
        unplanned: list[str] = []
        for row in rows if isinstance(rows, list) else []:
            if not isinstance(row, dict):
                continue
            if str(row.get("resolution") or "").lower() in _OVER:
                continue
            uris = row.get("resource_uris")
            if (
                isinstance(uris, list)
                and uris
                and not any(str(u).rstrip("/").endswith(f"/{rid}") for u in uris)
            ):
                continue
            start, end = iso_epoch(row.get("start")), iso_epoch(row.get("end"))
            if end is not None and end <= now:
                continue
            text = str(row.get("name") or row.get("description") or "incident")
            kind = str(row.get("type") or "").lower()
            if kind == "planned":
                planned.append(Outage(start if start is not None else now, end, text))
            elif kind == "unplanned" and (start is None or start <= now):
                unplanned.append(text)
        return tuple(sorted(planned, key=lambda o: o.start)), unplanned

    # submit --------------------------------------------------------------------------------
    def submit_body(self, spec: JobSpec) -> dict[str, Any]:
        """The PSI/J job spec of ``spec`` (sent as canonical JSON bytes)."""
        return psij_job_spec(spec)

    def submit(self, spec: JobSpec) -> SubmitReceipt:
        """Post the PSI/J spec; v2 with the tag as ``Idempotency-Key`` (see the module)."""
        try:
            body = canonical_json(self.submit_body(spec))
        except EdgeConfigError as exc:
            raise EdgeAPIError(f"iri submit of {spec.tag}: cannot encode the job: {exc}") from None
        rid = self.resource_id()
        keyed = self.capabilities.idempotent_submit
        headers = {"content-type": "application/json"}
        if keyed:
            headers[IDEMPOTENCY_KEY] = spec.tag
        try:
            reply: Reply = self._request(
                "POST", f"compute/job/{quote(rid, safe='')}", content=body, headers=headers,
                idempotent=False, with_response=True,
            )  # fmt: skip
        except EdgeAuthError:
            raise
        except EdgeAPIError as exc:
            if keyed and exc.status == 501:
                self._no_store(str(exc))
                return self.submit(spec)  # now without the key: never twice
            if keyed and exc.status == 422 and _KEY_MISMATCH.search(str(exc)):
                message = (
                    f"iri submit of {spec.tag}: the service holds another job body under this "
                    f"Idempotency-Key ({exc}); our job spec is not deterministic: a bug"
                )
                log.error(message)
                raise EdgeAPIError(message, status=422) from None
            raise
        job = reply.body if isinstance(reply.body, dict) else {}
        job_id = str(job.get("id") or "").strip()
        if not job_id:
            # the service took the request and named no job: it may exist, like after a 502
            raise EdgeAPIError(
                f"iri submit of {spec.tag}: HTTP {reply.status} without a job id", status=502,
                transient=True,
            )  # fmt: skip
        if str(reply.headers.get(IDEMPOTENCY_REPLY, "")).lower() == "hit":
            log.info(f"iri submit of {spec.tag}: idempotency hit, the original job {job_id}")
        self._remember({job_id: spec.tag})
        return SubmitReceipt(job_id=job_id)

    def _no_store(self, why: str) -> None:
        if self.no_idempotency_store is None:
            log.warning(
                f"iri: {self.settings.api_url} keeps no idempotency store ({why}); submits go "
                "without Idempotency-Key from now on (an ambiguous submit is looked up by tag)"
            )
        self.no_idempotency_store = why

    # queries -------------------------------------------------------------------------------
    def _statuses(
        self, filters: dict[str, Any], *, historical: bool, include_spec: bool = False,
        wanted: set[str] | None = None,
    ) -> list[JobRecord]:  # fmt: skip
        params = {"historical": "true" if historical else "false"}
        if include_spec:
            params["include_spec"] = "true"
        rid = quote(self.resource_id(), safe="")
        rows = self._pages(
            "POST", f"compute/status/{rid}", params, json=filters, wanted=wanted, what="status"
        )
        return self._records(rows)

    def _records(self, rows: list[Any]) -> list[JobRecord]:
        """Readable jobs, names filled in from what we know; rows none of which is readable
        mean the answer's shape changed: a transient error, never "every job gone"."""
        records: dict[str, JobRecord] = {}
        skipped = 0
        for row in rows:
            try:
                record = record_of(row) if isinstance(row, dict) else None
            except ValueError:
                record = None
            if record is None:
                skipped += 1
                continue
            records.setdefault(record.job_id, record)
        if skipped and not records:
            raise EdgeAPIError(f"iri status: none of {skipped} jobs is readable", transient=True)
        if skipped:
            log.warning(f"iri status: skipped {skipped} unreadable jobs")
        named = {r.job_id: r.name for r in records.values() if r.name}
        self._remember(named)
        with self._lock:
            known = {j: self._names[j] for j in records if j not in named and j in self._names}
        return [replace(r, name=known.get(r.job_id, r.name)) for r in records.values()]

    def _remember(self, names: Mapping[str, str]) -> None:
        with self._lock:
            for job_id, name in names.items():
                self._names[job_id] = name
                self._names.move_to_end(job_id)
            while len(self._names) > 100_000:
                self._names.popitem(last=False)

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """One bulk status request per 1000 ids, finished jobs included (``historical``)."""
        out: dict[str, JobRecord] = {}
        for part in chunks(_unique(job_ids), PAGE_LIMIT):
            keep = set(part)
            filters = {self.settings.id_filter_key: part}
            for r in self._statuses(filters, historical=True, wanted=keep):
                if r.job_id in keep:
                    out[r.job_id] = r
        return out

    def find(self, tags: Sequence[str]) -> dict[str, list[JobRecord]]:
        """Jobs named by these tags, live and ended, with their specs (for the names)."""
        found: dict[str, list[JobRecord]] = {}
        for part in chunks(_unique(tags), PAGE_LIMIT):
            keep = set(part)
            filters = {self.settings.name_filter_key: part}
            for r in self._statuses(filters, historical=True, include_spec=True):
                if r.name in keep:
                    found.setdefault(r.name, []).append(r)
        return found

    def live_tags(self, prefix: str) -> list[str]:
        records = self._statuses({}, historical=False, include_spec=True)
        return [r.name for r in records if r.name.startswith(prefix) and not r.state.is_final]

    # cancel --------------------------------------------------------------------------------
    def cancel(self, job_ids: Sequence[str]) -> dict[str, CancelOutcome]:
        """One ``DELETE`` per job, ``cancel_concurrency`` at a time.  Once one got no answer
        (no answer in time, unreachable: a silent service), the ones not started yet are not
        sent and, when those in flight are done, that error is raised: the caller asks
        nothing more in its call (a call costs one timeout, not one per round of
        ``cancel_concurrency``; the service shows the cancels that arrived on the next poll).
        When every request failed without an answer (a refused credential), that error is
        raised too; otherwise each job has its outcome."""
        ids = _unique(job_ids)
        if not ids:
            return {}
        rid = quote(self.resource_id(), safe="")
        budget = CallBudget(self.settings.policy.deadline)
        silent: list[EdgeNetworkError] = []

        def one(job_id: str) -> tuple[str, CancelOutcome | None, EdgeAPIError | None]:
            spent = budget.spent()
            if spent:
                return job_id, CancelOutcome.refused(f"cancel not asked: {spent}"), None
            try:
                self._request(
                    "DELETE", f"compute/cancel/{rid}/{quote(job_id, safe='')}",
                    forbidden="either",
                )  # fmt: skip
            except (EdgeNetworkError, EdgeAuthError) as exc:
                budget.note(exc)
                if isinstance(exc, EdgeNetworkError) and exc.silent:
                    silent.append(exc)
                return job_id, None, exc
            except EdgeAPIError as exc:
                return job_id, cancel_outcome(exc), None
            return job_id, CancelOutcome.accepted(), None

        results = run_bounded(one, ids, self.settings.cancel_concurrency)
        if silent:
            raise silent[0]
        errors = [e for _, _, e in results if e is not None]
        if errors and len(errors) == len(ids):
            raise errors[0]
        return {
            job_id: outcome or CancelOutcome.refused(f"cancel failed: {error}")
            for job_id, outcome, error in results
        }


def settings_from_config(cfg: Any) -> IRISettings:
    """Build settings from a validated plugin config (see ``plugins/iri.py``)."""
    if cfg.token is None:
        raise EdgeConfigError("config key 'token' is required (file:/path or env:NAME)")
    return IRISettings(
        api_url=cfg.apiUrl.rstrip("/"),
        api_version=cfg.apiVersion or api_version_of(cfg.apiUrl) or "",
        resource=cfg.resource,
        token=cfg.token,
        timeouts=Timeouts(cfg.connectTimeout, cfg.readTimeout),
        policy=RetryPolicy(
            attempts=cfg.retryAttempts, backoff=cfg.retryBackoff, deadline=cfg.callDeadline
        ),
        refusal_backoff=cfg.authRefusalBackoffSeconds,
        cancel_concurrency=cfg.cancelConcurrency,
        id_filter_key=cfg.statusIdFilterKey,
        name_filter_key=cfg.statusNameFilterKey,
    )
