"""An in-process DOE IRI facility API over a ``FakeFacility``: the real IRI client, no network.

Like ``testing_s3m``, this ships with the package so that operators can run the IRI plugins
(``harvester_edge.plugins.iri``) against a scripted scheduler: ``IRIDouble`` mounts the IRI
routes of one API version (``v1`` or ``v2``) on ``respx`` (the ``test`` extra), so the IRI
client sends its real requests over ``httpx`` and parses real answers, and every answer comes
from the ``FakeFacility`` behind it (``harvester_edge.testing``), with its scripted faults::

    fake = FakeFacility(profile="idempotent")           # v2 keeps the first answer per key
    with IRIDouble(fake, api_version="v2") as iri:
        conf = {**iri.options(), "token": f"file:{iri.write_token(tmp_path / 'tok')}", ...}
        sub, mon = IRISubmitter(**conf), IRIMonitor(**conf)
        fake.script("submit", "created_then_502")   # the job is made, then IRI answers 502

The answers are the wire shapes of the loopback gateway (``localsite/iri_gateway.py``,
``localsite/iri_states.py``):

- ``GET /status/resources``: the one compute resource (a UUID id, ``supported_endpoints:
  ["compute"]``); ``GET /status/resources/{rid}``: the same with ``current_status`` from
  ``fake.health()`` (``up``; ``degraded`` when the fake says so; ``down`` when unavailable).
- ``GET /status/incidents``: the fake's planned outage under way and its announced ones as
  ``planned`` incidents, and, when the fake is unavailable outside a planned window, an
  ``unplanned`` incident under way named ``<state>: <message>``; none answers 404 ("No
  incidents found"), as the reference server does.
- ``POST /compute/job/{rid}``: the PSI/J body is checked as the gateway checks it (a field
  the spec does not know is refused), then ``fake.submit`` gets a ``JobSpec`` read back from
  it (name -> tag, ``bash -l -c <script>``, directory, resources, attributes): 200 with the
  IRI ``Job`` (``state: new``).  v2: ``Idempotency-Key`` is answered from the fake's own
  idempotent profile (``FakeFacility(profile="idempotent")`` keeps the first answer per key):
  a key it already holds answers the original job with ``Idempotency-Key-Reply: hit`` (else
  ``miss``); the same key with another body is a 422; a fake without that profile keeps no
  store: a keyed submit answers 501.  v1 ignores the header.
- ``POST /compute/status/{rid}?offset&limit&historical&include_spec``: the bulk status with
  the filter body ``{"id": [...]}`` (the fake's ``query``), ``{"name": [...]}`` (``find``) or
  none (``live``), each job as the gateway shapes it (``status: {state, time, message,
  exit_code, meta_data: {name, slurm_state, ...}}``; PSI/J states from the fake's Slurm
  states, Slurm's words in the message: ``Slurm state TIMEOUT, exit code 0:0``).  As at the
  gateway, the live set is the fake's queued and running jobs (squeue shape: ``squeue -u``
  lists no ended job, so an ended job still lingering in the fake's queue is not in it);
  ``historical=true`` adds the ended jobs accounting has (sacct shape, with the exit code);
  an ended job accounting does not have yet is in neither.  A state the fake marks
  unreadable (``SlurmState.UNKNOWN``) is answered as its own word, outside PSI/J's seven.
- ``DELETE /compute/cancel/{rid}/{id}``: ``fake.cancel``: accepted or already ended -> 204
  (the gateway does not signal a finished job); unknown -> 404; refused -> 400 problem.

Every route wants the double's token (``token``, ``write_token``), else 401; the fake's
``credential_answer``: a ``problem`` refuses the token (401), a past ``expires_at`` too.
The token is a JWT whose ``exp`` is the credential's ``expires_at`` (else ``token_lifetime``
from now): the client reads the expiry from the token itself, so the double writes a new
token to the file (``sync_token``) as soon as the fake's expiry is set to another value (as a
credential manager replaces the file); a token the service refused is only known to the
client from a 401 (IRI has no introspection route).  Errors are
RFC 7807 problems ``{type, title, status, detail, instance}``.  Faults scripted on the fake
(``FakeFacility.FAULTS``) become what an IRI facility would answer: a network fault is raised
from ``httpx`` (``connect`` -> ``ConnectError``, not sent; ``timeout``/``hang`` ->
``ReadTimeout``, ``hang`` after ``hang_seconds``; ``created_then_reset`` ->
``RemoteProtocolError`` after the job exists); ``auth`` -> 401; ``busy_429`` -> 429 with
``Retry-After: 0``; ``created_then_5xx`` -> that status after the job exists; ``limit`` and
``refuse`` -> 400 with sbatch's words (as the gateway passes sbatch's refusal);
``unencodable`` -> the client's encoder refuses the next spec (the double wraps the client's
``psij_job_spec`` while mounted): nothing is sent.  ``GET /status/resources/{rid}`` takes the
``health`` faults; discovery and incidents take none.  ``calls`` counts the requests per route.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import respx

from .edge.spec import JobSpec
from .errors import EdgeAPIError, EdgeAuthError, EdgeConfigError, EdgeNetworkError
from .facilities import iri as iri_client
from .facilities.base import CancelOutcome, CredentialFacts, Deferred, Health, Outage
from .facilities.passthrough import SlurmState
from .localsite.iri_spec import SpecInvalid, parse_job_spec
from .localsite.iri_states import job_status
from .localsite.s3m_auth import write_token_file
from .testing import FakeFacility, FakeJob
from .testing_http import MountedDouble

__all__ = ["DEFAULT_API_URL", "IRIDouble"]

#: the double's host: never a real one, so nothing leaves the process by mistake
DEFAULT_API_URL = "https://iri.double.invalid/api"
DEFAULT_TOKEN_LIFETIME = 30 * 86400.0
_NAMESPACE = uuid.UUID("6d1f2a8e-4c1b-4d53-9a57-2f8f0d3c9e11")
_FAKE_WORDS = re.compile(r"^fake \w+: (?:HTTP \d+: )?")
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _words(exc: BaseException) -> str:
    """The fake's error text without its ``fake <operation>: HTTP N:`` head."""
    return _FAKE_WORDS.sub("", str(exc)).strip() or str(exc)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _network_error(exc: EdgeNetworkError, request: httpx.Request) -> httpx.TransportError:
    """What ``httpx`` raises for the fake's network fault (the transport reads the kind)."""
    if not exc.maybe_sent:
        return httpx.ConnectError("[Errno 111] Connection refused", request=request)
    if exc.silent:
        return httpx.ReadTimeout("The read operation timed out", request=request)
    return httpx.RemoteProtocolError(
        "Server disconnected without sending a response.", request=request
    )


