"""A loopback Globus Compute web service (and its Globus Auth token route) on the real Slurm.

The real ``globus-compute-sdk`` 4.19 / ``globus-sdk`` 4.x talk to it unchanged: functions are
registered, batches submitted with a ``user_endpoint_config``, statuses polled; the submitted
functions (``ShellFunction`` running ``sbatch``/``squeue``/``sacct``/``scancel``, or any
Python function) really run on this machine, against the local Slurm, with arguments and
results packed by the SDK's own serializer.  Execution is described in ``gc_exec``, knobs in
``gc_knobs``, auth in ``gc_auth``.

Start it from a test (the helper registers one confidential client and starts serving)::

    from harvester_edge.localsite.gc_service import start_gc_service

    svc = start_gc_service(slurm=LocalSlurm(), work_dir=tmp_path, client_id="cid",
                           client_secret="secret")
    svc.url            # Compute base URL (globus_sdk.ComputeClientV2/V3 base_url=)
    svc.auth_url       # Auth base URL (GLOBUS_SDK_SERVICE_URL_AUTH), the same server
    svc.endpoint_id    # the Multi-User Endpoint's id
    svc.sdk_env()      # {GLOBUS_SDK_SERVICE_URL_AUTH, GLOBUS_COMPUTE_CLIENT_ID/SECRET}
    svc.knobs.update(endpoint_offline=True)   # or POST {url}/_admin/knobs
    svc.counters["submit"], svc.counters["throttled"], svc.jobs_created, svc.user_endpoints
    svc.task_states(), svc.block_of(task_id), svc.issue_token(client_id), svc.revoke_tokens()
    svc.stop()

Knobs (``gc_knobs.GCKnobs``): ``latency``; ``hang``; 5xx before anything is done
(``error_rate`` with ``error_paths=["/v3/endpoints"]`` for submits only, ``seed``); 5xx after
a submit's tasks were created (``error_after_submit``) or its connection closed
(``drop_after_submit``); ``burst_429`` (+ ``retry_after``); the 20-per-10-s limiter
(``rate_limit``, ``rate_window``; 0 disables); ``endpoint_offline``; results delayed
(``task_delay``); ``worker_lost_delay``; ``result_ttl`` (30 minutes); ``token_lifetime``.

``globus_compute_sdk.Client`` always talks to ``get_web_service_url()`` (production, or
``http://localhost:5000`` with ``local_compute_services=True``); point it here with
``svc.point_client(client)`` (it swaps the client's web client for one on ``svc.url``) or use
``globus_sdk.ComputeClientV2/V3(base_url=svc.url, ...)`` directly.

Routes (every Compute route needs ``Authorization: Bearer`` with a token from the token
route, else 401; ``/v2/version`` is public):

- ``POST /v2/oauth2/token`` (client_credentials, HTTP Basic or form client auth) and
  ``POST /v2/oauth2/token/introspect``.
- ``GET /v2/version[?service=all]``.
- ``POST /v2/functions``, ``POST /v3/functions`` -> ``{"function_uuid"}``;
  ``GET /v2/functions/{id}``.
- ``POST /v3/endpoints/{id}/submit`` -> ``{request_id, task_group_id, endpoint_id, tasks:
  {function_id: [task_id...]}}``; 404 unknown endpoint or function, 403 another identity's
  private function, 400 bad body or ``user_endpoint_config`` (naming the key), 413 a
  payload over 10 MB.  Each ``tasks`` entry of the answer lists that function's new task
  ids in payload order.
- ``POST /v2/batch_status {"task_ids": [...]}`` -> ``{"response": "batch", "results":
  {id: doc}}`` with every requested id: ``{task_id, status, details}`` and, once final,
  ``result`` (serialized) or ``exception`` (traceback text) and ``completion_t``; an
  unknown or abandoned id reads ``{task_id, status: "unknown", reason: "unknown task"}``
  (the SDK keeps such a task pending).  ``GET /v2/tasks/{id}`` -> the same doc (404 when
  unknown).  ``GET /v2/taskgroup/{id}``.
- ``GET /v2/endpoints/{id}/status`` -> ``{"status": "online"|"offline", "details"}``;
  ``GET /v2/endpoints/{id}`` (metadata), ``GET /v2/endpoints``,
  ``GET /v3/endpoints/{id}/allowed_functions``.
- Admin (loopback peers, no token): ``GET /_admin/state``, ``POST /_admin/knobs``,
  ``POST /_admin/reset_counters``, ``POST /_admin/client {"client_id", "client_secret"}``.

Run standalone: ``harvester-edge gateway --family gc --port 8767`` (or ``python -m
harvester_edge.localsite.gc_service``) prints the URLs and a client's credentials as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import pwd
import re
import secrets
import signal
import socket
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from .gc_auth import COMPUTE_RESOURCE_SERVER, Grant, OAuthError, TokenIssuer
from .gc_exec import ConfigError, TaskRunner, UserEndpointConfig, config_key
from .gc_knobs import GCKnobs
from .gc_tasks import TaskTable
from .loopback import GatewayBook, HttpRequest, LoopbackServer, Response
from .slurm import LocalSlurm

__all__ = ["GCService", "main", "start_gc_service"]

log = logging.getLogger(__name__)

API_VERSION = "1.23.0"
#: Globus Auth's access tokens live 48 hours.
TOKEN_LIFETIME = 172800.0
MAX_PAYLOAD = 10 * 1024 * 1024
_UUID = r"(?P<id>[0-9a-fA-F-]{36})"
_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(regex + r"\Z"), key)
    for method, regex, key in (
        ("POST", r"/v2/oauth2/token", "auth.token"),
        ("POST", r"/v2/oauth2/token/introspect", "auth.introspect"),
        ("GET", r"/v2/version", "version"),
        ("POST", r"/v[23]/functions", "register_function"),
        ("GET", rf"/v2/functions/{_UUID}", "get_function"),
        ("POST", rf"/v3/endpoints/{_UUID}/submit", "submit"),
        ("POST", r"/v2/batch_status", "batch_status"),
        ("GET", rf"/v2/tasks/{_UUID}", "get_task"),
        ("GET", rf"/v2/taskgroup/{_UUID}", "get_task_group"),
        ("GET", rf"/v2/endpoints/{_UUID}/status", "endpoint_status"),
        ("GET", rf"/v2/endpoints/{_UUID}", "endpoint_metadata"),
        ("GET", r"/v2/endpoints", "endpoints"),
        ("GET", rf"/v3/endpoints/{_UUID}/allowed_functions", "allowed_functions"),
    )
)


class _Refusal(Exception):
    """A Compute error answer ``{code, reason, http_status_code}``."""

    def __init__(self, status: int, code: str, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason
        self.headers = headers or {}

    def response(self) -> Response:
        body = {"code": self.code, "reason": self.reason, "http_status_code": self.status}
        return self.status, body, self.headers


class GCService(GatewayBook):
    """The loopback Globus Compute web service with one Multi-User Endpoint.

    :param slurm: Slurm CLI wrapper for blocks (default ``$SLURM_CONF``); the tasks' own
        ``sbatch``... reach the same cluster through ``SLURM_CONF`` in their environment.
    :param work_dir: the endpoint's working dir (task sandboxes ``<work_dir>/<task_id>``).
    :param knobs: faults (``gc_knobs.GCKnobs``).
    :param clock: wall clock of result retention (tests move it to abandon results).
    :param workers: size of the task pool (tasks beyond it wait in ``waiting-for-launch``).
    :param endpoint_id: the endpoint's id (default: a new UUID).
    """

    #: the confidential client ``start_gc_service`` registered
    client_id: str = ""
    client_secret: str = ""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        slurm: LocalSlurm | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        knobs: GCKnobs | None = None,
        clock: Callable[[], float] = time.time,
        workers: int = 4,
        endpoint_id: str | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        self.slurm = slurm if slurm is not None else LocalSlurm()
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="gc-ep-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.knobs = knobs if knobs is not None else GCKnobs(token_lifetime=TOKEN_LIFETIME)
        self.clock = clock
        self.endpoint_id = endpoint_id or str(uuid.uuid4())
        self.local_user = pwd.getpwuid(os.geteuid()).pw_name
        self.issuer = TokenIssuer()
        self._server = LoopbackServer(self, host, port)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._jobs_created: list[str] = []
        self._functions: dict[str, dict[str, Any]] = {}
        self.tasks = TaskTable(self.endpoint_id, self.knobs, clock)
        self._windows: dict[str, deque[float]] = {}
        self._housekeeper: threading.Thread | None = None
        self.workers = workers
        self.runner = TaskRunner(
            self.work_dir,
            self.slurm,
            self.tasks.on_state,
            self.tasks.on_done,
            self._on_job,
            workers=workers,
            poll_interval=poll_interval,
            host=socket.gethostname(),
            lost_delay=lambda: self.knobs.worker_lost_delay,
        )
        self.tasks.dispatch = self.runner.dispatch

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> GCService:
        if not self._server.running:
            self._stop.clear()
            self._server.start()
            self.runner.start()
            self._housekeeper = threading.Thread(
                target=self._housekeep, name="gc-housekeeper", daemon=True
            )
            self._housekeeper.start()
        return self

    def stop(self) -> None:
        """Stop serving and taking work; running workers and blocks are left to finish."""
        self._stop.set()
        self.knobs.wake()
        self._server.stop()
        self.runner.stop()
        if self._housekeeper is not None:
            self._housekeeper.join(5)
            self._housekeeper = None

    def __enter__(self) -> GCService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ public state
    @property
    def url(self) -> str:
        """Base URL of the Compute API."""
        return self._server.base_url

    @property
    def auth_url(self) -> str:
        """Base URL of Globus Auth (``GLOBUS_SDK_SERVICE_URL_AUTH``): the same server."""
        return self._server.base_url + "/"

    def register_client(self, client_id: str, client_secret: str) -> None:
        """Let a confidential client obtain tokens."""
        self.issuer.register_client(client_id, client_secret)

    def issue_token(self, client_id: str, lifetime: float | None = None) -> str:
        """A Compute bearer token for ``client_id`` (tests of expired or raw requests)."""
        life = self.knobs.token_lifetime if lifetime is None else float(lifetime)
        return self.issuer.issue(client_id, COMPUTE_RESOURCE_SERVER, life)

    def revoke_tokens(self) -> None:
        """Forget every issued token (clients must fetch new ones after their 401)."""
        self.issuer.revoke_all()

    def sdk_env(
        self, client_id: str | None = None, client_secret: str | None = None
    ) -> dict[str, str]:
        """Environment for a headless SDK client of this service (default: the client
        ``start_gc_service`` registered)."""
        return {
            "GLOBUS_SDK_SERVICE_URL_AUTH": self.auth_url,
            "GLOBUS_COMPUTE_CLIENT_ID": client_id or self.client_id,
            "GLOBUS_COMPUTE_CLIENT_SECRET": client_secret or self.client_secret,
        }

    def point_client(self, client: Any) -> Any:
        """Make a ``globus_compute_sdk.Client`` talk to this service (it ignores
        ``GLOBUS_SDK_SERVICE_URL_COMPUTE``): swap its web client for one on :attr:`url`,
        keeping its app or authorizer.  Returns the client."""
        from globus_compute_sdk.sdk.client import _ComputeWebClient

        auth = {"app": client.app} if client.app else {"authorizer": client.authorizer}
        client._compute_web_client = _ComputeWebClient(base_url=self.url, **auth)
        client.web_service_address = self.url
        return client

    @property
    def user_endpoints(self) -> dict[str, dict[str, Any]]:
        """User endpoints started so far (one per distinct ``user_endpoint_config``)."""
        return self.tasks.user_endpoints()

    def task_states(self) -> dict[str, str]:
        """Every kept task's current state (tests)."""
        return self.tasks.states()

    def block_of(self, task_id: str) -> str | None:
        """The Slurm job of a task's block (tests; never shown by the API)."""
        return self.tasks.job_of(task_id)

    def state(self) -> dict[str, Any]:
        return {
            **super().state(),
            "endpoint_id": self.endpoint_id,
            "user_endpoints": self.user_endpoints,
            "task_states": self.tasks.state_counts(),
            "blocks": self.runner.blocks,
        }

    def _on_job(self, job_id: str) -> None:
        with self._lock:
            self._jobs_created.append(job_id)

    def _housekeep(self) -> None:
        """Start held tasks once the endpoint is back; abandon results past their time."""
        while not self._stop.wait(0.2):
            try:
                self.tasks.release_held()
                self.tasks.abandon()
            except Exception:
                log.exception("housekeeping failed")

    # ------------------------------------------------------------------ dispatch
    def handle(self, request: HttpRequest) -> Response | None:
        """Route one request through the knobs to its handler (the loopback.App protocol)."""
        if request.path.startswith("/_admin/"):
            return self._admin(request)
        key, params = "unknown", {}
        for method, pattern, route_key in _ROUTES:
            match = pattern.match(request.path)
            if match and method == request.method:
                key, params = route_key, match.groupdict()
                break
        with self._lock:
            self._counters[key] += 1
        if not self.knobs.wait_while_hung(self._stop):
            return None
        if self.knobs.latency > 0 and self._stop.wait(self.knobs.latency):
            return None
        if self.knobs.draw_drop(request.path):
            return None
        is_token = key.startswith("auth.")
        injected = self.knobs.draw_error(request.path, request.path, is_token)
        if injected is not None:
            return _Refusal(injected, "INTERNAL_ERROR", f"injected fault ({injected})").response()
        try:
            if is_token:
                return self._auth(key, request)
            if key == "unknown":
                raise _Refusal(404, "NOT_FOUND", f"no route {request.method} {request.path}")
            grant = None if key == "version" else self._authenticate(request)
            if grant is not None:
                self._limit(grant.identity)
            handler: Callable[..., Response | None] = getattr(self, "_" + key)
            return handler(request, grant, **params)
        except _Refusal as exc:
            if exc.status == 429:
                with self._lock:
                    self._counters["throttled"] += 1  # answers the limiter refused
            return exc.response()

    def _auth(self, key: str, request: HttpRequest) -> Response:
        try:
            if key == "auth.token":
                return 200, self.issuer.token_answer(
                    request.headers, request.body, self.knobs.token_lifetime
                )
            return 200, self.issuer.introspect_answer(request.headers, request.body)
        except OAuthError as exc:
            return exc.status, exc.body()

    def _authenticate(self, request: HttpRequest) -> Grant:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        grant = None
        if scheme.lower() == "bearer" and token.strip():
            grant = self.issuer.check(token.strip(), COMPUTE_RESOURCE_SERVER)
        if grant is None:
            raise _Refusal(
                401,
                "UNAUTHORIZED",
                "missing, invalid or expired bearer token",
                {"WWW-Authenticate": "Bearer"},
            )
        return grant

    def _limit(self, identity: str) -> None:
        """The per-identity limiter (``rate_limit`` per ``rate_window``) and 429 bursts."""
        if self.knobs.take_burst():
            wait = self.knobs.retry_after
            raise _Refusal(429, "TOO_MANY_REQUESTS", "rate limit", {"Retry-After": _secs(wait)})
        limit, window = self.knobs.rate_limit, self.knobs.rate_window
        if limit <= 0:
            return
        now = time.monotonic()
        with self._lock:
            times = self._windows.setdefault(identity, deque())
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) >= limit:
                wait = times[0] + window - now
                headers = {"Retry-After": _secs(wait)}
                raise _Refusal(429, "TOO_MANY_REQUESTS", "rate limit exceeded", headers)
            times.append(now)

    def _json(self, request: HttpRequest) -> dict[str, Any]:
        try:
            body = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise _Refusal(400, "BAD_REQUEST", "request body is not JSON") from None
        if not isinstance(body, dict):
            raise _Refusal(400, "BAD_REQUEST", "request body must be a JSON object")
        return body

    # ------------------------------------------------------------------ routes
    def _version(self, request: HttpRequest, grant: Grant | None) -> Response:
        if parse_qs(request.query).get("service") == ["all"]:
            return 200, {
                "api": API_VERSION,
                "min_sdk_version": "1.0.0",
                "min_ep_version": "1.0.0",
                "min_endpoint_version": "1.0.0",
                "git_sha": "loopback",
            }
        return 200, API_VERSION

    def _register_function(self, request: HttpRequest, grant: Grant) -> Response:
        body = self._json(request)
        code, name = body.get("function_code"), body.get("function_name")
        if not isinstance(code, str) or not code or not isinstance(name, str) or not name:
            raise _Refusal(400, "BAD_REQUEST", "function_code and function_name are required")
        function_id = str(uuid.uuid4())
        doc = {
            "function_uuid": function_id,
            "function_name": name,
            "function_code": code,
            "serialized": body.get("serialized", True) is not False,
            "description": body.get("description"),
            "metadata": body.get("meta") or {},
            "owner": grant.identity,
            "public": body.get("public") is True,
        }
        with self._lock:
            self._functions[function_id] = doc
        return 200, {"function_uuid": function_id}

    def _get_function(self, request: HttpRequest, grant: Grant, id: str) -> Response:  # noqa: A002
        with self._lock:
            doc = self._functions.get(id)
        if doc is None:
            raise _Refusal(404, "FUNCTION_NOT_FOUND", f"function {id} not found")
        if doc["owner"] != grant.identity and not doc["public"]:
            raise _Refusal(403, "FUNCTION_ACCESS_FORBIDDEN", f"function {id} is not shared")
        return 200, {k: v for k, v in doc.items() if k not in ("owner", "serialized", "public")}

    def _check_endpoint(self, endpoint_id: str) -> None:
        if endpoint_id != self.endpoint_id:
            raise _Refusal(404, "ENDPOINT_NOT_FOUND", f"endpoint {endpoint_id} not found")

    def _submit(self, request: HttpRequest, grant: Grant, id: str) -> Response | None:  # noqa: A002
        self._check_endpoint(id)
        body = self._json(request)
        tasks = body.get("tasks")
        if not isinstance(tasks, dict) or not tasks:
            raise _Refusal(400, "BAD_REQUEST", "tasks must map function ids to payload lists")
        try:
            config = UserEndpointConfig.parse(body.get("user_endpoint_config"))
        except ConfigError as exc:
            raise _Refusal(400, "INVALID_USER_ENDPOINT_CONFIG", str(exc)) from None
        with self._lock:
            functions = {f: self._functions.get(f) for f in tasks}
        for function_id, payloads in tasks.items():
            fn = functions[function_id]
            if fn is None:
                raise _Refusal(404, "FUNCTION_NOT_FOUND", f"function {function_id} not found")
            if fn["owner"] != grant.identity and not fn["public"]:
                reason = f"function {function_id} is not shared with this identity"
                raise _Refusal(403, "FUNCTION_ACCESS_FORBIDDEN", reason)
            if not isinstance(payloads, list) or not all(isinstance(p, str) for p in payloads):
                raise _Refusal(400, "BAD_REQUEST", f"tasks.{function_id} must be payload strings")
            if any(len(p) > MAX_PAYLOAD for p in payloads):
                raise _Refusal(413, "PAYLOAD_TOO_LARGE", "a task payload exceeds 10 MB")
        group = str(body.get("task_group_id") or uuid.uuid4())
        raw_config = body.get("user_endpoint_config") or {}
        calls = [(f, functions[f] or {}, p) for f, payloads in tasks.items() for p in payloads]
        created = self.tasks.create(
            grant.identity, calls, group, config, config_key(raw_config), raw_config
        )
        answer = {
            "request_id": str(uuid.uuid4()),
            "task_group_id": group,
            "endpoint_id": self.endpoint_id,
            "tasks": {f: [t.id for t in created if t.function_id == f] for f in tasks},
        }
        status = self.knobs.draw_after_submit()
        if status is not None:  # tasks exist, the answer is lost
            return _Refusal(status, "INTERNAL_ERROR", "injected fault after submit").response()
        if self.knobs.draw_drop_after_submit():
            return None
        return 200, answer

    def _batch_status(self, request: HttpRequest, grant: Grant) -> Response:
        ids = self._json(request).get("task_ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise _Refusal(400, "BAD_REQUEST", "task_ids must be a list of task ids")
        return 200, {"response": "batch", "results": self.tasks.docs(grant.identity, ids)}

    def _get_task(self, request: HttpRequest, grant: Grant, id: str) -> Response:  # noqa: A002
        doc = self.tasks.doc(grant.identity, id)
        if doc is None:
            raise _Refusal(404, "TASK_NOT_FOUND", f"task {id} not found")
        return 200, doc

    def _get_task_group(self, request: HttpRequest, grant: Grant, id: str) -> Response:  # noqa: A002
        ids = self.tasks.group(id)
        if ids is None:
            raise _Refusal(404, "TASK_GROUP_NOT_FOUND", f"task group {id} not found")
        return 200, {
            "taskgroup_id": id,
            "create_websockets_queue": False,
            "tasks": [{"id": i} for i in ids],
        }

    def _endpoint_status(self, request: HttpRequest, grant: Grant, id: str) -> Response:  # noqa: A002
        self._check_endpoint(id)
        offline = self.knobs.endpoint_offline
        pending = self.tasks.pending()
        details = {
            "total_workers": 0 if offline else self.workers,
            "idle_workers": 0,
            "pending_tasks": pending,
            "outstanding_tasks": pending,
            "managers": 0 if offline else 1,
        }
        return 200, {"status": "offline" if offline else "online", "details": details}

    def _endpoint_metadata(self, request: HttpRequest, grant: Grant, id: str) -> Response:  # noqa: A002
        self._check_endpoint(id)
        return 200, self._endpoint_doc()

    def _endpoint_doc(self) -> dict[str, Any]:
        return {
            "uuid": self.endpoint_id,
            "name": "loopback-mep",
            "display_name": "Loopback Multi-User Endpoint (local Slurm)",
            "multi_user": True,
            "public": False,
            "endpoint_config": "display_name: Loopback MEP\n",
            "user_config_template": "",
            "user_config_schema": {},
            "description": "harvester-edge loopback Globus Compute endpoint",
            "hostname": socket.gethostname(),
            "local_user": self.local_user,
            "ip_address": "127.0.0.1",
            "endpoint_version": _sdk_version(),
            "sdk_version": _sdk_version(),
        }

    def _endpoints(self, request: HttpRequest, grant: Grant) -> Response:
        doc = self._endpoint_doc()
        return 200, [
            {"uuid": doc["uuid"], "name": doc["name"], "display_name": doc["display_name"]}
        ]

    def _allowed_functions(self, request: HttpRequest, grant: Grant, id: str) -> Response:  # noqa: A002
        self._check_endpoint(id)
        return 200, {"endpoint_id": id, "restricted": False, "functions": []}

    # ------------------------------------------------------------------ admin
    def _admin(self, request: HttpRequest) -> Response:
        """Knob control for tests and the demo CLI; loopback peers only, no token."""
        if not (request.client_ip.startswith("127.") or request.client_ip == "::1"):
            return 403, {"detail": "admin endpoints are loopback-only"}
        if request.method == "GET" and request.path == "/_admin/state":
            return 200, self.state()
        if request.method != "POST":
            return 404, {"detail": "unknown admin route"}
        try:
            values = json.loads(request.body or b"{}")
            if not isinstance(values, dict):
                raise ValueError("expected a JSON object")
            if request.path == "/_admin/knobs":
                self.knobs.update(**values)
            elif request.path == "/_admin/client":
                self.register_client(str(values["client_id"]), str(values["client_secret"]))
            elif request.path == "/_admin/reset_counters":
                self.reset_counters()
            else:
                return 404, {"detail": "unknown admin route"}
        except (ValueError, TypeError, KeyError) as exc:
            return 400, {"detail": str(exc)}
        return 200, self.state()


def _secs(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def _sdk_version() -> str:
    from globus_compute_sdk.version import __version__

    return str(__version__)


def start_gc_service(
    slurm: LocalSlurm | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    **options: Any,
) -> GCService:
    """Start a service with one confidential client registered (ids made up when not given:
    read them back as ``svc.client_id``/``svc.client_secret``).  ``options`` go to
    :class:`GCService` (``knobs``, ``clock``, ``workers``, ``endpoint_id``, ``port``...)."""
    service = GCService(slurm=slurm, work_dir=work_dir, **options)
    service.client_id = client_id or str(uuid.uuid4())
    service.client_secret = client_secret or secrets.token_urlsafe(24)
    service.register_client(service.client_id, service.client_secret)
    return service.start()


def main(argv: list[str] | None = None) -> int:
    """Run the service until SIGTERM/SIGINT; print its URLs and a client as JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--client-id", help="confidential client id (default: new UUID)")
    parser.add_argument("--work-dir", help="endpoint working dir (default: a new temp dir)")
    parser.add_argument("--endpoint-id", help="the endpoint's UUID (default: new)")
    parser.add_argument("--slurm-conf", help="slurm.conf (default: $SLURM_CONF)")
    parser.add_argument("--no-rate-limit", action="store_true")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    knobs = GCKnobs(token_lifetime=TOKEN_LIFETIME, rate_limit=0 if args.no_rate_limit else 20)
    service = start_gc_service(
        LocalSlurm(args.slurm_conf),
        args.work_dir,
        args.client_id,
        os.environ.get("GLOBUS_COMPUTE_CLIENT_SECRET"),
        host=args.host,
        port=args.port,
        knobs=knobs,
        endpoint_id=args.endpoint_id,
    )
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    try:
        info = {
            "url": service.url,
            "auth_url": service.auth_url,
            "admin_url": service.url + "/_admin",
            "endpoint_id": service.endpoint_id,
            "work_dir": str(service.work_dir),
            **service.sdk_env(),
        }
        print(json.dumps(info), flush=True)
        while not done.wait(0.5):
            pass
    finally:
        service.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
