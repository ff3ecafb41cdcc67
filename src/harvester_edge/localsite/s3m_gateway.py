"""A loopback OLCF S3M gateway (status, tokens, "Slurm indirect" compute) over a real Slurm.

Tests and demos need the S3M client to talk to something that behaves like
s3m.olcf.ornl.gov: project access tokens (JWTs with no ``exp``; the expiry known only from
introspection), the public status API with downtimes, and slurmrestd's JSON per resource and
API version, with the faults seen in production (see ``faults.Knobs``).  Jobs really run on
the cluster named by ``SLURM_CONF``, under the gateway's own user (S3M runs them as the
project's ``<proj>_auser``), so scheduler semantics are real, not mocked.

Routes (``{p}`` is a compute prefix, default ``/slurm/open``, ``/slurm`` (hosts before March
2026) and ``/olcf/v1/slurm/open``; ``{v}`` an API version the resource serves)::

    GET    /olcf/v1alpha/status[/{name}]             no auth
    GET    /olcf/v1alpha/status/downtimes[/upcoming] no auth
    GET    /olcf/v1/token/ctls/introspect            any valid token
    DELETE /olcf/v1/token/ctls/revoke                any valid token
    GET    {p}/{v}/{resource}/ping | partitions | jobs | job/{id}     compute-ace[-readonly]
    POST   {p}/{v}/{resource}/job/submit                              compute-ace
    DELETE {p}/{v}/{resource}/job/{id}[?signal=SIG&flags=F,...]       compute-ace

Answers (the shapes are pinned by tests/localsite/test_s3m_gateway.py):

- S3M's own errors (token, unknown route/resource/version, resource UNAVAILABLE, injected
  faults) are gRPC-gateway bodies ``{"code", "message", "details": []}`` (``code`` a gRPC
  status: 16 UNAUTHENTICATED with 401, 7 PERMISSION_DENIED with 403, 5 NOT_FOUND with 404,
  14 UNAVAILABLE with 502/503/504, 13 INTERNAL with 500); with the ``error_in_detail`` knob
  the same JSON comes as text in ``{"detail": "..."}``.  Missing, unknown, badly signed and
  revoked tokens answer 401; an expired one (past ``plannedExpiration``) 403 whose message
  names the expiry; a read-only token 403 on submit and cancel.
- Compute answers are slurmrestd's: every body has ``meta``, ``errors`` and ``warnings``;
  an error item is ``{"description", "error_number", "error", "source"}`` and its HTTP
  status is slurmrestd's (9000 -> 422, 9001/9002 -> 400, 2017 -> 404, controller
  unreachable -> 502, else 500).
- ``POST job/submit`` -> 200 ``{"job_id": N, "step_id": "batch", "job_submit_user_msg":
  "", ...}``; refused by Slurm -> 500 with ``errors[0]`` ``{"description": "Batch job
  submission failed", "error_number": N, "error": "<Slurm's reason>", "source":
  "slurm_submit_batch_job()"}`` (sbatch's other error lines go to ``warnings``).
- ``GET jobs`` -> ``{"jobs": [slurmctld records], "last_backfill", "last_update", ...}``:
  every job of the gateway's user squeue still knows (finished ones for ``MinJobAge``).
- ``GET job/{id}`` -> ``{"jobs": [one slurmdb record]}`` from accounting (``sacct -P``, exit
  codes kept), or built from squeue while accounting does not know the job yet; unknown
  everywhere -> 404 ``{"jobs": [], "errors": [{"error_number": 2017, "error": "Invalid job
  id specified", "description": "Unable to query JobId=N", "source": "_handle_job_get"}]}``.
- ``DELETE job/{id}`` -> 200 with ``errors: []``; a job that already ended but is still
  known to slurmctld -> 200 with ``warnings: [{"description": "Job was already sent signal
  Killed", ...}]`` (slurmrestd treats it as success); a job slurmctld no longer knows
  (purged after ``MinJobAge``, or never existed) -> 404 with error 2017, as slurmrestd does.

Run standalone (the token goes to the file, mode 0600; never to stdout)::

    python -m harvester_edge.localsite.s3m_gateway --port 8766 --token-file ~/.s3m-token
"""

from __future__ import annotations