def _exit_raw(job: FakeJob) -> str | None:
    """Slurm's ``N:S`` exit of an ended job (None before it ended)."""
    if job.exit_code is None and not job.signal:
        return None
    return f"{job.exit_code or 0}:{job.signal or 0}"


def _row(job: FakeJob, accounting: bool) -> dict[str, str]:
    """The fake's job as an squeue row or a job-level sacct row of ``LocalSlurm``."""
    state = job.state_text or job.state.long_name
    running = job.state.long_name == "RUNNING"
    row = {
        "jobid": job.job_id,
        "name": job.name,
        "state": state,
        "reason": job.reason or "None",
        "nodelist": "nid001" if running else "",
        "partition": "",
    }
    if accounting:
        row["exitcode"] = _exit_raw(job) or "0:0"
    return row


def _shape(job: FakeJob, in_queue: bool, accounted: bool) -> str | None:
    """Where the gateway reads the job from: ``squeue`` (the live set: queued and running
    jobs; ``squeue -u`` lists no ended job), ``sacct`` (an ended job, once accounting has it:
    only with ``historical=true``), or nowhere (ended and not in accounting yet)."""
    if in_queue and not job.state.is_final:
        return "squeue"
    if accounted:
        return "sacct"
    return None


def _job_status(job: FakeJob, shape: str) -> dict[str, Any]:
    """The gateway's ``JobStatus`` of the fake's job.  A state the fake marks unreadable
    (``SlurmState.UNKNOWN``, e.g. ``BURST_BUF+``) is answered as that word in ``state``, as a
    facility outside the spec's seven states would: what the client must not misread (the
    gateway itself reports such a Slurm state as ``queued``, naming it in the message)."""
    status = job_status(_row(job, shape == "sacct"), shape, job.name)
    if job.state is SlurmState.UNKNOWN:
        word = job.state_text or "unknown"
        status.update(state=word.lower(), message=f"Slurm state {word}")
    return status


