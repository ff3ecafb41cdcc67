"""A loopback DOE IRI facility API gateway (API v1 and v2) backed by a real local Slurm.

It answers like the reference server (doe-iri/iri-facility-api-python: 1.1.0 for ``/api/v1``,
2.0.0 for ``/api/v2``) with a Slurm adapter behind it, so an IRI client can be tested end to
end: jobs really run on the cluster named by ``SLURM_CONF``.  Both prefixes are served at once
(``versions=``); v1 has no ``Idempotency-Key`` (the header is ignored there).

Routes (below ``/api/v1`` and ``/api/v2``; every route needs ``Authorization: Bearer <token>``
from :meth:`IRIGateway.issue_token`, the status routes too unless ``status_auth=False``):

- ``GET /status/resources`` (query ``name, description, group, offset, limit,
  modified_since, resource_type, current_status, capability``) -> ``[Resource]``;
  ``GET /status/resources/{id}`` -> ``Resource`` (404 "Item not found").  Resource ids are
  UUIDs (stable per name); ``resource_type`` is ``compute`` (v1) or
  ``urn:doe-iri:resource:compute:system`` (v2).
- ``GET /status/incidents`` (``name, description, status, type, from, to, time,
  modified_since, resource_id, offset, limit, resolution``) -> ``[Incident]``; as at the
  reference, **no incident at all answers 404** ("No incidents found"; ``empty_incidents_404``).
  ``GET /status/incidents/{id}``.  ``GET /compute/resources`` -> the compute resources.
- ``POST /compute/job/{resource_id}`` JobSpec -> 200 ``Job`` ``{id, status: {state: "new",
  time, message: "job submitted", exit_code: null, meta_data}, job_spec}``.
- ``GET /compute/status/{resource_id}/{job_id}?historical=true&include_spec=false``
  -> ``Job`` (404 when unknown, or finished and ``historical=false``).
- ``POST /compute/status/{resource_id}?offset=0&limit=100&historical=false&include_spec=false``
  with a filters object (or no body) -> ``[Job]`` sorted by job id.  Filters: ``{"id":
  [ids], "name": [names], "state": [PSI/J states]}`` (each a string or a list; all given
  filters must match; another key is a 400).  ``historical=false``: the jobs squeue shows
  (queued/held/active); ``historical=true`` adds the finished ones from sacct.
- ``PUT /compute/job/{resource_id}/{job_id}`` -> 501 after the usual checks (no updates).
- ``DELETE /compute/cancel/{resource_id}/{job_id}`` -> 204 (real scancel; a job that already
  ended -> 204 too, its state unchanged; an id this user never submitted here -> 404).
- With ``file_roots`` only (OLCF's deployment serves none of them; then 404): ``POST
  /filesystem/{mkdir,chmod,upload,mv,checksum,stat}/{resource_id}`` -> ``{task_id,
  task_uri}`` and ``GET /task/{task_id}`` -> ``Task`` (``iri_files.py``).

Jobs are listed per (token user, resource): each user sees the jobs it submitted through
this gateway to that resource (every token user runs as the gateway's Unix account, like
OLCF's project account); a job's ``status.meta_data.name`` is the name it was submitted with
(Slurm's accounting shows a fast job as "allocation" for a few seconds).  Idempotency keys are
scoped per user and endpoint, not per resource, as at the reference.

Errors are RFC 7807 problems ``{type, title, status, detail, instance}``
(``application/problem+json``), with ``invalid_params`` on validation errors; see
:class:`IRIGateway` for the status of each refusal and the knobs (``faults.Knobs``) that
inject faults.

Run standalone::

    python -m harvester_edge.localsite.iri_gateway --port 8766 --user alice
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pwd
import re
import secrets
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from .faults import INCIDENT_TYPES, IRI_STATES, RESOLUTIONS, Knobs
from .files import FileArea
from .iri_files import FileTasks
from .iri_idempotency import IdempotencyStore
from .iri_spec import (
    FieldError,
    ParsedSpec,
    SitePolicy,
    SpecInvalid,
    batch_job,
    fingerprint,
    parse_job_spec,
    semantic_problems,
)
from .iri_states import FINAL, job_status
from .loopback import NO_CONTENT, GatewayBook, HttpRequest, LoopbackServer, Response
from .sfapi_gateway import _multipart_file
from .slurm import LocalSlurm, SlurmError

__all__ = ["API_VERSIONS", "FILTER_KEYS", "IRIGateway", "main", "resource_id_for"]

log = logging.getLogger(__name__)

API_VERSIONS = ("v1", "v2")
#: Keys of the bulk status filters object.
FILTER_KEYS = ("id", "name", "state")
JOB_STATES = ("new", "queued", "held", "active", "completed", "failed", "canceled")
RESOURCE_TYPES = {"v1": "compute", "v2": "urn:doe-iri:resource:compute:system"}
#: Namespace of the gateway's resource and incident UUIDs (stable across runs).
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://harvester-edge.invalid/localsite/iri")
_PROBLEM_JSON = {"Content-Type": "application/problem+json"}
_MAX_LIMIT = 1000
_SCANCEL_DONE = ("already completing or completed", "Invalid job id specified")


def resource_id_for(name: str) -> str:
    """The UUID the gateway gives the resource called ``name`` (the same in every run)."""
    return str(uuid.uuid5(_NAMESPACE, f"resource:{name}"))


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------- errors
class Problem(Exception):
    """An RFC 7807 problem answer, shaped like the reference server's."""

    def __init__(
        self,
        status: int,
        problem_type: str,
        title: str,
        detail: str,
        invalid_params: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.problem_type = problem_type
        self.title = title
        self.detail = detail
        self.invalid_params = invalid_params
        self.headers = headers or {}


class _Reply(Exception):
    """A complete answer that is not a problem (FastAPI's stock 422 in ``fastapi`` style)."""

    def __init__(self, response: Response) -> None:
        super().__init__("reply")
        self.response = response


def _error(status: int, detail: str, **kw: Any) -> Problem:
    """The reference's fallback for an HTTPException without its own handler."""
    return Problem(status, "generic-error", "Error", detail, **kw)


def _not_found(detail: str) -> Problem:
    return Problem(404, "not-found", "Not Found", detail)


def _unavailable(detail: str) -> Problem:
    return Problem(503, "service-unavailable", "Service Unavailable", detail)


_INJECTED = {
    500: ("internal-error", "Internal Server Error"),
    502: ("bad-gateway", "Bad Gateway"),
    503: ("service-unavailable", "Service Unavailable"),
    504: ("gateway-timeout", "Gateway Timeout"),
}


# ---------------------------------------------------------------------- model
@dataclass(frozen=True)
class IRIResource:
    """One compute resource of the gateway (all share the local cluster)."""

    name: str
    id: str
    description: str
    group: str = "compute"


@dataclass
class _JobRecord:
    id: str
    owner: str
    resource_id: str
    name: str | None
    spec: dict[str, Any]
    submitted: float
    final: dict[str, Any] | None = None  # the status once sacct reported a final state


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    key: str
    handler: str
    #: allowed query parameters (others: 422); None = not checked (as the reference)
    query: tuple[str, ...] | None = ()
    multi: tuple[str, ...] = ()
    body: bool = False
    compute: bool = True


def _route(method: str, regex: str, key: str, handler: str, **kw: Any) -> _Route:
    return _Route(method, re.compile(regex + r"\Z"), key, handler, **kw)


_RESOURCE_QUERY = (
    "name",
    "description",
    "group",
    "offset",
    "limit",
    "modified_since",
    "resource_type",
    "current_status",
    "capability",
)
_INCIDENT_QUERY = (
    "name",
    "description",
    "status",
    "type",
    "from",
    "to",
    "time",
    "modified_since",
    "resource_id",
    "offset",
    "limit",
    "resolution",
    "resource_uris",
    "event_uris",
)
_ROUTES: tuple[_Route, ...] = (
    _route(
        "GET",
        r"/status/resources",
        "resources",
        "_resources",
        query=_RESOURCE_QUERY,
        multi=("capability",),
        compute=False,
    ),
    _route(
        "GET",
        r"/status/resources/(?P<rid>[^/]+)",
        "resource",
        "_resource",
        query=None,
        compute=False,
    ),
    _route(
        "GET",
        r"/status/incidents",
        "incidents",
        "_incidents",
        query=_INCIDENT_QUERY,
        multi=("resource_uris", "event_uris"),
        compute=False,
    ),
    _route(
        "GET",
        r"/status/incidents/(?P<iid>[^/]+)",
        "incident",
        "_incident",
        query=None,
        compute=False,
    ),
    _route("GET", r"/compute/resources", "compute_resources", "_compute_resources"),
    _route("POST", r"/compute/job/(?P<rid>[^/]+)", "submit", "_submit", body=True),
    _route("PUT", r"/compute/job/(?P<rid>[^/]+)/(?P<job_id>[^/]+)", "update", "_update", body=True),
    _route(
        "GET",
        r"/compute/status/(?P<rid>[^/]+)/(?P<job_id>[^/]+)",
        "job_status",
        "_job_status",
        query=("historical", "include_spec"),
    ),
    _route(
        "POST",
        r"/compute/status/(?P<rid>[^/]+)",
        "jobs_status",
        "_jobs_status",
        query=("offset", "limit", "filters", "historical", "include_spec"),
        body=True,
    ),
    _route("DELETE", r"/compute/cancel/(?P<rid>[^/]+)/(?P<job_id>[^/]+)", "cancel", "_cancel"),
    _route(
        "POST",
        r"/filesystem/(?P<op>mkdir|chmod|upload|mv|checksum|stat)/(?P<rid>[^/]+)",
        "filesystem",
        "_filesystem",
        query=("path",),
    ),
    _route("GET", r"/task/(?P<task_id>[^/]+)", "task", "_task"),
)
# ``compute=False``: public at the reference (the status routes); ``status_auth`` decides.

_NO_BODY = object()


@dataclass
class _Call:
    """One API call as the route handlers see it."""

    version: str
    params: dict[str, str]
    query: dict[str, list[str]]
    request: HttpRequest
    prefix: str  # absolute URL of the API root, for self_uri and friends
    user: str = ""
    body: Any = _NO_BODY


class _Tokens:
    """Opaque bearer tokens: who they belong to and until when."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def issue(self, user: str, lifetime: float) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            # expired tokens are kept a while so they keep answering "expired", not "unknown"
            self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now - 3600}
            self._tokens[token] = (user, now + lifetime)
        return token

    def revoke(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def check(self, token: str) -> tuple[str | None, bool]:
        """``(user, expired)``; ``(None, False)`` for a token never issued (or revoked)."""
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None:
            return None, False
        return entry[0], entry[1] <= time.monotonic()


# ---------------------------------------------------------------------- query parsing
def _bool(call: _Call, name: str, default: bool, errors: list[FieldError]) -> bool:
    values = call.query.get(name)
    if not values:
        return default
    text = values[0].strip().lower()
    if text in ("true", "false"):
        return text == "true"
    msg = "Value error, Invalid boolean value. Expected 'true' or 'false'."
    errors.append(FieldError("value_error", (name,), msg, values[0]))
    return default


def _int(
    call: _Call, name: str, default: int, errors: list[FieldError], high: int | None = None
) -> int:
    values = call.query.get(name)
    if not values:
        return default
    text = values[0]
    if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", text):
        msg = "Input should be a valid integer, unable to parse string as an integer"
        errors.append(FieldError("int_parsing", (name,), msg, text))
        return default
    number = int(text)
    if number < 0:
        msg = "Input should be greater than or equal to 0"
        errors.append(FieldError("greater_than_equal", (name,), msg, text))
        return default
    if high is not None and number > high:
        msg = f"Input should be less than or equal to {high}"
        errors.append(FieldError("less_than_equal", (name,), msg, text))
        return default
    return number


def _text(call: _Call, name: str, errors: list[FieldError]) -> str | None:
    values = call.query.get(name)
    if not values:
        return None
    if not values[0]:
        msg = "String should have at least 1 character"
        errors.append(FieldError("string_too_short", (name,), msg, values[0]))
        return None
    return values[0]


def _choice(call: _Call, name: str, allowed: Sequence[str], errors: list[FieldError]) -> str | None:
    values = call.query.get(name)
    if not values:
        return None
    if values[0] not in allowed:
        quoted = [f"'{a}'" for a in allowed]
        msg = f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}"
        errors.append(FieldError("enum", (name,), msg, values[0]))
        return None
    return values[0]


def _moment(call: _Call, name: str, errors: list[FieldError]) -> datetime | None:
    values = call.query.get(name)
    if not values:
        return None
    try:
        moment = datetime.fromisoformat(values[0].strip().replace("Z", "+00:00"))
    except ValueError:
        msg = "Value error, Invalid datetime format. Expected ISO8601 string."
        errors.append(FieldError("value_error", (name,), msg, values[0]))
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _page(items: list[Any], offset: int, limit: int) -> list[Any]:
    return items[offset : offset + limit]


# ---------------------------------------------------------------------- the gateway
class IRIGateway(GatewayBook):
    """Serve the DOE IRI compute and status API on loopback from a real Slurm cluster.

    :param resources: names of the compute resources served (ids: :func:`resource_id_for`).
    :param versions: API versions served, each under ``/api/<version>``.
    :param slurm: Slurm CLI wrapper; default uses ``$SLURM_CONF``.
    :param knobs: faults and site state (``faults.Knobs``); default ``Knobs(
        expired_token_status=401)``, since the reference answers an expired token 401.
    :param workdir: cwd of sbatch (so relative paths and default ``slurm-%j.out`` files land
        there; default a new temporary directory).
    :param idempotency_store: ``False`` reproduces a v2 server without a store: any submit
        carrying ``Idempotency-Key`` gets 501.
    :param status_auth: require a token on the status routes too (OLCF does; the reference
        leaves them public).
    :param partitions, accounts, pass_custom_attributes: see :class:`iri_spec.SitePolicy`.
    :param validation_style: ``"reference"`` (default): an invalid request is 400 with a
        problem and ``invalid_params`` (what the reference's handler answers); ``"fastapi"``:
        FastAPI's stock 422 ``{"detail": [{type, loc, msg, input}]}`` (a server without the
        reference's handlers).
    :param empty_incidents_404: answer an empty incident list with 404, as the reference.

    Status codes: 401 missing/unknown token (``WWW-Authenticate: Bearer``), expired token
    ``knobs.expired_token_status``; 404 unknown path, resource, job or incident; 405 wrong
    method; 422 unknown or repeated query parameter, ``Idempotency-Key`` reused with another
    body, or a JobSpec this gateway cannot run (no executable, containers, unknown launcher);
    400 malformed JSON, invalid JobSpec or query value, unknown filter key, or sbatch's
    refusal (its message in ``detail``); 409 the same key in flight; 501 key without store,
    and ``PUT``; 503 resource down or Slurm not answering.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        resources: Sequence[str] = ("perlmutter", "frontier"),
        versions: Sequence[str] = API_VERSIONS,
        slurm: LocalSlurm | None = None,
        knobs: Knobs | None = None,
        workdir: str | os.PathLike[str] | None = None,
        idempotency_store: bool = True,
        status_auth: bool = True,
        partitions: Mapping[str, str] | None = None,
        accounts: Mapping[str, str] | None = None,
        pass_custom_attributes: bool = False,
        validation_style: str = "reference",
        empty_incidents_404: bool = True,
        file_roots: Sequence[str | os.PathLike[str]] | None = None,
    ) -> None:
        unknown = [v for v in versions if v not in API_VERSIONS]
        if unknown or not versions:
            raise ValueError(f"versions must be among {', '.join(API_VERSIONS)}")
        if validation_style not in ("reference", "fastapi"):
            raise ValueError("validation_style must be 'reference' or 'fastapi'")
        if not resources:
            raise ValueError("at least one resource is needed")
        self.versions = tuple(versions)
        self.resources = tuple(
            IRIResource(n, resource_id_for(n), f"{n} (loopback IRI gateway, local Slurm)")
            for n in resources
        )
        self.slurm = slurm if slurm is not None else LocalSlurm()
        self.knobs = knobs if knobs is not None else Knobs(expired_token_status=401)
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="iri-gw-"))
        self.policy = SitePolicy(
            dict(partitions) if partitions is not None else None,
            dict(accounts) if accounts is not None else None,
            pass_custom_attributes,
        )
        self.status_auth = status_auth
        self.validation_style = validation_style
        self.empty_incidents_404 = empty_incidents_404
        self.store: IdempotencyStore | None = (
            IdempotencyStore(
                lambda: self.knobs.idempotency_ttl, lambda: self.knobs.idempotency_lock_ttl
            )
            if idempotency_store
            else None
        )
        self.unix_user = pwd.getpwuid(os.geteuid()).pw_name
        self._started = datetime.now(timezone.utc)
        self._tokens = _Tokens()
        self._server = LoopbackServer(self, host, port)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._jobs_created: list[str] = []
        self._jobs: dict[str, _JobRecord] = {}
        self._owned: dict[tuple[str, str], list[str]] = {}
        self.files: FileTasks | None = (
            FileTasks(FileArea(list(file_roots), self.workdir)) if file_roots else None
        )

    # ------------------------------------------------------------------ public state
    def api_url(self, version: str = "v2") -> str:
        """Base URL of one API version (``.../api/v2``)."""
        if version not in self.versions:
            raise ValueError(f"API {version} is not served (serving {', '.join(self.versions)})")
        return f"{self.base_url}/api/{version}"

    def resource(self, name: str) -> IRIResource:
        """The resource called ``name``."""
        for res in self.resources:
            if res.name == name:
                return res
        raise KeyError(name)

    def issue_token(self, user: str = "user", expires_in: float | None = None) -> str:
        """A bearer token for ``user``, valid ``expires_in`` s (default: ``token_lifetime``)."""
        if not user:
            raise ValueError("user must not be empty")
        lifetime = self.knobs.token_lifetime if expires_in is None else float(expires_in)
        return self._tokens.issue(user, lifetime)

    def revoke_token(self, token: str) -> None:
        """Forget a token (it then answers 401 like one never issued)."""
        self._tokens.revoke(token)

    def state(self) -> dict[str, Any]:
        """Knobs, counters and created jobs, and the served resources (``GET /_admin/state``)."""
        return {
            **super().state(),
            "resources": {r.name: r.id for r in self.resources},
        }

    # ------------------------------------------------------------------ dispatch
    def handle(self, request: HttpRequest) -> Response | None:
        """Route one request through the knobs to its handler (the loopback.App protocol)."""
        if request.path.startswith("/_admin/"):
            return self._admin(request)
        host = request.headers.get("Host") or f"{self._server.host}:{self._server.port}"
        origin = f"http://{host}"
        version, rel = "", ""
        for v in self.versions:
            root = f"/api/{v}"
            if request.path.startswith(root + "/"):
                version, rel = v, request.path[len(root) :]
        route: _Route | None = None
        params: dict[str, str] = {}
        other_methods = False
        if version:
            route, params, other_methods = self._match(request.method, rel)
        with self._lock:
            self._counters[route.key if route else "unknown"] += 1
        call = _Call(
            version,
            params,
            parse_qs(request.query, keep_blank_values=True),
            request,
            f"{origin}/api/{version}",
        )
        try:
            if not self.knobs.wait_while_hung(self._stop):
                return None
            latency = self.knobs.latency
            if latency > 0 and self._stop.wait(latency):
                return None
            if self.knobs.draw_drop(request.path, rel):
                return None
            injected = self.knobs.draw_error(request.path, rel, False)
            if injected is not None:
                kind, title = _INJECTED.get(injected, ("generic-error", "Error"))
                raise Problem(injected, kind, title, f"injected fault (HTTP {injected})")
            if route is None:
                if other_methods:
                    raise Problem(
                        405,
                        "method-not-allowed",
                        "Method Not Allowed",
                        "Method Not Allowed",
                        headers={"Allow": "GET, HEAD"},  # sic: the reference's fixed value
                    )
                raise _not_found("Not Found")
            return self._run(route, call)
        except Problem as exc:
            return self._problem(call, origin, exc)
        except _Reply as exc:
            return exc.response

    def _run(self, route: _Route, call: _Call) -> Response | None:
        """The reference's order: body JSON, token, query names, then the handler."""
        if route.body:
            call.body = self._json_body(call)
        if route.compute or self.status_auth:
            call.user = self._authenticate(call.request)
        if route.query is not None:
            self._forbid_extra_query(call, route)
        handler: Callable[[_Call], Response | None] = getattr(self, route.handler)
        return handler(call)

    @staticmethod
    def _match(method: str, rel: str) -> tuple[_Route | None, dict[str, str], bool]:
        other = False
        for route in _ROUTES:
            m = route.pattern.match(rel)
            if not m:
                continue
            if route.method == method:
                return route, {k: unquote(v) for k, v in m.groupdict().items()}, False
            other = True
        return None, {}, other

    def _problem(self, call: _Call, origin: str, exc: Problem) -> Response:
        url = origin + quote(call.request.path, safe="/:@&+$,;=-._~")
        if call.request.query:
            url += "?" + quote(call.request.query, safe="=&?/:@+$,;-._~")
        body: dict[str, Any] = {
            "type": f"{origin}/problems/{exc.problem_type}",
            "title": exc.title,
            "status": exc.status,
            "detail": exc.detail,
            "instance": url,
        }
        if exc.invalid_params:
            body["invalid_params"] = exc.invalid_params
        return exc.status, body, {**_PROBLEM_JSON, **exc.headers}

    def _invalid(self, errors: list[FieldError], where: str) -> Exception:
        """A validation refusal (``where``: ``body`` or ``query``) in the configured style."""
        if self.validation_style == "fastapi":
            return _Reply((422, {"detail": [e.fastapi(where) for e in errors]}))
        params = [{"name": str(e.loc[-1]) if e.loc else where, "reason": e.msg} for e in errors]
        detail = ", ".join(p["reason"] for p in params)
        return Problem(400, "invalid-parameter", "Invalid parameter", detail, params)

    def _json_body(self, call: _Call) -> Any:
        raw = call.request.body
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            pos = exc.pos if isinstance(exc, json.JSONDecodeError) else 0
            error = FieldError("json_invalid", (pos,), "JSON decode error", {})
            raise self._invalid([error], "body") from None

    def _authenticate(self, request: HttpRequest) -> str:
        header = request.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(401, "unauthorized", "Unauthorized", "Not authenticated", None, challenge)
        user, expired = self._tokens.check(token.strip())
        if user is None:
            detail = "Facility Specific authentication failed: invalid token"
            raise Problem(401, "unauthorized", "Unauthorized", detail, None, challenge)
        if expired:
            status = self.knobs.expired_token_status
            detail = "Facility Specific authentication failed: token expired"
            if status == 401:
                raise Problem(401, "unauthorized", "Unauthorized", detail, None, challenge)
            if status == 403:
                raise Problem(403, "forbidden", "Forbidden", detail)
            raise _error(status, detail)
        return user

    @staticmethod
    def _forbid_extra_query(call: _Call, route: _Route) -> None:
        allowed = route.query or ()
        for name, values in call.query.items():
            if name not in allowed:
                raise _error(422, f"Unexpected query parameter: {name}")
            if len(values) > 1 and name not in route.multi:
                raise _error(422, f"Duplicate query parameter: {name}")

    # ------------------------------------------------------------------ admin
    def _admin(self, request: HttpRequest) -> Response:
        """Knob control for tests and the demo CLI; loopback peers only, no token."""
        if not (request.client_ip.startswith("127.") or request.client_ip == "::1"):
            return 403, {"detail": "admin endpoints are loopback-only"}
        if request.method == "GET" and request.path == "/_admin/state":
            return 200, self.state()
        if request.method == "POST" and request.path in ("/_admin/knobs", "/_admin/token"):
            try:
                values = json.loads(request.body or b"{}")
                if not isinstance(values, dict):
                    raise ValueError("expected a JSON object")
                if request.path == "/_admin/token":
                    lifetime = values.get("expires_in")
                    token = self.issue_token(str(values.get("user") or "user"), lifetime)
                    expires = self.knobs.token_lifetime if lifetime is None else lifetime
                    return 200, {
                        "access_token": token,
                        "token_type": "Bearer",
                        "expires_in": expires,
                    }
                self.knobs.update(**values)
            except (ValueError, TypeError) as exc:
                return 400, {"detail": str(exc)}
            return 200, self.state()
        if request.method == "POST" and request.path == "/_admin/reset_counters":
            self.reset_counters()
            return 200, self.state()
        return 404, {"detail": "Not Found"}

    # ------------------------------------------------------------------ status routes
    def _resource_doc(self, res: IRIResource, call: _Call) -> dict[str, Any]:
        return {
            "id": res.id,
            "name": res.name,
            "description": res.description,
            "last_modified": _iso(self._started),
            "group": res.group,
            "current_status": self.knobs.iri_status(res.name, res.id),
            "resource_type": RESOURCE_TYPES[call.version],
            "supported_endpoints": ["compute"],
            "self_uri": f"{call.prefix}/status/resources/{res.id}",
            "site_uri": f"{call.prefix}/facility/sites/{resource_id_for('site:local')}",
            "capability_uris": [],
        }

    def _resources(self, call: _Call) -> Response:
        errors: list[FieldError] = []
        name = _text(call, "name", errors)
        description = _text(call, "description", errors)
        group = _text(call, "group", errors)
        offset = _int(call, "offset", 0, errors)
        limit = _int(call, "limit", 100, errors, _MAX_LIMIT)
        since = _moment(call, "modified_since", errors)
        rtype = _text(call, "resource_type", errors)
        status = _choice(call, "current_status", IRI_STATES, errors)
        if errors:
            raise self._invalid(errors, "query")
        docs = [self._resource_doc(r, call) for r in self.resources]
        if name:
            docs = [d for d in docs if d["name"] == name]
        if description:
            docs = [d for d in docs if description in d["description"]]
        if group:
            docs = [d for d in docs if d["group"] == group]
        if since and since > self._started:
            docs = []
        if rtype:
            docs = [
                d
                for d in docs
                if d["resource_type"] == rtype or d["resource_type"].startswith(rtype + ":")
            ]
        if status:
            docs = [d for d in docs if d["current_status"] == status]
        if call.query.get("capability"):
            docs = []  # these resources declare no capabilities
        return 200, _page(docs, offset, limit)

    def _resource(self, call: _Call) -> Response:
        res = self._find_resource(call.params["rid"])
        if res is None:
            raise _not_found("Item not found")
        return 200, self._resource_doc(res, call)

    def _compute_resources(self, call: _Call) -> Response:
        return 200, [self._resource_doc(r, call) for r in self.resources]

    # ------------------------------------------------------------------ filesystem
    def _filesystem(self, call: _Call) -> Response:
        """A filesystem operation as a task (``iri_files.py``); 404 without file roots."""
        if self.files is None:
            raise _not_found("Not Found")
        if self._find_resource(call.params["rid"]) is None:
            raise _not_found("Resource not found")
        op = call.params["op"]
        data = b""
        if op == "upload":
            upload = _multipart_file(
                call.request.headers.get("Content-Type", ""), call.request.body
            )
            path = (call.query.get("path") or [""])[0]
            if upload is None or not path:
                raise _error(422, "upload needs the query parameter path and a file part")
            args: dict[str, Any] = {"path": path}
            data = upload[1]
        else:
            body = self._json_body(call)
            if not isinstance(body, dict):
                raise _error(422, f"{op} needs a JSON object")
            args = body
        task_id = self.files.submit(call.user, op, args, data)
        return 200, {"task_id": task_id, "task_uri": f"{call.prefix}/task/{task_id}"}

    def _task(self, call: _Call) -> Response:
        task = self.files.get(call.user, call.params["task_id"]) if self.files else None
        if task is None:
            raise _not_found(f"Task {call.params['task_id'][:40]} not found")
        return 200, task

    def _find_resource(self, rid: str) -> IRIResource | None:
        return next((r for r in self.resources if r.id == rid), None)

    def _incident_docs(self, call: _Call) -> list[dict[str, Any]]:
        docs = []
        for item in self.knobs.snapshot()["incidents"]:
            wanted = item["resources"]
            ids = [r.id for r in self.resources if not wanted or r.name in wanted or r.id in wanted]
            iid = item["id"] or str(
                uuid.uuid5(_NAMESPACE, f"incident:{item['name']}:{item['start']}")
            )
            docs.append(
                {
                    "id": iid,
                    "name": item["name"],
                    "description": item["description"],
                    "last_modified": _iso(datetime.fromisoformat(item["last_modified"])),
                    "status": item["status"],
                    "start": _iso(datetime.fromisoformat(item["start"])),
                    "end": _iso(datetime.fromisoformat(item["end"])) if item["end"] else None,
                    "type": item["type"],
                    "resolution": item["resolution"],
                    "self_uri": f"{call.prefix}/status/incidents/{iid}",
                    "event_uris": [],
                    "resource_uris": [f"{call.prefix}/status/resources/{i}" for i in ids],
                    "_resource_ids": ids,
                }
            )
        return docs

    def _incidents(self, call: _Call) -> Response:
        errors: list[FieldError] = []
        name = _text(call, "name", errors)
        description = _text(call, "description", errors)
        status = _choice(call, "status", IRI_STATES, errors)
        kind = _choice(call, "type", INCIDENT_TYPES, errors)
        resolution = _choice(call, "resolution", RESOLUTIONS, errors)
        since = _moment(call, "modified_since", errors)
        start = _moment(call, "from", errors)
        to = _moment(call, "to", errors)
        at = _moment(call, "time", errors)
        resource_id = _text(call, "resource_id", errors)
        offset = _int(call, "offset", 0, errors)
        limit = _int(call, "limit", 100, errors, _MAX_LIMIT)
        if errors:
            raise self._invalid(errors, "query")

        def when(text: str) -> datetime:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))

        def keep(d: dict[str, Any]) -> bool:
            end = when(d["end"]) if d["end"] is not None else None
            return (
                (not name or d["name"] == name)
                and (not description or description in (d["description"] or ""))
                and (not status or d["status"] == status)
                and (not kind or d["type"] == kind)
                and (not resolution or d["resolution"] == resolution)
                and (not resource_id or resource_id in d["_resource_ids"])
                and (since is None or when(d["last_modified"]) >= since)
                and (start is None or when(d["start"]) >= start)
                and (to is None or (end is not None and end < to))
                and (at is None or (when(d["start"]) <= at and (end is None or end > at)))
            )

        docs = [d for d in self._incident_docs(call) if keep(d)]
        for d in docs:
            del d["_resource_ids"]
        docs = _page(docs, offset, limit)
        if not docs and self.empty_incidents_404:
            raise _not_found("No incidents found")
        return 200, docs

    def _incident(self, call: _Call) -> Response:
        for doc in self._incident_docs(call):
            if doc["id"] == call.params["iid"]:
                del doc["_resource_ids"]
                return 200, doc
        raise _not_found("Item not found")

    # ------------------------------------------------------------------ compute helpers
    def _compute_resource(self, call: _Call) -> IRIResource:
        res = self._find_resource(call.params["rid"])
        if res is None:
            raise _not_found(f"resource not found: {call.params['rid'][:60]}")
        if self.knobs.iri_status(res.name, res.id) == "down":
            raise _unavailable(f"resource {res.name} is down")
        return res

    def _spec(self, call: _Call) -> ParsedSpec:
        try:
            return parse_job_spec(call.body if call.body is not _NO_BODY else None, call.version)
        except SpecInvalid as exc:
            raise self._invalid(exc.errors, "body") from None

    def _record(self, call: _Call, res: IRIResource) -> _JobRecord:
        with self._lock:
            rec = self._jobs.get(call.params["job_id"])
        if rec is None or rec.owner != call.user or rec.resource_id != res.id:
            raise _not_found(f"job not found: {call.params['job_id'][:40]}")
        return rec

    # ------------------------------------------------------------------ submit
    def _submit(self, call: _Call) -> Response | None:
        spec = self._spec(call)
        res = self._compute_resource(call)
        key = (call.request.headers.get("Idempotency-Key") or "").strip()
        if call.version == "v1" or not key:  # v1 has no such header; empty = none
            reply = self._create(call, res, spec)
            return self._after_create(reply[0], reply[1], {})
        if self.store is None:
            detail = (
                "Idempotency-Key provided but no idempotency store is configured "
                "(set IRI_IDEMPOTENCY_STORE)."
            )
            raise _error(501, detail)
        claim = self.store.begin(
            IdempotencyStore.scope(call.user, "submit_job", key), fingerprint(spec)
        )
        if claim.action == "hit" and claim.reply is not None:
            status, body = claim.reply
            return status, body, {"Idempotency-Key-Reply": "hit"}
        if claim.action == "conflict":
            # The reference sets Retry-After: 2, but its 409 handler drops the header.
            detail = "A request with this Idempotency-Key is already in progress."
            raise Problem(409, "conflict", "Conflict", detail)
        if claim.action == "mismatch":
            raise _error(422, "Idempotency-Key reused with a different request body.")
        try:
            reply = self._create(call, res, spec)
        except BaseException:
            self.store.release(claim)
            raise
        self.store.finish(claim, reply)
        return self._after_create(reply[0], reply[1], {"Idempotency-Key-Reply": "miss"})

    def _after_create(
        self, status: int, body: dict[str, Any], headers: dict[str, str]
    ) -> Response | None:
        """The faults that strike once the job exists (and its reply is stored)."""
        stall = self.knobs.post_timeout
        if stall > 0 and self._stop.wait(stall):
            return None
        if self.knobs.draw_drop_after_submit():
            return None
        late = self.knobs.draw_after_submit()
        if late is not None:
            kind, title = _INJECTED.get(late, ("generic-error", "Error"))
            raise Problem(late, kind, title, f"injected fault after submit (HTTP {late})")
        return status, body, headers

    def _create(self, call: _Call, res: IRIResource, spec: ParsedSpec) -> tuple[int, Any]:
        """Run sbatch for a checked spec; the Job reply, or a Problem."""
        problems = semantic_problems(spec, self.policy.pass_custom_attributes)
        if problems:
            params = [{"name": where, "reason": why} for where, why in problems]
            detail = "; ".join(f"{where}: {why}" for where, why in problems)
            raise Problem(422, "unprocessable-entity", "Unprocessable Entity", detail, params)
        delay = self.knobs.submit_delay
        if delay > 0 and self._stop.wait(delay):
            raise _unavailable("gateway stopping")
        script, options = batch_job(spec, self.policy)
        jobid, error = self.slurm.submit(script, options, self.workdir)
        if jobid is None:
            # sbatch's refusal: 400 with its message (NERSC answered 404 for a while).
            raise _error(400, error or "sbatch refused the job")
        now = time.time()
        rec = _JobRecord(jobid, call.user, res.id, spec.get("name"), spec.sent, now)
        with self._lock:
            self._jobs_created.append(jobid)
            self._jobs[jobid] = rec
            self._owned.setdefault((call.user, res.id), []).append(jobid)
        attributes = spec.get("attributes") or {}
        meta = {
            "name": rec.name,
            "resource": res.name,
            "account": attributes.get("account"),
            "queue_name": attributes.get("queue_name"),
            "custom_attributes": attributes.get("custom_attributes") or {},
            "sbatch_options": options,
        }
        status = {
            "state": "new",
            "time": now,
            "message": "job submitted",
            "exit_code": None,
            "meta_data": meta,
        }
        return 200, {"id": jobid, "status": status, "job_spec": spec.sent}

    def _update(self, call: _Call) -> Response:
        self._spec(call)
        res = self._compute_resource(call)
        self._record(call, res)
        raise _error(501, "job updates are not supported by this gateway")

    # ------------------------------------------------------------------ job status
    def _live(self, ids: list[str] | None = None) -> dict[str, dict[str, str]]:
        """squeue rows of the gateway's Unix account by job id (queued/running jobs only)."""
        try:
            if ids is not None:
                rows = self.slurm.squeue(jobids=ids)
            else:
                rows = self.slurm.squeue(user=self.unix_user)
        except SlurmError as exc:
            raise _unavailable(f"Slurm did not answer: {exc}") from None
        return {row["jobid"]: row for row in rows}

    def _finished(self, recs: Iterable[_JobRecord]) -> dict[str, dict[str, Any]]:
        """Statuses of jobs not in the queue, from the cache or sacct (one call)."""
        out: dict[str, dict[str, Any]] = {}
        ask: dict[str, _JobRecord] = {}
        for rec in recs:
            if rec.final is not None:
                out[rec.id] = rec.final
            else:
                ask[rec.id] = rec
        if not ask:
            return out
        try:
            rows = self.slurm.sacct(jobids=list(ask))
        except SlurmError as exc:
            raise _unavailable(f"Slurm accounting did not answer: {exc}") from None
        for row in rows:
            found = ask.get(row.get("jobid", ""))
            if found is None:
                continue
            status = job_status(row, "sacct", found.name)
            if status["state"] in FINAL:
                found.final = status
            out[found.id] = status
        return out

    @staticmethod
    def _job_doc(rec: _JobRecord, status: dict[str, Any], include_spec: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": rec.id, "status": status}
        if include_spec:
            doc["job_spec"] = rec.spec
        return doc

    def _job_status(self, call: _Call) -> Response:
        errors: list[FieldError] = []
        historical = _bool(call, "historical", True, errors)
        include_spec = _bool(call, "include_spec", False, errors)
        if errors:
            raise self._invalid(errors, "query")
        res = self._compute_resource(call)
        rec = self._record(call, res)
        live = {} if rec.final is not None else self._live([rec.id])
        if rec.id in live:
            return 200, self._job_doc(
                rec, job_status(live[rec.id], "squeue", rec.name), include_spec
            )
        if historical:
            done = self._finished([rec])
            if rec.id in done:
                return 200, self._job_doc(rec, done[rec.id], include_spec)
        hint = "" if historical else " (finished jobs need historical=true)"
        raise _not_found(f"job not found: {rec.id}{hint}")

    def _filters(self, body: Any) -> dict[str, set[str]]:
        if body is None or body is _NO_BODY:
            return {}
        if not isinstance(body, dict):
            error = FieldError("dict_type", (), "Input should be a valid dictionary", body)
            raise self._invalid([error], "body")
        out: dict[str, set[str]] = {}
        errors: list[FieldError] = []
        for key, value in body.items():
            if key not in FILTER_KEYS:
                msg = f"unsupported filter; supported: {', '.join(FILTER_KEYS)}"
                errors.append(FieldError("value_error", (key,), msg, value))
                continue
            values = value if isinstance(value, list) else [value]
            if not all(isinstance(v, str) or (type(v) is int and key == "id") for v in values):
                msg = "expected a string or a list of strings"
                errors.append(FieldError("value_error", (key,), msg, value))
                continue
            texts = {str(v) for v in values}
            if key == "state" and not texts <= set(JOB_STATES):
                msg = f"states are {', '.join(JOB_STATES)}"
                errors.append(FieldError("value_error", (key,), msg, value))
                continue
            out[key] = texts
        if errors:
            raise self._invalid(errors, "body")
        return out

    def _jobs_status(self, call: _Call) -> Response:
        errors: list[FieldError] = []
        offset = _int(call, "offset", 0, errors)
        limit = _int(call, "limit", 100, errors, _MAX_LIMIT)
        historical = _bool(call, "historical", False, errors)
        include_spec = _bool(call, "include_spec", False, errors)
        if errors:
            raise self._invalid(errors, "query")
        filters = self._filters(call.body)
        res = self._compute_resource(call)
        with self._lock:
            recs = [self._jobs[i] for i in self._owned.get((call.user, res.id), [])]
        if "id" in filters:
            recs = [r for r in recs if r.id in filters["id"]]
        if "name" in filters:
            recs = [r for r in recs if r.name in filters["name"]]
        statuses: dict[str, dict[str, Any]] = {}
        pending = [r for r in recs if r.final is None]
        live = self._live() if pending else {}
        for rec in pending:
            if rec.id in live:
                statuses[rec.id] = job_status(live[rec.id], "squeue", rec.name)
        if historical:
            statuses.update(self._finished(r for r in recs if r.id not in statuses))
        docs = [
            self._job_doc(rec, statuses[rec.id], include_spec)
            for rec in sorted(recs, key=lambda r: int(r.id))
            if rec.id in statuses
            and ("state" not in filters or statuses[rec.id]["state"] in filters["state"])
        ]
        return 200, _page(docs, offset, limit)

    # ------------------------------------------------------------------ cancel
    def _cancel(self, call: _Call) -> Response:
        res = self._compute_resource(call)
        rec = self._record(call, res)
        if rec.final is None:
            error = self.slurm.scancel([rec.id])
            if error is not None and not any(s in error for s in _SCANCEL_DONE):
                raise _unavailable(f"scancel: {error}")
        return 204, NO_CONTENT


# ---------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    """Run a gateway until SIGTERM/SIGINT; print its URLs, resources and a token as JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--resource", action="append", help="resource name (repeat; default perlmutter, frontier)"
    )
    parser.add_argument(
        "--version", action="append", choices=API_VERSIONS, help="API version (default both)"
    )
    parser.add_argument("--user", default="user", help="user of the printed token")
    parser.add_argument("--token-lifetime", type=float, default=86400.0)
    parser.add_argument("--no-idempotency-store", action="store_true")
    parser.add_argument("--public-status", action="store_true", help="no token on /status")
    parser.add_argument("--workdir", help="sbatch cwd (default: a new temporary directory)")
    parser.add_argument("--slurm-conf", help="slurm.conf (default: $SLURM_CONF)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())

    gateway = IRIGateway(
        host=args.host,
        port=args.port,
        resources=args.resource or ("perlmutter", "frontier"),
        versions=args.version or API_VERSIONS,
        slurm=LocalSlurm(args.slurm_conf),
        workdir=args.workdir,
        idempotency_store=not args.no_idempotency_store,
        status_auth=not args.public_status,
    )
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with gateway:
        info = {
            "base_url": gateway.base_url,
            "api_urls": {v: gateway.api_url(v) for v in gateway.versions},
            "admin_url": gateway.base_url + "/_admin",
            "resources": {r.name: r.id for r in gateway.resources},
            "user": args.user,
            "token": gateway.issue_token(args.user, args.token_lifetime),
            "workdir": str(gateway.workdir),
        }
        print(json.dumps(info), flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