import argparse
import grp
import json
import logging
import os
import pwd
import re
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from .faults import Knobs
from .loopback import GatewayBook, HttpRequest, LoopbackServer, Response
from .s3m_auth import ProjectToken, ProjectTokenAuthority, TokenRefused, iso_z, write_token_file
from .s3m_slurm import (
    ESLURM_ALREADY_DONE,
    ESLURM_INVALID_JOB_ID,
    SACCT_FIELDS,
    SubmitRefused,
    api_minor,
    ctld_job,
    db_job,
    errno_of_message,
    facts_from_sacct,
    facts_from_squeue,
    http_status_of,
    no_val,
    plan_submit,
    slurm_error,
)
from .slurm import LocalSlurm, SlurmError, validate_jobids

__all__ = ["S3MGateway", "DEFAULT_RESOURCES", "DEFAULT_PREFIXES", "main"]

log = logging.getLogger(__name__)

#: Resources and the slurmrestd API versions each serves (OLCF's public table, 2026).
DEFAULT_RESOURCES: dict[str, tuple[str, ...]] = {
    "defiant": ("v0.0.42", "v0.0.43"),
    "odo": ("v0.0.43", "v0.0.44"),
}
#: Compute path prefixes: the current one, the one before March 2026, the API index's one.
DEFAULT_PREFIXES: tuple[str, ...] = ("/slurm/open", "/slurm", "/olcf/v1/slurm/open")
STATUS_PREFIX = "/olcf/v1alpha/status"
TOKEN_PREFIX = "/olcf/v1/token/ctls"
#: A project access token lives for weeks; the SFAPI-oriented Knobs default is 10 minutes.
DEFAULT_TOKEN_LIFETIME = 30 * 86400.0
_S3M_STATES = {"active": "OPERATIONAL", "degraded": "DEGRADED", "unavailable": "UNAVAILABLE"}
_GRPC = {401: 16, 403: 7, 404: 5, 500: 13, 502: 14, 503: 14, 504: 14}
_KILL_FLAGS = {"BATCH_JOB": "--batch", "FULL_JOB": "--full", "FULL_STEPS_ONLY": "--full"}
_KILL_FLAGS_IGNORED = {"ARRAY_TASK", "HURRY", "NO_SIBLING_JOBS", "FEDERATION_REQUEUE", "CRON"}


class _Fail(Exception):
    """Answer now with this response (raised from deep inside a handler)."""

    def __init__(self, response: Response) -> None:
        super().__init__("")
        self.response = response


@dataclass
class _Call:
    """One routed request as the handlers see it."""

    request: HttpRequest
    query: dict[str, list[str]]
    params: dict[str, str] = field(default_factory=dict)
    token: ProjectToken | None = None


def _first(values: Mapping[str, list[str]], key: str, default: str = "") -> str:
    got = values.get(key)
    return got[0] if got else default


