"""An in-process OLCF S3M service over a ``FakeFacility``: the real S3M client, no network.

Like ``globus_sdk.testing``, this ships with the package so that operators can run the S3M
plugins (``harvester_edge.plugins.s3m``) against a scripted scheduler: ``S3MDouble`` mounts
S3M's routes on ``responses`` (the ``test`` extra), so the S3M client sends its real
requests over ``requests`` and parses real answers, and every answer comes from the
``FakeFacility`` behind it (``harvester_edge.testing``), with the fake's scripted faults::

    fake = FakeFacility(profile="sync")
    with S3MDouble(fake) as s3m:
        conf = {**s3m.options(), "token": f"file:{s3m.write_token(tmp_path / 'tok')}", ...}
        sub, mon = S3MSubmitter(**conf), S3MMonitor(**conf)
        fake.script("submit", "created_then_502")   # the job is made, then S3M answers 502

The answers are the wire shapes of the loopback gateway (``localsite/s3m_gateway.py``,
``localsite/s3m_slurm.py``), for the resource, API version and path prefix given:

- ``POST {prefix}/job/submit``: the body is checked as slurmrestd checks it (a refused body
  answers slurmrestd's error, as the gateway does), then ``fake.submit`` gets a ``JobSpec``
  read back from it (name -> tag, the script, nodes, time limit, account, ...): 200
  ``{"job_id": N, "step_id": "batch", ...}``.
- ``GET {prefix}/jobs``: the slurmctld shape (``job_state: [..]``, ``state_reason``,
  ``exit_code{status, return_code}``) of every job the fake still has in its queue.
- ``GET {prefix}/job/{id}``: the slurmdb shape (``state{current, reason}``, exit code,
  ``kill_request_user`` for "CANCELLED by X") of a job the fake's accounting knows, else
  404 with Slurm error 2017 ("Invalid job id specified").
- ``DELETE {prefix}/job/{id}``: ``fake.cancel`` in slurmrestd's words: accepted -> 200;
  already ended but still queued -> 200 with "Job was already sent signal Killed" (a
  success, as slurmrestd says); unknown or purged -> 404 with error 2017; refused -> 500
  with Slurm's reason.
- ``GET /olcf/v1alpha/status``: ``fake.health()``: ``OPERATIONAL`` when available, else
  ``UNAVAILABLE`` (``DEGRADED``/``UNKNOWN`` when the fake says so), the fake's message as
  the resource's description (S3M's only free text there), the planned outage under way and
  the announced ``outages`` as ``upcomingDowntimes``.
- ``GET /olcf/v1/token/ctls/introspect``: ``fake.credential_answer``: ``plannedExpiration``
  is its ``expires_at`` (past or not), else ``token_lifetime`` from now; a ``problem``
  refuses the token (401), here and on every compute route; past ``expires_at`` a compute
  route answers 403 naming the expiry, as S3M does.

Every authenticated route wants the double's token (``token``, ``write_token``; raw or
``Bearer``), else 401.  Faults scripted on the fake (``FakeFacility.FAULTS``) become what
S3M would answer: a network fault is raised from ``requests`` (``connect`` ->
``ConnectionError`` of a refused connection, not sent; ``timeout``/``hang`` ->
``ReadTimeout``, ``hang`` after ``hang_seconds``; ``created_then_reset`` -> a connection
reset after sending); ``auth`` -> 401; ``busy_429`` -> 429; ``created_then_5xx`` -> that
status after the job exists (an S3M gateway error body); ``limit`` -> slurmrestd's submit
limit error (HTTP 500, Slurm error 2050, the fake's words in the description); ``refuse``
-> HTTP 400 with slurmrestd's parse error (9001) and the fake's words; ``unencodable`` ->
the client's encoder refuses the next spec (its ``#SBATCH`` header cannot be sent as
fields; the double wraps the client's ``slurmrestd_job`` while mounted): nothing is sent.
S3M answers lookups, polls and the allocation count from the one job list, so a fault
scripted for ``find``, ``query`` or ``live`` applies to the next ``GET .../jobs`` (the first
queued of the three, in that order); ``GET .../job/{id}`` takes no faults.  ``calls``
counts the requests per route; the fake's ``requests`` count the operations its faults
apply to, as ever.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import responses

from .edge.spec import JobSpec
from .edge.states import is_submit_limit
from .errors import EdgeAPIError, EdgeAuthError, EdgeConfigError, EdgeNetworkError
from .facilities import s3m as s3m_client
from .facilities.base import CancelOutcome, Deferred, Health, Outage
from .facilities.passthrough import SlurmState
from .localsite.s3m_auth import ProjectTokenAuthority, iso_z, write_token_file
from .localsite.s3m_slurm import (
    ESLURM_INVALID_JOB_ID,
    JobFacts,
    SubmitRefused,
    ctld_job,
    db_job,
    no_val,
    plan_submit,
    slurm_error,
)
from .testing import FakeFacility, FakeJob
from .testing_http import MountedDouble, requests_network_error

__all__ = ["DEFAULT_API_URL", "S3MDouble"]

#: the double's host: never a real one, so nothing leaves the process by mistake
DEFAULT_API_URL = "https://s3m.double.invalid"
#: a project access token lives for weeks
DEFAULT_TOKEN_LIFETIME = 30 * 86400.0
#: gRPC status codes of S3M's own error bodies, per HTTP status
_GRPC = {401: 16, 403: 7, 404: 5, 429: 8, 500: 13, 502: 14, 503: 14, 504: 14}
#: the fake's words for a state that S3M says in other words
_RESOURCE_STATUS = {"degraded": "DEGRADED", "unknown": "UNKNOWN"}
#: operations whose scripted faults a ``GET .../jobs`` takes, first queued first
_LIST_OPERATIONS = ("find", "query", "live")
_SUBMIT_SOURCE = "slurm_submit_batch_job()"
_FAKE_WORDS = re.compile(r"^fake \w+: (?:HTTP \d+: )?(?:sbatch: error: )?")

Answer = tuple[int, dict[str, str], str]


def _words(exc: BaseException) -> str:
    """The fake's error text without its ``fake <operation>: HTTP N:`` head (and sbatch's
    ``sbatch: error:``: slurmrestd gives Slurm's words, not a command's)."""
    return _FAKE_WORDS.sub("", str(exc)).strip() or str(exc)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    return status, dict(headers or {}), json.dumps(body)


def _s3m_error(status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    """S3M's own error (token, gateway, upstream): a gRPC-gateway body."""
    return _json(status, {"code": _GRPC.get(status, 2), "message": message, "details": []}, headers)


