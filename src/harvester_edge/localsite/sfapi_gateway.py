"""A loopback NERSC Superfacility API (SFAPI v1.2) gateway backed by a real local Slurm.

Tests and demos need the official ``sfapi_client`` (and our SFAPI plugins) to talk to
something that behaves like api.nersc.gov: OAuth2 ``private_key_jwt`` tokens, asynchronous
submit/cancel tasks, bulk squeue/sacct queries, confined file utilities, machine status, and
the faults seen in production (see ``faults.Knobs``).  Jobs really run on the cluster named
by ``SLURM_CONF`` so scheduler semantics are real, not mocked.

The command utility (``POST /utilities/command/{machine}``, form field ``executable``) is
asynchronous like the real one: it answers ``{"task_id", "status": "OK", "error": null}`` and
the task's ``result`` is a JSON string ``{"status": "ok"|"error", "output": <stdout>,
"error": <stderr when the exit status is not 0, else null>, "exit_code": <int>}`` (the keys
``sfapi_client``'s ``Compute.run()`` reads).  Only a small allowlist runs, parsed with
``shlex`` and started with an argument list (never a shell): ``scancel`` with job ids (``N``,
``N_M``, ``N+M``), ``cat`` of files inside the gateway's file roots, ``tail -v -c N --`` of
such files (the batch-log tails the monitor reads), and the file commands a credential
delivery needs (``mkdir [-p] [-m MODE]``, ``chmod MODE``, ``mv [-f] SRC DST``, octal modes
only, every path inside the roots).  Anything else gets an error result with ``exit_code``
null (it never ran).

Also like the real API: ``DELETE /tasks/{id}`` cancels a task that has not reported yet,
``GET /account/?username=NAME`` answers that user's account (404 for an unknown user), job ids
may be array tasks ``N_M`` or heterogeneous components ``N+M``, and an unavailable machine
answers its compute routes with 503.

Run standalone::

    python -m harvester_edge.localsite.sfapi_gateway --port 8765 --key-file ~/.sfapi-local.pem
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import json
import logging
import os
import pwd
import re
import shlex
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from .faults import Knobs
from .files import MAX_DOWNLOAD, FileArea, OutsideRoots, SymlinkRefused
from .loopback import GatewayBook, HttpRequest, LoopbackServer, Response
from .sfapi_auth import AuthError, TokenAuthority, load_client_key, make_client_key
from .slurm import LocalSlurm, SlurmError, validate_jobids, validate_names
from .tasks import TaskStore

__all__ = ["SFAPIGateway", "make_client_key", "load_client_key", "main"]

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1.2"
TOKEN_PATH = "/oidc/token"
KWARG_KEYS = ("jobid", "name", "user", "partition")
#: Commands the command utility runs; everything else gets an error result.
COMMANDS = ("cat", "scancel", "tail", "mkdir", "chmod", "mv")
_CAT = next((c for c in ("/bin/cat", "/usr/bin/cat") if os.path.exists(c)), "cat")
_TAIL = next((c for c in ("/usr/bin/tail", "/bin/tail") if os.path.exists(c)), "tail")
_OCTAL_MODE = re.compile(r"^[0-7]{3,4}$")
_COMMAND_TIMEOUT = 30.0
_COMMAND_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}


class _NotFound(Exception):
    """Answer 404 (unknown machine or resource)."""


class _Refused(Exception):
    """A command line the command utility will not run (its task reports this error)."""


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    key: str  # counter key
    handler: str  # SFAPIGateway method name
    auth: bool = True


def _route(method: str, regex: str, key: str, handler: str, auth: bool = True) -> _Route:
    return _Route(method, re.compile(regex), key, handler, auth)


# Matched against the path below API_PREFIX; the first match wins.
_ROUTES: tuple[_Route, ...] = (
    _route("GET", r"^/status/?$", "status", "_status_all", auth=False),
    _route(
        "GET",
        r"^/status/outages(/planned)?(/(?P<name>[^/]+))?/?$",
        "outages",
        "_outages",
        auth=False,
    ),
    _route("GET", r"^/status/notes(/(?P<name>[^/]+))?/?$", "notes", "_outages", auth=False),
    _route("GET", r"^/status/(?P<name>[^/]+)/?$", "status", "_status_one", auth=False),
    _route("POST", r"^/compute/jobs/(?P<machine>[^/]+)/?$", "jobs_submit", "_submit"),
    _route("GET", r"^/compute/jobs/(?P<machine>[^/]+)/?$", "jobs_query", "_query"),
    _route("GET", r"^/compute/jobs/(?P<machine>[^/]+)/(?P<jobid>[^/]+)/?$", "job_query", "_query"),
    _route(
        "DELETE", r"^/compute/jobs/(?P<machine>[^/]+)/(?P<jobid>[^/]+)/?$", "jobs_cancel", "_cancel"
    ),
    _route("GET", r"^/tasks/?$", "tasks", "_tasks"),
    _route("GET", r"^/tasks/(?P<task_id>[^/]+)/?$", "task", "_task"),
    _route("DELETE", r"^/tasks/(?P<task_id>[^/]+)/?$", "task_delete", "_task_delete"),
    _route(
        "GET",
        r"^/utilities/(?P<op>ls|download)/(?P<machine>[^/]+)(/(?P<path>.*))?$",
        "utilities",
        "_files",
    ),
    _route("PUT", r"^/utilities/upload/(?P<machine>[^/]+)/(?P<path>.*)$", "utilities", "_upload"),
    _route("POST", r"^/utilities/command/(?P<machine>[^/]+)/?$", "command", "_command"),
    _route("GET", r"^/account/?$", "account", "_account"),
)


@dataclass
class _Call:
    """One authenticated API call as the route handlers see it."""

    params: dict[str, str]
    query: dict[str, list[str]]
    request: HttpRequest
    client_id: str = ""

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.request.body.decode("utf-8", "replace"), keep_blank_values=True)


def _first(values: dict[str, list[str]], key: str, default: str = "") -> str:
    got = values.get(key)
    return got[0] if got else default


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


class SFAPIGateway(GatewayBook):
    """Serve the SFAPI v1.2 subset ``sfapi_client`` 0.6 uses, on loopback, from real Slurm.

    :param machine: the one compute machine served (``/compute/jobs/{machine}``).
    :param slurm: Slurm CLI wrapper; default uses ``$SLURM_CONF``.
    :param knobs: fault/state knobs, shared so tests can change them at runtime.
    :param workdir: cwd of inline-script jobs and base of relative paths (default: a new
        temporary directory, so job output never lands in the caller's cwd).
    :param file_roots: directories the utilities and ``isPath`` submits may touch
        (default: ``[workdir]``).
    :param task_workers: size of the pool running sbatch/scancel in the background.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        machine: str = "perlmutter",
        slurm: LocalSlurm | None = None,
        knobs: Knobs | None = None,
        workdir: str | os.PathLike[str] | None = None,
        file_roots: list[str | os.PathLike[str]] | None = None,
        task_workers: int = 4,
    ) -> None:
        self.machine = machine
        self.slurm = slurm if slurm is not None else LocalSlurm()
        self.knobs = knobs if knobs is not None else Knobs()
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="sfapi-gw-"))
        self.files = FileArea(list(file_roots) if file_roots else [self.workdir], self.workdir)
        self.auth = TokenAuthority(lifetime=lambda: self.knobs.token_lifetime)
        self._task_workers = task_workers
        self.tasks = TaskStore(task_workers)
        self._server = LoopbackServer(self, host, port)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._jobs_created: list[str] = []

    # ------------------------------------------------------------------ lifecycle hooks
    def _restarted(self) -> None:
        """A fresh background-task pool (the old one was shut down)."""
        self.tasks = TaskStore(self._task_workers)

    def _stopped(self) -> None:
        """Queued background work is discarded."""
        self.tasks.shutdown()

    # ------------------------------------------------------------------ public state
    @property
    def api_url(self) -> str:
        """Base URL for ``sfapi_client.Client(api_base_url=...)``."""
        return self.base_url + API_PREFIX

    @property
    def token_url(self) -> str:
        """Token URL for ``sfapi_client.Client(token_url=...)``; also the expected ``aud``."""
        return self.base_url + TOKEN_PATH

    def register_client(self, client_id: str, public_key_pem: str | bytes) -> None:
        """Allow a client (id + public key of its key file) to obtain tokens."""
        self.auth.register_client(client_id, public_key_pem)

    # ------------------------------------------------------------------ dispatch
    def handle(self, request: HttpRequest) -> Response | None:
        """Route one request through the knobs to its handler (the loopback.App protocol)."""
        path = request.path
        if path.startswith("/_admin/"):
            return self._admin(request)
        route: _Route | None = None
        params: dict[str, str] = {}
        if path == TOKEN_PATH and request.method == "POST":
            rel, key = path, "token"
        else:
            rel = path[len(API_PREFIX) :] if path.startswith(API_PREFIX + "/") else ""
            route, params = self._match(request.method, rel)
            key = route.key if route else "unknown"
        with self._lock:
            self._counters[key] += 1

        if not self.knobs.wait_while_hung(self._stop):
            return None
        latency = self.knobs.latency
        if latency > 0 and self._stop.wait(latency):
            return None
        injected = self.knobs.draw_error(path, rel, key == "token")
        if injected is not None:
            return injected, {"detail": f"injected fault (HTTP {injected})"}

        if key == "token":
            return self._token(request)
        if route is None:
            return 404, {"detail": "Not Found"}
        call = _Call(params, parse_qs(request.query, keep_blank_values=True), request)
        if route.auth:
            client_id = self.auth.check_bearer(request.headers.get("Authorization"))
            if client_id is None:
                return self.knobs.expired_token_status, {"detail": "invalid or expired token"}
            call.client_id = client_id
        handler: Callable[[_Call], Response | None] = getattr(self, route.handler)
        try:
            return handler(call)
        except _NotFound as exc:
            return 404, {"status": "ERROR", "error": str(exc), "detail": str(exc)}
        except ValueError as exc:
            return 400, {"status": "ERROR", "error": str(exc), "output": []}

    @staticmethod
    def _match(method: str, rel: str) -> tuple[_Route | None, dict[str, str]]:
        for route in _ROUTES:
            if route.method != method:
                continue
            m = route.pattern.match(rel)
            if m:
                return route, {k: v for k, v in m.groupdict().items() if v is not None}
        return None, {}

    def _check_machine(self, name: str) -> None:
        if name != self.machine:
            raise _NotFound(f"unknown machine: {name[:40]}")

    # ------------------------------------------------------------------ auth & admin
    def _token(self, request: HttpRequest) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        host = request.headers.get("Host", "")
        audiences = {self.token_url} | ({f"http://{host}{TOKEN_PATH}"} if host else set())
        try:
            return 200, self.auth.issue(form, audiences), {"Cache-Control": "no-store"}
        except AuthError as exc:
            log.info("token request refused: %s", exc.description)
            return exc.status, exc.body()

    def _admin(self, request: HttpRequest) -> Response:
        """Knob control for tests and the demo CLI; loopback peers only, no token."""
        if not (request.client_ip.startswith("127.") or request.client_ip == "::1"):
            return 403, {"detail": "admin endpoints are loopback-only"}
        if request.method == "GET" and request.path == "/_admin/state":
            return 200, self.state()
        if request.method == "POST" and request.path == "/_admin/knobs":
            try:
                values = json.loads(request.body or b"{}")
                if not isinstance(values, dict):
                    raise ValueError("expected a JSON object of knob values")
                self.knobs.update(**values)
            except (ValueError, TypeError) as exc:
                return 400, {"detail": str(exc)}
            return 200, self.state()
        if request.method == "POST" and request.path == "/_admin/reset_counters":
            self.reset_counters()
            return 200, self.state()
        return 404, {"detail": "Not Found"}

    # ------------------------------------------------------------------ status & account
    def _status_doc(self) -> dict[str, Any]:
        return {
            "name": self.machine,
            "full_name": self.machine.capitalize(),
            "description": self.knobs.status_text(),
            "system_type": "compute",
            "notes": list(self.knobs.status_notes),
            "status": self.knobs.machine_status,
            "updated_at": datetime.now(timezone.utc).isoformat(),
        }

    def _status_all(self, call: _Call) -> Response:
        return 200, [self._status_doc()]

    def _status_one(self, call: _Call) -> Response:
        if call.params["name"] != self.machine:
            return 404, {"detail": f"resource not found: {call.params['name'][:40]}"}
        return 200, self._status_doc()

    def _outages(self, call: _Call) -> Response:
        # One resource: a flat list; all resources: a list per resource.
        name = call.params.get("name")
        if name is not None and name != self.machine:
            return 404, {"detail": f"resource not found: {name[:40]}"}
        if not self.knobs.maintenance or "/planned" not in call.request.path:
            return 200, []
        now = time.time()
        outage = {
            "name": self.machine,
            "start_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now - 60)),
            "end_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now + 3600)),
            "description": "scheduled maintenance",
            "notes": None,
            "status": "Active",
            "swo": None,
            "update_at": None,
        }
        return 200, [outage] if call.params.get("name") else [[outage]]

    def _account(self, call: _Call) -> Response:
        """The caller's account, or with ``?username=NAME`` that user's (404 if unknown)."""
        username = _first(call.query, "username")
        if username:
            try:
                entry = pwd.getpwnam(username)
            except (KeyError, ValueError):  # ValueError: embedded NUL
                return 404, {"detail": f"user not found: {username[:40]}"}
            uid, name = entry.pw_uid, entry.pw_name
        else:
            uid = os.getuid()
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
        return 200, {
            "uid": uid,
            "name": name,
            "firstname": None,
            "lastname": None,
            "email": None,
        }

    # ------------------------------------------------------------------ compute
    def _unavailable(self, **shape: Any) -> Response | None:
        """503 with a JSON error while the machine is down (``machine_status=unavailable``)."""
        if self.knobs.machine_status != "unavailable":
            return None
        message = f"{self.machine} is unavailable: {self.knobs.status_text()}"
        return 503, {**shape, "status": "ERROR", "error": message, "detail": message}

    def _submit(self, call: _Call) -> Response | None:
        self._check_machine(call.params["machine"])
        down = self._unavailable(task_id=None)
        if down is not None:
            return down
        form = call.form()
        job = _first(form, "job")
        if not job:
            return 400, {"task_id": None, "status": "ERROR", "error": "missing form field: job"}
        args = form.get("args", [])
        work: Callable[[], dict[str, Any]]
        if _truthy(_first(form, "isPath", "false")):
            try:
                script = self.files.resolve(job)
            except OutsideRoots as exc:
                return 403, {"task_id": None, "status": "ERROR", "error": str(exc)}
            work = partial(self._sbatch, None, script.parent, script, args)
        elif args:
            error = "args need a script path (isPath=true)"
            return 400, {"task_id": None, "status": "ERROR", "error": error}
        else:
            work = partial(self._sbatch, job, self.workdir, None, ())
        task = self.tasks.create(call.client_id, "submit", work, self.knobs.task_delay)
        stall = self.knobs.post_timeout
        if stall > 0:
            # The job must exist before the client's read timeout fires: wait for sbatch
            # (bounded), then sit out the rest of the stall.
            deadline = time.monotonic() + stall
            while not (task.future.done() or self._stop.is_set() or time.monotonic() > deadline):
                wait_futures([task.future], timeout=0.1)
            if self._stop.wait(max(0.0, deadline - time.monotonic())):
                return None
        late = self.knobs.draw_after_submit()
        if late is not None:
            # The job must exist when the client reads the error: wait for sbatch (bounded
            # by the Slurm command timeout), then fail.
            deadline = time.monotonic() + self.slurm.timeout + 5
            while not (task.future.done() or self._stop.is_set() or time.monotonic() > deadline):
                wait_futures([task.future], timeout=0.1)
            if self._stop.is_set():
                return None
            return late, {"detail": f"injected fault after submit (HTTP {late})"}
        return 200, {"task_id": task.id, "status": "OK", "error": None}

    def _sbatch(
        self, text: str | None, cwd: Path, script: Path | None, args: Sequence[str]
    ) -> dict[str, Any]:
        jobid, error = self.slurm.sbatch(text, cwd, script_path=script, args=list(args))
        if jobid is None:
            return {"status": "error", "jobid": None, "error": error}
        with self._lock:
            self._jobs_created.append(jobid)
        return {"status": "ok", "jobid": jobid, "error": None}

    def _query(self, call: _Call) -> Response:
        self._check_machine(call.params["machine"])
        down = self._unavailable(output=[])
        if down is not None:
            return down
        filters = self._kwargs(call.query.get("kwargs", []))
        if "jobid" in call.params:
            filters["jobids"] = validate_jobids([unquote(call.params["jobid"])])
        sacct = _truthy(_first(call.query, "sacct", "false"))
        command = self.slurm.sacct if sacct else self.slurm.squeue
        try:
            rows = command(**filters)
        except SlurmError as exc:
            # "Could not ask" must not look like "no jobs": status ERROR with the reason.
            return 200, {"status": "ERROR", "output": [], "error": str(exc)}
        return 200, {"status": "OK", "output": rows, "error": None}

    @staticmethod
    def _kwargs(values: list[str]) -> dict[str, Any]:
        """Parse repeated ``kwargs=key=value`` query items into LocalSlurm filters."""
        out: dict[str, Any] = {}
        for item in values:
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in KWARG_KEYS:
                raise ValueError(f"unsupported kwargs item; use one of {', '.join(KWARG_KEYS)}")
            parts = [v for v in value.split(",") if v.strip()]
            if key == "jobid":
                out.setdefault("jobids", []).extend(validate_jobids(parts))
            elif key == "name":
                out.setdefault("names", []).extend(validate_names(parts))
            else:
                out[key] = validate_names([value], key)[0]
        return out

    def _cancel(self, call: _Call) -> Response:
        self._check_machine(call.params["machine"])
        jobid = validate_jobids([unquote(call.params["jobid"])])[0]
        down = self._unavailable(task_id=None)
        if down is not None:
            return down

        def work() -> dict[str, Any]:
            error = self.slurm.scancel([jobid])
            return {"status": "ok" if error is None else "error", "error": error}

        task = self.tasks.create(call.client_id, "cancel", work, self.knobs.task_delay)
        return 200, {"task_id": task.id, "status": "OK", "error": None}

    def _task(self, call: _Call) -> Response:
        task = self.tasks.get(call.client_id, call.params["task_id"])
        if task is None:
            return 404, {"detail": "task not found"}
        return 200, task

    def _task_delete(self, call: _Call) -> Response:
        """Cancel a task not yet reported; answers its document (404 for unknown ids)."""
        task = self.tasks.cancel(call.client_id, call.params["task_id"])
        if task is None:
            return 404, {"detail": "task not found"}
        return 200, task

    def _tasks(self, call: _Call) -> Response:
        return 200, {"tasks": self.tasks.list(call.client_id)}

    # ------------------------------------------------------------------ command utility
    def _command(self, call: _Call) -> Response:
        self._check_machine(call.params["machine"])
        down = self._unavailable(task_id=None)
        if down is not None:
            return down
        form = call.form()
        if "executable" not in form:
            missing = {"loc": ["body", "executable"], "msg": "field required"}
            return 422, {"detail": [{**missing, "type": "value_error.missing"}]}
        work: Callable[[], dict[str, Any]]
        try:
            work = self._command_work(_first(form, "executable"))
        except _Refused as exc:
            work = partial(_refused, str(exc))
        task = self.tasks.create(call.client_id, "command", work, self.knobs.task_delay)
        return 200, {"task_id": task.id, "status": "OK", "error": None}

    def _command_work(self, line: str) -> Callable[[], dict[str, Any]]:
        """Check one command line against the allowlist; the work that runs it, or _Refused."""
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise _Refused(f"cannot parse the command line: {exc}") from None
        if not argv:
            raise _Refused("empty command line")
        name, args = argv[0], argv[1:]
        if name == "scancel":
            if not args:
                raise _Refused("scancel: give job ids (N, N_M or N+M)")
            try:
                ids = validate_jobids(args)
            except ValueError as exc:
                raise _Refused(f"scancel: only job ids are allowed here: {exc}") from None
            return partial(self._run_scancel, ids)
        if name == "cat":
            return partial(self._run_cat, self._cat_args(args))
        if name == "tail":
            return partial(self._run_tail, self._tail_args(args))
        if name in ("mkdir", "chmod", "mv"):
            return partial(self._run_file_command, name, self._file_args(name, args))
        allowed = ", ".join(COMMANDS)
        raise _Refused(f"{name[:40]}: command not allowed on this gateway (allowed: {allowed})")

    def _cat_args(self, args: list[str]) -> list[str]:
        """cat's file arguments, each confined like a download; no options, no stdin."""
        if not args:
            raise _Refused("cat: give one or more files")
        total = 0
        for arg in args:
            if arg.startswith("-"):
                raise _Refused(f"cat: options and stdin are not allowed here: {arg[:40]!r}")
            try:
                path = self.files.resolve(arg)
            except OutsideRoots as exc:
                raise _Refused(f"cat: {exc}") from None
            try:
                st = path.stat()
            except OSError:
                continue  # missing or unreadable: cat itself reports it
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                # A FIFO or device would block or stream forever: not through this utility.
                raise _Refused(f"cat: {arg[:80]}: not a regular file")
            total += st.st_size if stat.S_ISREG(st.st_mode) else 0
        if total > MAX_DOWNLOAD:
            raise _Refused(f"cat: files larger than {MAX_DOWNLOAD} bytes in total")
        return args

    def _tail_args(self, args: list[str]) -> list[str]:
        """Only ``tail -v -c N -- FILE...`` (the client's form), files confined like cat's."""
        if len(args) < 5 or args[:2] != ["-v", "-c"] or not args[2].isdigit() or args[3] != "--":
            raise _Refused("tail: only 'tail -v -c N -- FILE...' is allowed here")
        for arg in args[4:]:
            try:
                path = self.files.resolve(arg)
            except OutsideRoots as exc:
                raise _Refused(f"tail: {exc}") from None
            if path.exists() and not path.is_file():
                raise _Refused(f"tail: {arg[:80]}: not a regular file")
        return args

    def _run_tail(self, args: list[str]) -> dict[str, Any]:
        return self._run_reader("tail", _TAIL, args)

    def _run_cat(self, args: list[str]) -> dict[str, Any]:
        return self._run_reader("cat", _CAT, ["--", *args])

    def _run_reader(self, name: str, executable: str, args: list[str]) -> dict[str, Any]:
        """The real ``name`` (cat, tail) at ``executable``, with the arguments as typed (its
        messages name them so, and read "``name``: ...") from the directory relative paths
        were checked against; a timeout or a failed start is a refused command."""
        try:
            proc = subprocess.run(
                [name, *args],
                executable=executable,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                cwd=self.files.home,
                env=_COMMAND_ENV,
                timeout=_COMMAND_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return _refused(f"{name} timed out after {_COMMAND_TIMEOUT:g} s")
        except OSError as exc:
            return _refused(f"{name} could not run: {exc.strerror or exc}")
        return _command_result(proc.returncode, _text(proc.stdout), _text(proc.stderr))

    def _file_args(self, name: str, args: list[str]) -> list[str]:
        """mkdir/chmod/mv arguments: the few options delivery uses, octal modes, confined
        paths; anything else refused (the command never runs)."""
        options: list[str] = []
        rest = list(args)
        if name == "chmod":
            if not rest or not _OCTAL_MODE.match(rest[0]):
                raise _Refused("chmod: give an octal mode first (e.g. 600)")
            options, rest = [rest[0]], rest[1:]
        while rest and rest[0].startswith("-"):
            flag = rest.pop(0)
            if name == "mkdir" and flag == "-p" or name == "mv" and flag == "-f":
                options.append(flag)
            elif name == "mkdir" and flag == "-m" and rest and _OCTAL_MODE.match(rest[0]):
                options += [flag, rest.pop(0)]
            else:
                raise _Refused(f"{name}: option not allowed here: {flag[:40]!r}")
        if not rest or (name == "mv" and len(rest) != 2):
            raise _Refused(f"{name}: wrong number of paths")
        for arg in rest:
            try:
                self.files.resolve(arg, for_write=True)
            except OutsideRoots as exc:
                raise _Refused(f"{name}: {exc}") from None
        return [*options, "--", *rest]

    def _run_file_command(self, name: str, args: list[str]) -> dict[str, Any]:
        try:
            proc = subprocess.run(
                [name, *args], stdin=subprocess.DEVNULL, capture_output=True,
                cwd=self.files.home, env=_COMMAND_ENV, timeout=_COMMAND_TIMEOUT, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return _refused(f"{name} timed out after {_COMMAND_TIMEOUT:g} s")
        except OSError as exc:
            return _refused(f"{name} could not run: {exc.strerror or exc}")
        return _command_result(proc.returncode, _text(proc.stdout), _text(proc.stderr))

    def _run_scancel(self, ids: list[str]) -> dict[str, Any]:
        try:
            code, out, err = self.slurm.scancel_plain(ids)
        except SlurmError as exc:
            return _refused(str(exc))
        return _command_result(code, out, err)

    # ------------------------------------------------------------------ utilities
    @staticmethod
    def _request_path(raw: str | None) -> str:
        """``{machine}/{path}``: sfapi_client sends ``perlmutter//abs/path`` for absolute ones."""
        path = unquote(raw or "")
        return path if path else "."

    def _files(self, call: _Call) -> Response:
        self._check_machine(call.params["machine"])
        path = self._request_path(call.params.get("path"))
        try:
            if call.params["op"] == "ls":
                return 200, self.files.ls(path)
            return 200, self.files.download(path, _truthy(_first(call.query, "binary", "false")))
        except OutsideRoots as exc:
            return 403, {"status": "ERROR", "error": str(exc)}

    def _upload(self, call: _Call) -> Response:
        self._check_machine(call.params["machine"])
        path = self._request_path(call.params.get("path"))
        upload = _multipart_file(call.request.headers.get("Content-Type", ""), call.request.body)
        if upload is None:
            return 400, {"status": "ERROR", "error": "expected multipart form field: file"}
        try:
            return 200, self.files.upload(path, upload[0], upload[1])
        except (OutsideRoots, SymlinkRefused) as exc:
            return 403, {"status": "ERROR", "error": str(exc)}


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "replace")


def _command_result(code: int, stdout: str, stderr: str) -> dict[str, Any]:
    """A command task result as ``sfapi_client`` reads it (``status``/``output``/``error``).

    stderr goes to ``error`` when the exit status is not 0 (``Compute.run()`` raises with
    it); a successful command's stderr, if any, follows its stdout in ``output``.
    """
    if code == 0:
        return {"status": "ok", "output": stdout + stderr, "error": None, "exit_code": 0}
    error = stderr or f"exit status {code}"
    return {"status": "error", "output": stdout, "error": error, "exit_code": code}


def _refused(message: str) -> dict[str, Any]:
    """The result of a command line that never ran (refused, unparsable, timed out)."""
    return {"status": "error", "output": None, "error": message, "exit_code": None}


def _multipart_file(content_type: str, body: bytes) -> tuple[str | None, bytes] | None:
    """The ``file`` part of a multipart/form-data body as ``(filename, bytes)``."""
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return None
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            data = part.get_payload(decode=True)
            return part.get_filename(), data if isinstance(data, bytes) else b""
    return None


# ---------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    """Run a gateway until SIGTERM/SIGINT; print its URLs and client id as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--machine", default="perlmutter")
    parser.add_argument(
        "--key-file", required=True, help="sfapi_client key file; created (mode 0600) if missing"
    )
    parser.add_argument("--workdir", help="job cwd (default: a new temporary directory)")
    parser.add_argument("--file-root", action="append", help="allowed utilities root (repeat)")
    parser.add_argument("--slurm-conf", help="slurm.conf (default: $SLURM_CONF)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())

    key_file = Path(args.key_file).expanduser()
    if key_file.exists():
        client_id, public_pem = load_client_key(key_file)
    else:
        client_id, public_pem = make_client_key(key_file)
    gateway = SFAPIGateway(
        host=args.host,
        port=args.port,
        machine=args.machine,
        slurm=LocalSlurm(args.slurm_conf),
        workdir=args.workdir,
        file_roots=args.file_root,
    )
    gateway.register_client(client_id, public_pem)

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with gateway:
        info = {
            "api_url": gateway.api_url,
            "token_url": gateway.token_url,
            "admin_url": gateway.base_url + "/_admin",
            "machine": gateway.machine,
            "client_id": client_id,
            "key_file": str(key_file),
            "workdir": str(gateway.workdir),
        }
        print(json.dumps(info), flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