class S3MGateway(GatewayBook):
    """Serve OLCF S3M's status, token and "Slurm indirect" routes on loopback, from real Slurm.

    :param resources: served compute resources and their API versions
        (default :data:`DEFAULT_RESOURCES`).  Every resource is the same local cluster.
    :param prefixes: compute path prefixes (default :data:`DEFAULT_PREFIXES`).
    :param slurm: Slurm CLI wrapper; default uses ``$SLURM_CONF``.
    :param knobs: fault/state knobs, shared so tests can change them at runtime (default: a
        fresh ``Knobs`` with a 30-day ``token_lifetime``).
    :param workdir: working directory of jobs that name none (default: a new temporary
        directory, so job output never lands in the caller's cwd).
    :param project: the project of tokens issued without one.
    :param enforce_account: refuse (Slurm error 2045, HTTP 500) a job whose ``account`` is
        not the token's project, as Slurm refuses an account the project's ``_auser`` has
        no association with.  The local cluster itself accepts any account name.
    :param slurm_release: the Slurm release ``meta`` reports (S3M runs 25.x; the local
        cluster's real release does not matter to clients).
    :param submit_workers: sbatch calls running at once; further submits wait their turn
        (a burst of parallel submits must not fork hundreds of sbatch at the controller).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        resources: Mapping[str, Sequence[str]] | None = None,
        prefixes: Sequence[str] | None = None,
        slurm: LocalSlurm | None = None,
        knobs: Knobs | None = None,
        workdir: str | os.PathLike[str] | None = None,
        project: str = "proj001",
        enforce_account: bool = True,
        slurm_release: str = "25.05.3",
        submit_workers: int = 8,
    ) -> None:
        served = resources if resources is not None else DEFAULT_RESOURCES
        self.resources: dict[str, tuple[str, ...]] = {}
        for name, versions in served.items():
            for version in versions:
                api_minor(version)  # ValueError for a malformed version
            self.resources[name] = tuple(versions)
        chosen = prefixes if prefixes is not None else DEFAULT_PREFIXES
        self.prefixes = tuple(sorted({"/" + p.strip("/") for p in chosen}, key=len, reverse=True))
        self.slurm = slurm if slurm is not None else LocalSlurm()
        self.knobs = knobs if knobs is not None else Knobs(token_lifetime=DEFAULT_TOKEN_LIFETIME)
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="s3m-gw-"))
        self.project = project
        self.enforce_account = enforce_account
        self.slurm_release = slurm_release
        self.auth = ProjectTokenAuthority()
        self.uid = os.getuid()
        self.username = _user_name(self.uid)
        self._group = _group_name(os.getgid())
        self._cluster: str | None = None
        self._server = LoopbackServer(self, host, port)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._jobs_created: list[str] = []
        self._sbatch_slots = threading.BoundedSemaphore(max(1, submit_workers))

    # ------------------------------------------------------------------ public state
    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the S3M host (status and token routes hang off it)."""
        return self._server.base_url

    def compute_url(self, resource: str, version: str, prefix: str | None = None) -> str:
        """Base URL of one resource's compute routes, e.g. ``.../slurm/open/v0.0.43/defiant``."""
        return f"{self.base_url}{prefix or DEFAULT_PREFIXES[0]}/{version}/{resource}"

    def issue_token(
        self,
        expires_in: float | None = None,
        description: str = "harvester-edge loopback token",
        project: str | None = None,
        permissions: Sequence[str] = ("compute-ace",),
        username: str | None = None,
    ) -> str:
        """A project access token (JWT without ``exp``) valid for ``expires_in`` seconds
        (default: the ``token_lifetime`` knob); the expiry is kept here, as S3M keeps it."""
        return self.auth.issue(
            project=project or self.project,
            username=username or self.username,
            expires_in=self.knobs.token_lifetime if expires_in is None else expires_in,
            description=description,
            permissions=tuple(permissions),
        )

    def schedule_downtime(
        self,
        start_in: float,
        duration: float,
        resource: str | None = None,
        description: str = "scheduled maintenance",
    ) -> None:
        """Add a downtime starting ``start_in`` seconds from now (negative: under way)."""
        start = time.time() + start_in
        entry: dict[str, Any] = {
            "start": start,
            "end": start + duration,
            "resource": resource,
            "description": description,
        }
        self.knobs.downtimes = [*self.knobs.downtimes, entry]

    def state(self) -> dict[str, Any]:
        """Knobs, counters and created jobs, and the served resources (``GET /_admin/state``)."""
        return {
            **super().state(),
            "resources": {k: list(v) for k, v in self.resources.items()},
            "prefixes": list(self.prefixes),
        }

    def resource_status(self, name: str) -> str:
        """OPERATIONAL | DEGRADED | UNAVAILABLE | UNKNOWN, from the knobs."""
        override = self.knobs.s3m_status(name)
        if override:
            return override
        now = time.time()
        if self.knobs.maintenance or any(
            d["start"] <= now < d["end"] for d in self.knobs.downtimes_of(name)
        ):
            return "UNAVAILABLE"
        return _S3M_STATES.get(self.knobs.machine_status, "UNKNOWN")

    # ------------------------------------------------------------------ dispatch
    def handle(self, request: HttpRequest) -> Response | None:
        """Route one request through the knobs to its handler (the loopback.App protocol)."""
        if request.path.startswith("/_admin/"):
            return self._admin(request)
        key, handler, params = self._route(request.method, request.path)
        with self._lock:
            self._counters[key] += 1

        if not self.knobs.wait_while_hung(self._stop):
            return None
        latency = self.knobs.latency
        if latency > 0 and self._stop.wait(latency):
            return None
        if self.knobs.draw_drop():
            return None  # the connection closes with no answer at all
        injected = self.knobs.draw_error(request.path, request.path, False)
        if injected is not None:
            return self._s3m_error(injected, f"injected fault (HTTP {injected})")
        if handler is None:
            return self._s3m_error(404, f"no route for {request.method} {request.path[:80]}")
        call = _Call(request, parse_qs(request.query, keep_blank_values=True), params)
        try:
            return handler(call)
        except _Fail as exc:
            return exc.response

    def _route(
        self, method: str, path: str
    ) -> tuple[str, Callable[[_Call], Response | None] | None, dict[str, str]]:
        """(counter key, handler, path parameters); handler None = no such route."""
        if (path == STATUS_PREFIX or path.startswith(STATUS_PREFIX + "/")) and method == "GET":
            rest = path[len(STATUS_PREFIX) :].strip("/")
            if rest == "":
                return "status", self._status_all, {}
            if rest in ("downtimes", "downtimes/upcoming"):
                return "downtimes", self._downtimes, {"upcoming": str(rest.endswith("upcoming"))}
            if "/" not in rest:
                return "status", self._status_one, {"name": rest}
            return "unknown", None, {}
        if path.rstrip("/") == TOKEN_PREFIX + "/introspect" and method == "GET":
            return "introspect", self._introspect, {}
        if path.rstrip("/") == TOKEN_PREFIX + "/revoke" and method == "DELETE":
            return "revoke", self._revoke, {}
        for prefix in self.prefixes:
            if not path.startswith(prefix + "/"):
                continue
            m = re.match(r"(v\d+\.\d+\.\d+)/([^/]+)/(.+?)/?$", path[len(prefix) + 1 :])
            if not m:
                continue
            params = {"version": m.group(1), "resource": m.group(2)}
            tail = m.group(3)
            if tail == "ping" and method == "GET":
                return "ping", self._ping, params
            if tail == "partitions" and method == "GET":
                return "partitions", self._partitions, params
            if tail == "jobs" and method == "GET":
                return "jobs", self._jobs, params
            if tail == "job/submit" and method == "POST":
                return "submit", self._submit, params
            job = re.fullmatch(r"job/([^/]+)", tail)
            if job and method in ("GET", "DELETE"):
                params["job_id"] = job.group(1)
                if method == "GET":
                    return "job", self._job, params
                return "cancel", self._cancel, params
            return "unknown", None, {}
        return "unknown", None, {}

    # ------------------------------------------------------------------ answers
    def _s3m_error(self, status: int, message: str) -> Response:
        """S3M's own error: a gRPC-gateway body, or that JSON as text in ``detail``."""
        body = {"code": _GRPC.get(status, 2), "message": message, "details": []}
        if self.knobs.error_in_detail:
            return status, {"detail": json.dumps(body)}
        return status, body

    def _meta(self, call: _Call, plugin: str = "slurmctld") -> dict[str, Any]:
        version = call.params.get("version", "v0.0.43")
        major, minor, micro = (self.slurm_release.split(".") + ["0", "0"])[:3]
        numbers: dict[str, Any] = {"major": major, "minor": minor, "micro": micro}
        if api_minor(version) < 43:  # v0.0.42 wrote them as integers, v0.0.43 as strings
            numbers = {k: int(v) if v.isdigit() else v for k, v in numbers.items()}
        if self._cluster is None:
            self._cluster = self.slurm.cluster_name()
        return {
            "plugin": {
                "type": f"openapi/{plugin}",
                "name": f"Slurm OpenAPI {plugin}",
                "data_parser": f"data_parser/{version}",
                "accounting_storage": "accounting_storage/slurmdbd",
            },
            "client": {
                "source": f"[{call.request.client_ip}]",
                "user": self.username,
                "group": self._group,
            },
            "command": [],
            "slurm": {"version": numbers, "release": self.slurm_release, "cluster": self._cluster},
        }

    def _slurm_answer(
        self,
        call: _Call,
        status: int = 200,
        errors: Sequence[dict[str, Any]] = (),
        warnings: Sequence[dict[str, Any]] = (),
        plugin: str = "slurmctld",
        **payload: Any,
    ) -> Response:
        body = {**payload, "meta": self._meta(call, plugin)}
        body["errors"] = list(errors)
        body["warnings"] = list(warnings)
        return status, body

    def _slurm_failure(
        self, call: _Call, errno: int, description: str, source: str, **payload: Any
    ) -> _Fail:
        error = slurm_error(errno, description, source)
        return _Fail(self._slurm_answer(call, http_status_of(errno), errors=[error], **payload))

    # ------------------------------------------------------------------ auth and admin
    def _token(self, call: _Call, permission: str | None) -> ProjectToken:
        try:
            return self.auth.check(call.request.headers.get("Authorization"), permission)
        except TokenRefused as exc:
            status = self.knobs.expired_token_status if exc.expired else exc.status
            raise _Fail(self._s3m_error(status, exc.message)) from None

    def _introspect(self, call: _Call) -> Response:
        token = self._token(call, None)
        return 200, {"token": token.introspection()}

    def _revoke(self, call: _Call) -> Response:
        token = self._token(call, None)
        self.auth.revoke(token.jti)
        return 200, {}

    def _admin(self, request: HttpRequest) -> Response:
        """Knob control and tokens for tests and the demo CLI; loopback peers only."""
        if not (request.client_ip.startswith("127.") or request.client_ip == "::1"):
            return 403, {"detail": "admin endpoints are loopback-only"}
        if request.method == "GET" and request.path == "/_admin/state":
            return 200, self.state()
        try:
            values = json.loads(request.body or b"{}")
            if not isinstance(values, dict):
                raise ValueError("expected a JSON object")
            if request.method == "POST" and request.path == "/_admin/knobs":
                self.knobs.update(**values)
                return 200, self.state()
            if request.method == "POST" and request.path == "/_admin/token":
                allowed = {"expires_in", "description", "project", "permissions"}
                if set(values) - allowed:
                    raise ValueError(f"token fields: {', '.join(sorted(allowed))}")
                return 200, {"token": self.issue_token(**values)}, {"Cache-Control": "no-store"}
        except (ValueError, TypeError) as exc:
            return 400, {"detail": str(exc)}
        if request.method == "POST" and request.path == "/_admin/reset_counters":
            self.reset_counters()
            return 200, self.state()
        return 404, {"detail": "Not Found"}

    # ------------------------------------------------------------------ status
    def _resource_doc(self, name: str, now: float) -> dict[str, Any]:
        return {
            "name": name,
            "description": name.capitalize(),
            "systemType": "resource",
            "securityEnclave": "open",
            "organization": "olcf",
            "status": self.resource_status(name),
            "downtimeScheduleAvailable": True,
            "upcomingDowntimes": [d for d in self._downtime_docs(name, now) if d["_end"] > now],
            "retrievedAt": iso_z(now),
        }

    def _downtime_docs(self, name: str, now: float) -> list[dict[str, Any]]:
        items = self.knobs.downtimes_of(name)
        if self.knobs.maintenance:
            items.append(
                {"start": now - 60, "end": now + 3600, "description": "scheduled maintenance"}
            )
        return [
            {
                "resourceName": name,
                "status": "UNAVAILABLE",
                "start": iso_z(d["start"]),
                "end": iso_z(d["end"]),
                "description": d["description"],
                "_end": d["end"],
            }
            for d in sorted(items, key=lambda d: d["start"])
        ]

    @staticmethod
    def _public(doc: dict[str, Any]) -> dict[str, Any]:
        """Drop the private sort keys of downtime documents."""
        out = dict(doc)
        if "upcomingDowntimes" in out:
            out["upcomingDowntimes"] = [_strip(d) for d in out["upcomingDowntimes"]]
        return _strip(out)

    def _status_all(self, call: _Call) -> Response:
        now = time.time()
        return 200, {
            "resources": [self._public(self._resource_doc(n, now)) for n in self.resources]
        }

    def _status_one(self, call: _Call) -> Response:
        name = call.params["name"]
        if name not in self.resources:
            return self._s3m_error(404, f"resource not found: {name[:40]}")
        return 200, self._public(self._resource_doc(name, time.time()))

    def _downtimes(self, call: _Call) -> Response:
        now = time.time()
        upcoming = call.params["upcoming"] == "True"
        docs = [d for n in self.resources for d in self._downtime_docs(n, now)]
        if upcoming:
            docs = [d for d in docs if d["_end"] > now]
        docs.sort(key=lambda d: (d["start"], d["resourceName"]))
        return 200, {"downtimes": [_strip(d) for d in docs]}

    # ------------------------------------------------------------------ compute plumbing
    def _compute(self, call: _Call, permission: str) -> None:
        """Token, resource and version checks of a compute route, then the resource's state."""
        call.token = self._token(call, permission)
        resource, version = call.params["resource"], call.params["version"]
        if resource not in self.resources:
            raise _Fail(self._s3m_error(404, f"unknown compute resource: {resource[:40]}"))
        if version not in self.resources[resource]:
            served = ", ".join(self.resources[resource])
            raise _Fail(
                self._s3m_error(404, f"{resource} does not serve API {version[:20]} ({served})")
            )
        if self.resource_status(resource) == "UNAVAILABLE":
            raise _Fail(self._s3m_error(503, f"resource {resource} is UNAVAILABLE"))

    def _job_id(self, call: _Call) -> str:
        raw = call.params["job_id"]
        try:
            [job_id] = validate_jobids([raw])
        except ValueError:
            raise self._slurm_failure(
                call, ESLURM_INVALID_JOB_ID, f'Failure parsing "{raw[:40]}"', "_op_handler_job"
            ) from None
        return job_id

    # ------------------------------------------------------------------ compute routes
    def _ping(self, call: _Call) -> Response:
        self._compute(call, "compute-ace-readonly")
        start = time.monotonic()
        up = self.slurm.available()
        latency = int((time.monotonic() - start) * 1e6)
        ping = {
            "hostname": self._cluster or "slurmctld",
            "pinged": "UP" if up else "DOWN",
            "latency": latency,
            "mode": "primary",
            "primary": True,
            "responding": up,
        }
        return self._slurm_answer(call, pings=[ping])

    def _partitions(self, call: _Call) -> Response:
        self._compute(call, "compute-ace-readonly")
        try:
            rows = self.slurm.partitions()
        except SlurmError as exc:
            raise self._slurm_failure(
                call, 1800, f"Unable to query partitions: {exc}", "slurm_load_partitions()"
            ) from None
        parts = []
        for row in rows:
            limit = row["timelimit"]
            parts.append(
                {
                    "name": row["name"],
                    "nodes": {
                        "configured": row["nodelist"],
                        "total": int(row["nodes"] or 0),
                        "allowed_allocation": "",
                    },
                    "cpus": {"total": int(row["cpus"] or 0)},
                    "partition": {"state": ["UP" if row["avail"] == "up" else "DOWN"]},
                    "maximums": {
                        "time": no_val(None, infinite=True)
                        if limit in ("infinite", "UNLIMITED")
                        else no_val(_minutes(limit))
                    },
                    "defaults": {"job": "", "time": no_val(None)},
                    "flags": ["default"] if row["default"] == "yes" else [],
                }
            )
        return self._slurm_answer(call, partitions=parts, last_update=no_val(int(time.time())))

    def _jobs(self, call: _Call) -> Response:
        self._compute(call, "compute-ace-readonly")
        try:
            raw = self.slurm.squeue_json(user_id=self.uid)
        except SlurmError as exc:
            raise self._slurm_failure(
                call, 1800, f"Unable to query jobs: {exc}", "slurm_load_jobs()", jobs=[]
            ) from None
        jobs = [ctld_job(facts_from_squeue(j)) for j in raw]
        now = int(time.time())
        return self._slurm_answer(
            call, jobs=jobs, last_backfill=no_val(now), last_update=no_val(now)
        )

    def _job(self, call: _Call) -> Response:
        self._compute(call, "compute-ace-readonly")
        job_id = self._job_id(call)
        try:
            rows = self.slurm.sacct_fields([job_id], SACCT_FIELDS)
            if rows:
                facts = facts_from_sacct(rows[0])
            else:  # submitted, not in accounting yet: slurmctld's record, in slurmdb's shape
                number = int(re.split(r"[_+]", job_id)[0])
                live = [j for j in self.slurm.squeue_json() if j.get("job_id") == number]
                if not live:
                    raise self._slurm_failure(
                        call,
                        ESLURM_INVALID_JOB_ID,
                        f"Unable to query JobId={job_id}",
                        "_handle_job_get",
                        plugin="slurmdbd",
                        jobs=[],
                    )
                facts = facts_from_squeue(live[0])
        except SlurmError as exc:
            raise self._slurm_failure(
                call, 1800, f"Unable to query JobId={job_id}: {exc}", "_handle_job_get", jobs=[]
            ) from None
        return self._slurm_answer(call, plugin="slurmdbd", jobs=[db_job(facts)])

    def _cancel(self, call: _Call) -> Response:
        self._compute(call, "compute-ace")
        job_id = self._job_id(call)
        sig_text = _first(call.query, "signal")
        try:
            number = _signal_number(sig_text) if sig_text else signal.SIGKILL
        except ValueError:
            raise self._slurm_failure(
                call, 9001, f"unknown signal {sig_text[:20]!r}", "DATA_PARSE"
            ) from None
        options: list[str] = []
        warnings: list[dict[str, Any]] = []
        flags = [f for v in call.query.get("flags", []) for f in v.split(",") if f]
        for flag in flags:
            if flag in _KILL_FLAGS:
                options.append(_KILL_FLAGS[flag])
            elif flag in _KILL_FLAGS_IGNORED:
                warnings.append({"description": f"flag {flag} ignored", "source": "s3m-loopback"})
            else:
                raise self._slurm_failure(
                    call, 9001, f"unknown kill flag {flag[:30]!r}", "DATA_PARSE"
                )
        if number != signal.SIGKILL:
            options.append(f"--signal={signal.Signals(number).name.removeprefix('SIG')}")
            if not flags:
                options.append("--full")  # slurmrestd signals with KILL_FULL_JOB
        name = signal.strsignal(number) or str(number)
        message = self.slurm.scancel_with(job_id, sorted(set(options), key=options.index))
        if message is None:
            return self._slurm_answer(call, warnings=warnings)
        errno, _ = errno_of_message(message)
        if errno == ESLURM_ALREADY_DONE:  # slurmrestd: already signalled is a success
            warnings.append(
                {
                    "description": f"Job was already sent signal {name}",
                    "source": "_handle_job_delete",
                }
            )
            return self._slurm_answer(call, warnings=warnings)
        if errno == -1 and "timed out" in message:
            errno = 5004
        elif errno == -1:
            errno = 1800 if "could not run" in message else -1
        error = slurm_error(
            errno, f"unable to send signal {name} to JobId={job_id}", "slurm_kill_job2()"
        )
        if errno == -1:
            error["error"] = message.strip()[:500]
        return self._slurm_answer(call, http_status_of(errno), errors=[error], warnings=warnings)

    def _submit(self, call: _Call) -> Response | None:
        self._compute(call, "compute-ace")
        try:
            body = json.loads(call.request.body or b"null")
        except ValueError as exc:
            raise self._slurm_failure(
                call, 9001, f"Unable to parse the request body as JSON: {exc}", "_job_post"
            ) from None
        refusal = self.knobs.refuse_submit
        if refusal:
            raise self._slurm_failure(
                call, refusal, "Batch job submission failed", "slurm_submit_batch_job()"
            )
        try:
            plan = plan_submit(body, call.params["version"], str(self.workdir))
        except SubmitRefused as exc:
            return self._slurm_answer(call, exc.status, errors=[exc.error()])
        assert call.token is not None
        if (
            self.enforce_account
            and plan.account
            and plan.account.lower() != call.token.project.lower()
        ):
            raise self._slurm_failure(
                call, 2045, "Batch job submission failed", "slurm_submit_batch_job()"
            )
        environment = {k: v for k, v in plan.environment.items() if not k.startswith("SBATCH_")}
        warnings = list(plan.warnings)
        warnings += [
            {
                "description": f"{k} not passed: sbatch would read it as an option",
                "source": "s3m-loopback",
            }
            for k in plan.environment
            if k not in environment
        ]
        cwd = plan.cwd if os.path.isdir(plan.cwd) else str(self.workdir)
        while not self._sbatch_slots.acquire(timeout=0.2):
            if self._stop.is_set():
                return None
        try:
            job_id, message = self.slurm.submit(plan.script, plan.options, cwd, environment)
        finally:
            self._sbatch_slots.release()
        if job_id is None:
            return self._refusal(call, message or "sbatch failed", warnings)
        with self._lock:
            self._jobs_created.append(job_id)
        stall = self.knobs.post_timeout
        if stall > 0 and self._stop.wait(stall):
            return None
        late = self.knobs.draw_after_submit()
        if late is not None:
            return self._s3m_error(late, f"injected fault after submit (HTTP {late})")
        if self.knobs.draw_drop_after_submit():
            return None
        return self._slurm_answer(
            call,
            warnings=warnings,
            job_id=int(job_id),
            step_id="batch",
            job_submit_user_msg="",
        )

    def _refusal(self, call: _Call, message: str, warnings: list[dict[str, Any]]) -> Response:
        """sbatch's failure as slurmrestd's: Slurm's reason in ``error``, HTTP 500 (502 when
        the controller cannot be reached, 504 on a timeout)."""
        errno, reason = errno_of_message(message)
        if errno == -1 and " timed out after " in message:
            errno = 5004
        elif errno == -1 and " could not run: " in message:
            errno = 1800
        error = slurm_error(errno, "Batch job submission failed", "slurm_submit_batch_job()")
        if errno == -1:
            error["error"] = reason
        others = [
            line.split("error: ", 1)[-1].strip()
            for line in message.splitlines()
            if line.strip() and reason not in line
        ]
        extra = [{"description": text, "source": "sbatch"} for text in others]
        return self._slurm_answer(
            call, http_status_of(errno), errors=[error], warnings=[*warnings, *extra]
        )


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def _minutes(text: str) -> int | None:
    """sinfo's time limit (``[D-]HH:MM:SS``, ``MM:SS`` or ``MM``) as whole minutes."""
    days, _, clock = text.rpartition("-")
    parts = clock.split(":")
    if not all(p.isdigit() for p in parts) or (days and not days.isdigit()) or len(parts) > 3:
        return None
    numbers = [int(p) for p in parts]
    if len(numbers) == 1:  # minutes
        hours, minutes, seconds = 0, numbers[0], 0
    elif len(numbers) == 2:  # minutes:seconds
        hours, minutes, seconds = 0, numbers[0], numbers[1]
    else:
        hours, minutes, seconds = numbers
    return (int(days) if days else 0) * 1440 + hours * 60 + minutes + (1 if seconds else 0)