def _wait_status(job: FakeJob) -> int | None:
    """The job's exit as a wait status (None before it ended: Slurm has none yet)."""
    if job.exit_code is None and not job.signal:
        return None
    return ((job.exit_code or 0) & 0xFF) << 8 | (job.signal or 0) & 0x7F


def _facts(job: FakeJob) -> JobFacts:
    """The fake's job as both slurmrestd record shapes need it ("CANCELLED by X": the
    state word, and X as the user who asked the kill)."""
    text = job.state_text or job.state.long_name
    word, _, by = text.partition(" by ")
    running = job.state is SlurmState.RUNNING
    number = int(job.job_id) if job.job_id.isdigit() else 0
    return JobFacts(
        job_id=number,
        name=job.name,
        state=word.strip() or "UNKNOWN",
        reason=job.reason or "None",
        exit_raw=_wait_status(job),
        nodes="nid001" if running else "",
        node_count=1,
        kill_request_user=by.strip(),
    )


def _spec_of(body: dict[str, Any], default_cwd: str) -> JobSpec:
    """The job spec as the wire carried it (what the fake records as the job)."""
    job = body.get("job")
    if not isinstance(job, dict):
        jobs = body.get("jobs")
        job = jobs[0] if isinstance(jobs, list) and jobs and isinstance(jobs[0], dict) else {}
    script = body.get("script") or job.get("script") or ""
    limit = job.get("time_limit")
    minutes = limit.get("number", 0) if isinstance(limit, dict) else limit
    nodes = job.get("minimum_nodes")
    environment = [str(e).partition("=") for e in job.get("environment") or []]
    return JobSpec(
        tag=str(job.get("name") or ""),
        script=str(script),
        work_dir=str(job.get("current_working_directory") or default_cwd),
        nodes=nodes if isinstance(nodes, int) else 1,
        walltime_s=minutes * 60 if isinstance(minutes, int) else 0,
        account=job.get("account"),
        partition=job.get("partition"),
        qos=job.get("qos"),
        constraint=job.get("constraints"),
        environment=tuple((name, value) for name, _, value in environment),
        stdout_path=str(job.get("standard_output") or ""),
        stderr_path=str(job.get("standard_error") or ""),
    )