def _spec_of(body: dict[str, Any]) -> JobSpec:
    """The job spec as the PSI/J body carried it (what the fake records as the job)."""
    args = body.get("arguments") or []
    script = args[-1] if isinstance(args, list) and len(args) >= 3 and args[1] == "-c" else ""
    resources = body.get("resources") or {}
    attributes = body.get("attributes") or {}
    custom = dict(attributes.get("custom_attributes") or {})
    qos, constraint = custom.pop("qos", None), custom.pop("constraint", None)
    memory = resources.get("memory")
    environment = body.get("environment") or {}
    return JobSpec(
        tag=str(body.get("name") or ""),
        script=str(script),
        work_dir=str(body.get("directory") or ""),
        nodes=int(resources.get("node_count") or 1),
        walltime_s=int(attributes.get("duration") or 0),
        account=attributes.get("account"),
        partition=attributes.get("queue_name"),
        qos=qos,
        constraint=constraint,
        directives=tuple(sorted((str(k), str(v)) for k, v in custom.items())),
        environment=tuple(sorted((str(k), str(v)) for k, v in environment.items())),
        stdout_path=str(body.get("stdout_path") or ""),
        stderr_path=str(body.get("stderr_path") or ""),
        processes_per_node=int(resources.get("processes_per_node") or 1),
        cores_per_process=int(resources.get("cpu_cores_per_process") or 1),
        gpus_per_process=int(resources.get("gpu_cores_per_process") or 0),
        memory_mb=int(memory) // 2**20 if isinstance(memory, int) else None,
    )