def _signal_number(text: str) -> int:
    """A signal given as number, ``KILL`` or ``SIGKILL``; ValueError for anything else."""
    value = text.strip().upper()
    if value.isdigit():
        return int(signal.Signals(int(value)))
    name = value if value.startswith("SIG") else "SIG" + value
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ValueError(text) from None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# ---------------------------------------------------------------------- CLI
def _resource_arg(text: str) -> tuple[str, tuple[str, ...]]:
    name, sep, versions = text.partition("=")
    if not sep or not name or not versions:
        raise argparse.ArgumentTypeError("expected NAME=v0.0.43[,v0.0.44]")
    return name, tuple(v for v in versions.split(",") if v)


def main(argv: list[str] | None = None) -> int:
    """Run a gateway until SIGTERM/SIGINT; print its URLs as one JSON line (never the token)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--token-file", required=True, help="a fresh project token is written here (mode 0600)"
    )
    parser.add_argument("--token-lifetime", type=float, default=DEFAULT_TOKEN_LIFETIME)
    parser.add_argument("--project", default="proj001")
    parser.add_argument(
        "--resource",
        action="append",
        type=_resource_arg,
        help="NAME=v0.0.42,v0.0.43 (repeat; default defiant and odo)",
    )
    parser.add_argument("--prefix", action="append", help="compute path prefix (repeat)")
    parser.add_argument("--workdir", help="job cwd when a job names none (default: a temp dir)")
    parser.add_argument("--slurm-conf", help="slurm.conf (default: $SLURM_CONF)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())

    gateway = S3MGateway(
        host=args.host,
        port=args.port,
        resources=dict(args.resource) if args.resource else None,
        prefixes=args.prefix,
        slurm=LocalSlurm(args.slurm_conf),
        knobs=Knobs(token_lifetime=args.token_lifetime),
        workdir=args.workdir,
        project=args.project,
    )
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with gateway:
        token_file = write_token_file(args.token_file, gateway.issue_token())
        info = {
            "base_url": gateway.base_url,
            "admin_url": gateway.base_url + "/_admin",
            "status_url": gateway.base_url + STATUS_PREFIX,
            "compute_urls": {
                name: {v: gateway.compute_url(name, v) for v in versions}
                for name, versions in gateway.resources.items()
            },
            "prefixes": list(gateway.prefixes),
            "project": gateway.project,
            "token_file": str(token_file),
            "workdir": str(gateway.workdir),
        }
        print(json.dumps(info), flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