class S3MDouble(MountedDouble):
    """S3M's status, token and "Slurm indirect" routes for one resource, over ``facility``.

    :param facility: the scripted scheduler behind the routes (its faults apply).
    :param api_url: the mocked host (the client's ``apiUrl``).
    :param resource: the S3M resource (the client's ``resource``).
    :param api_version: the slurmrestd data parser version served (``apiVersion``).
    :param path_prefix: the compute path prefix (``pathPrefix``), with ``{version}`` and
        ``{resource}`` filled in.
    :param project: the project of the token (introspection's ``project``).
    :param token_lifetime: seconds to the token's ``plannedExpiration`` when the fake's
        credential names no expiry.
    """

    def __init__(
        self,
        facility: FakeFacility,
        *,
        api_url: str = DEFAULT_API_URL,
        resource: str = "defiant",
        api_version: str = "v0.0.43",
        path_prefix: str = s3m_client.DEFAULT_PATH_PREFIX,
        project: str = "proj001",
        token_lifetime: float = DEFAULT_TOKEN_LIFETIME,
    ) -> None:
        self.facility = facility
        self.api_url = api_url.rstrip("/")
        self.resource = resource
        self.api_version = api_version
        self.path_prefix = path_prefix
        self.project = project
        self.token_lifetime = token_lifetime
        self.token = ProjectTokenAuthority().issue(
            project=project,
            username=f"{project}_auser",
            expires_in=token_lifetime,
            description="harvester-edge S3M double",
            permissions=("compute-ace",),
        )
        #: the working directory of a job that names none
        self.workdir = "/"
        #: requests per route (``submit``, ``jobs``, ``job``, ``cancel``, ``status``,
        #: ``introspect``), counted on arrival
        self.calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        self._mock: responses.RequestsMock | None = None
        self._encoder: Any = None

    def __repr__(self) -> str:
        return f"S3MDouble({self.compute_url!r})"

    # ------------------------------------------------------------------ set-up
    @property
    def compute_url(self) -> str:
        """The resource's compute routes, e.g. ``https://.../slurm/open/v0.0.43/defiant``."""
        prefix = self.path_prefix.format(version=self.api_version, resource=self.resource)
        return f"{self.api_url}/{prefix.strip('/')}"

    def options(self) -> dict[str, Any]:
        """The S3M queue-config keys that point a client here (the token is the caller's:
        ``"token": f"file:{double.write_token(path)}"``)."""
        return {
            "apiUrl": self.api_url,
            "resource": self.resource,
            "apiVersion": self.api_version,
            "pathPrefix": self.path_prefix,
        }

    def write_token(self, path: str | Path) -> Path:
        """Write the double's token to ``path`` (mode 0600), as the client wants it."""
        return write_token_file(path, self.token)

    def start(self) -> S3MDouble:
        """Mount the routes (every ``requests`` call in the process goes to ``responses``
        until ``stop``; a request to no route fails with ``requests``' ``ConnectionError``)."""
        if self._mock is not None:
            return self
        compute = re.escape(self.compute_url)
        routes: list[tuple[str, str, Callable[[Any], Answer]]] = [
            ("POST", compute + "/job/submit", self._submit),
            ("GET", compute + "/jobs", self._jobs),
            ("GET", compute + "/job/[^/?]+", self._job),
            ("DELETE", compute + "/job/[^/?]+", self._cancel),
            ("GET", re.escape(self.api_url + s3m_client.STATUS_PATH), self._status),
            ("GET", re.escape(f"{self.api_url}/{s3m_client.INTROSPECT_PATH}"), self._introspect),
        ]
        rsps = responses.RequestsMock(assert_all_requests_are_fired=False)
        for method, path, callback in routes:
            url = re.compile(path + r"(?:\?.*)?\Z")
            rsps.add_callback(method, url, callback=callback, content_type="application/json")
        self._mount(rsps, s3m_client, "slurmrestd_job")
        return self

    # ------------------------------------------------------------------ plumbing
    def _count(self, route: str) -> None:
        with self._calls_lock:
            self.calls[route] += 1

    def _operation(self, operations: tuple[str, ...]) -> None:
        """Take the next fault of the first of ``operations`` that has one queued (else of
        the first) and raise what it stands for (``hang`` sleeps first)."""
        fake = self.facility
        with fake._lock:
            chosen = next((op for op in operations if fake._faults.get(op)), operations[0])
            fault = fake._fault(chosen)
        fake._raise_for(chosen, fault)

    def _refused(self, request: Any) -> Answer | None:
        """S3M's token check of an authenticated route (None: the token is good)."""
        sent = str(request.headers.get("Authorization") or "")
        if sent.removeprefix("Bearer ").strip() != self.token:
            return _s3m_error(401, "missing or invalid access token")
        credential = self.facility.credential_answer
        if credential.problem:
            return _s3m_error(401, f"access token refused: {credential.problem}")
        if credential.expires_at is not None and time.time() >= credential.expires_at:
            return _s3m_error(403, f"access token expired at {iso_z(credential.expires_at)}")
        return None

    def _failure(self, exc: EdgeAPIError, source: str, *, submit: bool = False) -> Answer:
        """The fake's error as S3M's answer; a network fault is raised as ``requests`` does."""
        if isinstance(exc, EdgeNetworkError):
            raise requests_network_error(exc)
        status = exc.status or 500
        if isinstance(exc, EdgeAuthError):
            return _s3m_error(401 if status not in (401, 403) else status, _words(exc))
        if status == 429:
            return _s3m_error(429, "too many requests", {"Retry-After": "0"})
        if status >= 500:
            return _s3m_error(status, f"upstream answered HTTP {status}")
        words = _words(exc)
        if submit and is_submit_limit(words):
            error = slurm_error(2050, f"Batch job submission failed: {words}", _SUBMIT_SOURCE)
            return self._slurm(500, errors=[error])
        number = {400: 9001, 404: ESLURM_INVALID_JOB_ID, 422: 9000}.get(status, -1)
        return self._slurm(status, errors=[slurm_error(number, words, source)])

    def _slurm(
        self,
        status: int = 200,
        *,
        errors: list[dict[str, Any]] | None = None,
        warnings: list[dict[str, Any]] | None = None,
        plugin: str = "slurmctld",
        **payload: Any,
    ) -> Answer:
        """A slurmrestd answer: the payload with ``meta``, ``errors`` and ``warnings``."""
        meta = {
            "plugin": {
                "type": f"openapi/{plugin}",
                "name": f"Slurm OpenAPI {plugin}",
                "data_parser": f"data_parser/{self.api_version}",
                "accounting_storage": "accounting_storage/slurmdbd",
            },
            "client": {"source": "[s3m]", "user": f"{self.project}_auser", "group": self.project},
            "command": [],
            "slurm": {
                "version": {"major": "25", "minor": "05", "micro": "3"},
                "release": "25.05.3",
                "cluster": self.resource,
            },
        }
        body = {**payload, "meta": meta, "errors": errors or [], "warnings": warnings or []}
        return _json(status, body)

    # ------------------------------------------------------------------ compute routes
    def _submit(self, request: Any) -> Answer:
        self._count("submit")
        refused = self._refused(request)
        if refused:
            return refused
        try:
            body = json.loads(request.body or b"null")
            plan_submit(body, self.api_version, self.workdir)
        except ValueError as exc:  # not JSON
            error = slurm_error(
                9001, f"Unable to parse the request body as JSON: {exc}", "_job_post"
            )
            return self._slurm(400, errors=[error])
        except SubmitRefused as exc:
            return self._slurm(exc.status, errors=[exc.error()])
        try:
            receipt = self.facility.submit(_spec_of(body, self.workdir))
        except EdgeConfigError as exc:
            return self._slurm(400, errors=[slurm_error(9001, _words(exc), "_job_post")])
        except EdgeAPIError as exc:
            return self._failure(exc, "_job_post", submit=True)
        return self._slurm(job_id=int(receipt.job_id or 0), step_id="batch", job_submit_user_msg="")

    def _jobs(self, request: Any) -> Answer:
        self._count("jobs")
        refused = self._refused(request)
        if refused:
            return refused
        try:
            self._operation(_LIST_OPERATIONS)
        except EdgeAPIError as exc:
            return self._failure(exc, "slurm_load_jobs()")
        fake = self.facility
        now = time.monotonic()
        with fake._lock:
            queued = [j for j in fake.jobs.values() if fake._in_queue(j, now)]
            jobs = [ctld_job(_facts(j)) for j in queued]
        stamp = no_val(int(time.time()))
        return self._slurm(jobs=jobs, last_backfill=stamp, last_update=stamp)

    def _job(self, request: Any) -> Answer:
        self._count("job")
        refused = self._refused(request)
        if refused:
            return refused
        job_id = request.path_url.split("?", 1)[0].rsplit("/", 1)[1]
        fake = self.facility
        now = time.monotonic()
        with fake._lock:
            job = fake.jobs.get(job_id)
            known = job is not None and fake._in_accounting(job, now)
            record = db_job(_facts(job)) if job is not None and known else None
        if record is None:
            error = slurm_error(
                ESLURM_INVALID_JOB_ID, f"Unable to query JobId={job_id}", "_handle_job_get"
            )
            return self._slurm(404, errors=[error], plugin="slurmdbd", jobs=[])
        return self._slurm(plugin="slurmdbd", jobs=[record])

    def _cancel(self, request: Any) -> Answer:
        self._count("cancel")
        refused = self._refused(request)
        if refused:
            return refused
        job_id = request.path_url.split("?", 1)[0].rsplit("/", 1)[1]
        fake = self.facility
        try:
            answer = fake.cancel([job_id])
        except EdgeAPIError as exc:
            return self._failure(exc, "_handle_job_delete")
        if isinstance(answer, Deferred):  # a task-based fake: S3M cancels at once
            answer = fake.cancel([job_id])
        outcome = answer.get(job_id) if isinstance(answer, dict) else None
        if outcome is None or outcome.kind == CancelOutcome.ACCEPTED:
            return self._slurm()
        now = time.monotonic()
        with fake._lock:
            job = fake.jobs.get(job_id)
            queued = job is not None and fake._in_queue(job, now)
        final = outcome.kind == CancelOutcome.ALREADY_FINAL
        if final and queued:  # slurmrestd: a job already signalled is a success
            said = {
                "description": "Job was already sent signal Killed",
                "source": "_handle_job_delete",
            }
            return self._slurm(warnings=[said])
        what = f"unable to send signal Killed to JobId={job_id}"
        if final or job is None:  # slurmctld no longer (or never) knew the job
            return self._slurm(
                404, errors=[slurm_error(ESLURM_INVALID_JOB_ID, what, "slurm_kill_job2()")]
            )
        error = slurm_error(-1, what, "slurm_kill_job2()")
        error["error"] = outcome.text[:500]
        return self._slurm(500, errors=[error])

    # ------------------------------------------------------------------ status and token
    def _status(self, request: Any) -> Answer:
        self._count("status")
        try:
            health = self.facility.health()
        except EdgeAPIError as exc:
            return self._failure(exc, "status")
        return _json(200, {"resources": [self._resource_doc(health)]})

    def _resource_doc(self, health: Health) -> dict[str, Any]:
        now = time.time()
        if health.available:
            status = "OPERATIONAL"
        else:
            status = _RESOURCE_STATUS.get(health.state.lower(), "UNAVAILABLE")
        outages: list[Outage] = [health.planned] if health.planned is not None else []
        outages += [o for o in health.outages if o not in outages]
        downtimes = [
            {
                "resourceName": self.resource,
                "status": "UNAVAILABLE",
                "start": iso_z(o.start),
                "end": iso_z(o.end) if o.end is not None else None,
                "description": o.text,
            }
            for o in sorted(outages, key=lambda o: o.start)
            if o.end is None or o.end > now
        ]
        return {
            "name": self.resource,
            "description": health.message or self.resource.capitalize(),
            "systemType": "resource",
            "securityEnclave": "open",
            "organization": "olcf",
            "status": status,
            "downtimeScheduleAvailable": True,
            "upcomingDowntimes": downtimes,
            "retrievedAt": iso_z(now),
        }

    def _introspect(self, request: Any) -> Answer:
        self._count("introspect")
        sent = str(request.headers.get("Authorization") or "")
        if sent.removeprefix("Bearer ").strip() != self.token:
            return _s3m_error(401, "missing or invalid access token")
        credential = self.facility.credential_answer
        if credential.problem:
            return _s3m_error(401, f"access token refused: {credential.problem}")
        expires = credential.expires_at
        if expires is None:
            expires = time.time() + self.token_lifetime
        token = {
            "username": f"{self.project}_auser",
            "project": self.project,
            "plannedExpiration": iso_z(expires),
            "securityEnclave": "open",
            "description": "harvester-edge S3M double",
            "oneTimeToken": False,
            "delayedStart": False,
            "delayDate": None,
        }
        return _json(200, {"token": token})