class _Problem(Exception):
    """An RFC 7807 answer (raised by a route, written by ``_answer``)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


class IRIDouble(MountedDouble):
    """The IRI status and compute routes of one resource and API version, over ``facility``.

    :param facility: the scripted scheduler behind the routes (its faults apply).
    :param api_version: ``v1`` or ``v2`` (the base URL ends with it).
    :param api_url: the mocked host and path before the version.
    :param resource: the compute resource's name (its id is a UUID made from it).
    :param token_lifetime: seconds to the token's ``exp`` when the fake's credential names no
        expiry.
    """

    def __init__(
        self,
        facility: FakeFacility,
        *,
        api_version: str = "v2",
        api_url: str = DEFAULT_API_URL,
        resource: str = "perlmutter",
        token_lifetime: float = DEFAULT_TOKEN_LIFETIME,
    ) -> None:
        if api_version not in iri_client.API_VERSIONS:
            raise ValueError(f"IRI API version must be v1 or v2, got {api_version!r}")
        self._facility = facility
        self.api_version = api_version
        self.base_url = f"{api_url.rstrip('/')}/{api_version}"
        self.resource = resource
        self.resource_id = str(uuid.uuid5(_NAMESPACE, f"resource:{resource}"))
        self.token_lifetime = token_lifetime
        self._issued_for = time.time() + token_lifetime
        self._serial = 0
        #: every token the double issued (all are accepted; the newest is ``token``)
        self.tokens: list[str] = []
        self.token = self._issue(None)
        self._token_path: Path | None = None
        #: requests per route (``resources``, ``resource``, ``incidents``, ``submit``,
        #: ``status``, ``cancel``), counted on arrival
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        #: idempotency key -> the canonical body first sent with it (v2)
        self._bodies: dict[str, bytes] = {}
        #: job id -> the PSI/J spec it was submitted with (``include_spec``)
        self._specs: dict[str, dict[str, Any]] = {}
        self._mock: respx.MockRouter | None = None
        self._encoder: Any = None
        facility.watch_credential(self._credential_changed)

    def __repr__(self) -> str:
        return f"IRIDouble({self.base_url!r}, resource={self.resource!r})"

    @property
    def facility(self) -> FakeFacility:
        """The scheduler behind the routes; another one may be put in (its credential then
        decides the token, written again at once)."""
        return self._facility

    @facility.setter
    def facility(self, facility: FakeFacility) -> None:
        if facility is self._facility:
            return
        self._facility = facility
        facility.watch_credential(self._credential_changed)
        self.sync_token()

    def _credential_changed(self, facts: CredentialFacts) -> None:
        if self._facility.credential_answer is facts:  # not a scheduler replaced since
            self.sync_token()

    # ------------------------------------------------------------------ set-up
    def options(self) -> dict[str, Any]:
        """The IRI queue-config keys that point a client here (the token is the caller's:
        ``"token": f"file:{double.write_token(path)}"``)."""
        return {"apiUrl": self.base_url, "apiVersion": self.api_version, "resource": self.resource}

    def _issue(self, expires_at: float | None) -> str:
        """A new JWT (unsigned: the client never verifies it) expiring at ``expires_at``."""
        self._serial += 1
        exp = expires_at if expires_at is not None else time.time() + self.token_lifetime
        self._issued_for = expires_at if expires_at is not None else -1.0
        claims = {"sub": "iri-double", "exp": int(exp), "jti": f"t{self._serial}"}
        token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.sig{self._serial}"
        self.tokens.append(token)
        return token

    def write_token(self, path: str | Path) -> Path:
        """Write the double's token to ``path`` (mode 0600), as the client wants it; the
        double writes it again there when the fake's credential expiry changes."""
        self._token_path = Path(path)
        return write_token_file(path, self.token)

    def sync_token(self) -> None:
        """A new token in the file when the fake's credential names another expiry."""
        expires = self.facility.credential_answer.expires_at
        wanted = expires if expires is not None else -1.0
        with self._lock:
            if wanted == self._issued_for:
                return
            self.token = self._issue(expires)
            path = self._token_path
        if path is not None:
            write_token_file(path, self.token)

    def start(self) -> IRIDouble:
        """Mount the routes (every ``httpx`` request in the process goes to ``respx`` until
        ``stop``; a request to no route fails)."""
        if self._mock is not None:
            return self
        base = re.escape(self.base_url)
        routes: list[tuple[str, str, Callable[[httpx.Request], httpx.Response]]] = [
            ("GET", base + r"/status/resources", self._resources),
            ("GET", base + r"/status/resources/[^/?]+", self._resource),
            ("GET", base + r"/status/incidents", self._incidents),
            ("POST", base + r"/compute/job/[^/?]+", self._submit),
            ("POST", base + r"/compute/status/[^/?]+", self._status),
            ("DELETE", base + r"/compute/cancel/[^/?]+/[^/?]+", self._cancel),
        ]
        router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
        for method, path, handler in routes:
            pattern = re.compile(path + r"(?:\?.*)?\Z")
            router.route(method=method, url__regex=pattern).mock(side_effect=self._wrap(handler))
        self._mount(router, iri_client, "psij_job_spec")
        return self

    # ------------------------------------------------------------------ plumbing
    def _wrap(
        self, handler: Callable[[httpx.Request], httpx.Response]
    ) -> Callable[[httpx.Request], httpx.Response]:
        route = handler.__name__.lstrip("_")

        def answer(request: httpx.Request) -> httpx.Response:
            with self._lock:
                self.calls[route] += 1
            try:
                self._authenticate(request)
                return handler(request)
            except _Problem as exc:
                return self._problem(request, exc)

        return answer

    def _problem(self, request: httpx.Request, exc: _Problem) -> httpx.Response:
        title = _TITLES.get(exc.status, "Error")
        body = {
            "type": f"{self.base_url}/problems/{title.lower().replace(' ', '-')}",
            "title": title,
            "status": exc.status,
            "detail": exc.detail,
            "instance": str(request.url),
        }
        headers = {"Content-Type": "application/problem+json", **exc.headers}
        return httpx.Response(exc.status, headers=headers, content=json.dumps(body).encode())

    @staticmethod
    def _json(
        body: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    def _authenticate(self, request: httpx.Request) -> None:
        header = request.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not token.strip():
            raise _Problem(401, "Not authenticated", challenge)
        if token.strip() not in self.tokens:
            raise _Problem(401, "Facility Specific authentication failed: invalid token", challenge)
        credential = self.facility.credential_answer
        if credential.problem:
            detail = f"Facility Specific authentication failed: {credential.problem}"
            raise _Problem(401, detail, challenge)
        if credential.expires_at is not None and time.time() >= credential.expires_at:
            raise _Problem(401, "Facility Specific authentication failed: token expired", challenge)

    def _failure(self, exc: EdgeAPIError, request: httpx.Request) -> _Problem:
        """The fake's error as an IRI problem; a network fault is raised as ``httpx`` does."""
        if isinstance(exc, EdgeNetworkError):
            raise _network_error(exc, request)
        status = exc.status or 500
        if isinstance(exc, EdgeAuthError):
            return _Problem(401, f"Facility Specific authentication failed: {_words(exc)}")
        if status == 429:
            return _Problem(429, "Too many requests", {"Retry-After": "0"})
        if status >= 500:
            return _Problem(status, f"upstream answered HTTP {status}")
        return _Problem(status, _words(exc))

    def _compute_resource(self, request: httpx.Request, position: int = -1) -> None:
        rid = request.url.path.rstrip("/").split("/")[position]
        if rid != self.resource_id:
            raise _Problem(404, f"resource not found: {rid[:60]}")

    # ------------------------------------------------------------------ status routes
    def _resource_doc(self, health: Health | None) -> dict[str, Any]:
        status = "up"
        if health is not None and not health.available:
            status = "down"
        elif health is not None and health.state.lower() == "degraded":
            status = "degraded"
        return {
            "id": self.resource_id,
            "name": self.resource,
            "description": f"{self.resource} (IRI double)",
            "group": "compute",
            "current_status": status,
            "resource_type": "compute",
            "supported_endpoints": ["compute"],
            "self_uri": f"{self.base_url}/status/resources/{self.resource_id}",
            "capability_uris": [],
        }

    def _resources(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        offset = int(params.get("offset") or 0)
        docs = [self._resource_doc(None)][offset:]
        return self._json(docs)

    def _resource(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.rstrip("/").rsplit("/", 1)[1] != self.resource_id:
            raise _Problem(404, "Item not found")
        try:
            health = self.facility.health()
        except EdgeAPIError as exc:
            raise self._failure(exc, request) from None
        return self._json(self._resource_doc(health))

    def _incidents(self, request: httpx.Request) -> httpx.Response:
        health = self.facility.health_answer
        now = time.time()
        outages: list[Outage] = [health.planned] if health.planned is not None else []
        outages += [o for o in health.outages if o not in outages]
        docs = [self._incident(o.text, "planned", o.start, o.end) for o in outages]
        if not health.available and not any(o.covers(now) for o in outages):
            words = f"{health.state}: {health.message}" if health.message else health.state
            docs.append(self._incident(words, "unplanned", now - 60, None))
        docs = [d for d in docs if d["end"] is None or d["end"] > _iso(now)]
        if not docs:
            raise _Problem(404, "No incidents found")
        return self._json(docs)

    def _incident(self, text: str, kind: str, start: float, end: float | None) -> dict[str, Any]:
        iid = uuid.uuid5(_NAMESPACE, f"incident:{kind}:{text}:{start}")
        return {
            "id": str(iid),
            "name": text,
            "description": text,
            "status": "down",
            "type": kind,
            "resolution": "unresolved",
            "start": _iso(start),
            "end": _iso(end) if end is not None else None,
            "self_uri": f"{self.base_url}/status/incidents/{iid}",
            "event_uris": [],
            "resource_uris": [f"{self.base_url}/status/resources/{self.resource_id}"],
        }

    # ------------------------------------------------------------------ compute routes
    def _submit(self, request: httpx.Request) -> httpx.Response:
        try:
            body = json.loads(request.content or b"null")
        except ValueError as exc:
            raise _Problem(400, f"JSON decode error: {exc}") from None
        try:
            parse_job_spec(body, self.api_version)
        except SpecInvalid as exc:
            raise _Problem(400, str(exc)) from None
        self._compute_resource(request)
        fake = self.facility
        key = (request.headers.get(iri_client.IDEMPOTENCY_KEY) or "").strip()
        headers: dict[str, str] = {}
        if key and self.api_version == "v2":
            if not fake.capabilities.idempotent_submit:
                raise _Problem(
                    501, "Idempotency-Key provided but no idempotency store is configured."
                )
            canonical = json.dumps(body, sort_keys=True).encode()
            with fake._lock:
                first = self._bodies.setdefault(key, canonical)
                hit = key in fake._keys
            if first != canonical:
                raise _Problem(422, "Idempotency-Key reused with a different request body.")
            headers[iri_client.IDEMPOTENCY_REPLY] = "hit" if hit else "miss"
        try:
            receipt = fake.submit(_spec_of(body))
        except EdgeConfigError as exc:
            raise _Problem(400, _words(exc)) from None
        except EdgeAPIError as exc:
            raise self._failure(exc, request) from None
        job_id = str(receipt.job_id or "")
        with self._lock:
            self._specs.setdefault(job_id, body)
        meta = {
            "name": body.get("name"),
            "resource": self.resource,
            "account": (body.get("attributes") or {}).get("account"),
        }
        status = {
            "state": "new",
            "time": time.time(),
            "message": "job submitted",
            "exit_code": None,
            "meta_data": meta,
        }
        return self._json({"id": job_id, "status": status, "job_spec": body}, headers=headers)

    def _status(self, request: httpx.Request) -> httpx.Response:
        self._compute_resource(request)
        params = request.url.params
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        historical = (params.get("historical") or "false").lower() == "true"
        include_spec = (params.get("include_spec") or "false").lower() == "true"
        try:
            filters = json.loads(request.content or b"{}") or {}
        except ValueError as exc:
            raise _Problem(400, f"JSON decode error: {exc}") from None
        if not isinstance(filters, dict):
            raise _Problem(400, "Input should be a valid dictionary")
        ids = {str(i) for i in filters.get("id") or []} if "id" in filters else None
        names = {str(n) for n in filters.get("name") or []} if "name" in filters else None
        operation = "query" if ids is not None else "find" if names is not None else "live"
        fake = self.facility
        try:
            fault = fake._fault(operation)
            fake._raise_for(operation, fault)
        except EdgeAPIError as exc:
            raise self._failure(exc, request) from None
        now = time.monotonic()
        docs: list[dict[str, Any]] = []
        with fake._lock:
            jobs = sorted(fake.jobs.values(), key=lambda j: int(j.job_id))
            for job in jobs:
                if ids is not None and job.job_id not in ids:
                    continue
                if names is not None and job.name not in names:
                    continue
                shape = _shape(job, fake._in_queue(job, now), fake._in_accounting(job, now))
                if shape is None or (shape == "sacct" and not historical):
                    continue
                doc: dict[str, Any] = {"id": job.job_id, "status": _job_status(job, shape)}
                if include_spec and job.job_id in self._specs:
                    doc["job_spec"] = self._specs[job.job_id]
                docs.append(doc)
        return self._json(docs[offset : offset + limit])

    def _cancel(self, request: httpx.Request) -> httpx.Response:
        self._compute_resource(request, -2)
        job_id = request.url.path.rstrip("/").rsplit("/", 1)[1]
        fake = self.facility
        try:
            answer = fake.cancel([job_id])
            if isinstance(answer, Deferred):  # a task-based fake: IRI cancels at once
                answer = fake.cancel([job_id])
        except EdgeAPIError as exc:
            raise self._failure(exc, request) from None
        outcome = answer.get(job_id) if isinstance(answer, dict) else None
        if outcome is None or outcome.kind in (
            CancelOutcome.ACCEPTED,
            CancelOutcome.ALREADY_FINAL,
        ):
            return httpx.Response(204)
        with fake._lock:
            known = job_id in fake.jobs
        if not known:
            raise _Problem(404, f"job not found: {job_id[:40]}")
        raise _Problem(400, f"scancel: {outcome.text}")
