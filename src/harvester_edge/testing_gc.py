"""An in-process Globus Compute web service over a ``FakeFacility``: the real SDKs, no network.

``GCDouble`` mounts, on ``responses`` (the ``test`` extra), the routes the GC client calls
(Globus Auth's client-credentials token route, ``/v3/functions``,
``/v3/endpoints/{id}/submit``, ``/v2/batch_status``, ``/v2/endpoints/{id}/status``), so
globus-sdk sends its real requests and globus-compute-sdk packs and unpacks the real
payloads: every submitted task is unpacked with ``ComputeSerializer`` and every result is a
serialized ``ShellResult``.  The answers come from a ``FakeFacility`` of the ``tasks``
profile, whose scripted faults apply:

- an ``hedge_sbatch`` task is ``fake.submit`` (the fake's own submit task stands for it); its
  status is ``fake.resolve``: pending, sbatch's job id, or sbatch's error (return code 1);
- an ``hedge_probe`` task asks ``fake.poll``/``fake.find`` when it is submitted (the fake
  starts its probe) and again when its status is read (the fake answers, or the task stays
  pending); files are ``fake.read_texts`` and log ends ``fake.read_tails`` (counted as
  ``tail``) when read.  The task id carries the fake's probe
  name, so a probe the fake never answers is recognisable in the plugins' diagnoses;
- an ``hedge_scancel`` task is ``fake.cancel`` likewise, answered in scancel's words;
- an ``hedge_pilot`` task (task mode) is ``fake.submit``: the fake's job is the block, and
  the probe's markers name it (its return code once the job ended normally).

A fault becomes what the service would answer: network faults are raised from ``requests``
(not sent, read timeout after ``hang_seconds`` for ``hang``, reset), ``busy_429`` a 429 with
``Retry-After: 0``, ``created_then_5xx`` that status after the task exists, ``auth`` a 401,
other refusals a 400.  ``calls`` counts requests per route.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import responses
from globus_compute_sdk.sdk.shell_function import ShellResult
from globus_compute_sdk.serialize import ComputeSerializer

from .edge.jobs import JobRecord
from .edge.spec import JobSpec
from .errors import EdgeAPIError, EdgeAuthError, EdgeNetworkError
from .facilities import gc_wire as wire
from .facilities.base import Deferred
from .testing import FakeFacility
from .testing_http import MountedDouble, requests_network_error

__all__ = ["GCDouble"]

DEFAULT_SERVICE_URL = "https://compute.double.invalid"
DEFAULT_AUTH_URL = "https://auth.double.invalid"
_NAME = re.compile(r"^#SBATCH\s+(?:--job-name[= ]|-J\s*)(\S+)", re.MULTILINE)

Answer = tuple[int, dict[str, str], str]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body)


def _text_lines(
    paths: list[str], texts: dict[str, str | None], found: str, missing: str
) -> list[str]:
    """The probe's lines for the files (or log ends) read: ``found|path|text`` (base64) for
    one read, ``missing|path`` for one that is not there; a path not answered has none."""
    lines = []
    for path in paths:
        if path in texts:
            text, key = texts[path], wire.b64(path)
            lines.append(f"{missing}|{key}" if text is None else f"{found}|{key}|{wire.b64(text)}")
    return lines


class _Fail(Exception):
    def __init__(self, answer: Answer):
        self.answer = answer


def _fault_answer(exc: EdgeAPIError) -> Answer:
    if isinstance(exc, EdgeNetworkError):
        raise requests_network_error(exc)
    status = exc.status or (401 if isinstance(exc, EdgeAuthError) else 400)
    headers = {"Retry-After": "0"} if status == 429 else {}
    words = re.sub(r"^fake \w+: (?:HTTP \d+: )?", "", str(exc))[:200]
    return _json(status, {"code": "FAULT", "message": words}, headers)


class GCDouble(MountedDouble):
    """Globus Compute's routes for one endpoint over ``facility`` (a ``tasks`` FakeFacility)."""

    def __init__(
        self,
        facility: FakeFacility,
        *,
        service_url: str = DEFAULT_SERVICE_URL,
        auth_url: str = DEFAULT_AUTH_URL,
        endpoint_id: str = "",
        client_id: str = "",
    ) -> None:
        self.facility = facility
        self.service_url = service_url.rstrip("/")
        self.auth_url = auth_url.rstrip("/")
        self.endpoint_id = endpoint_id or str(uuid.uuid4())
        self.client_id = client_id or str(uuid.uuid4())
        self.secret = "gc-double-secret-" + uuid.uuid4().hex
        self.token = "gc-double-token-" + uuid.uuid4().hex
        self.calls: Counter[str] = Counter()
        self.functions: dict[str, str] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self._serde = ComputeSerializer()
        self._lock = threading.RLock()
        self._ids = itertools.count(1)

    # set-up ---------------------------------------------------------------------------
    def write_secret(self, path: Path) -> Path:
        path.write_text(self.secret + "\n")
        os.chmod(path, 0o600)
        return path

    def options(self) -> dict[str, Any]:
        return {
            "endpointId": self.endpoint_id,
            "serviceUrl": self.service_url,
            "authUrl": self.auth_url,
            "clientId": self.client_id,
        }

    def start(self) -> GCDouble:
        mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        svc, ep = re.escape(self.service_url), re.escape(self.endpoint_id)
        routes = [
            ("POST", re.compile(re.escape(self.auth_url) + r"/v2/oauth2/token$"), self._token),
            ("POST", re.compile(svc + r"/v3/functions$"), self._register),
            ("POST", re.compile(svc + rf"/v3/endpoints/{ep}/submit$"), self._submit),
            ("POST", re.compile(svc + r"/v2/batch_status$"), self._status),
            ("GET", re.compile(svc + rf"/v2/endpoints/{ep}/status$"), self._health),
        ]
        for method, url, handler in routes:
            mock.add_callback(method, url, callback=self._guard(handler))
        mock.start()  # no job encoder is wrapped (``_mount``'s): stop unmounts the mock alone
        self._mock = mock
        return self

    def _guard(self, handler: Any) -> Any:
        def call(request: Any) -> Answer:
            self.calls[handler.__name__.strip("_")] += 1
            if handler.__name__ != "_token":
                if request.headers.get("Authorization") != f"Bearer {self.token}":
                    return _json(401, {"code": "UNAUTHORIZED", "error": "bad token"})
            try:
                return handler(request)
            except _Fail as fail:
                return fail.answer

        return call

    # routes -----------------------------------------------------------------------------
    def _token(self, request: Any) -> Answer:
        import base64
        from urllib.parse import unquote

        problem = self.facility.credential_answer.problem
        scheme, _, value = str(request.headers.get("Authorization") or "").partition(" ")
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            user = password = ""
        if problem or scheme != "Basic" or (unquote(user), unquote(password)) != (
            self.client_id, self.secret,
        ):  # fmt: skip
            return _json(401, {"error": "invalid_client"})
        return _json(
            200,
            {
                "access_token": self.token,
                "expires_in": 172800,
                "token_type": "Bearer",
                "resource_server": "funcx_service",
                "scope": "https://auth.globus.org/scopes/facd7ccc/all",
                "other_tokens": [],
            },
        )

    def _register(self, request: Any) -> Answer:
        body = json.loads(request.body)
        fn = self._serde.deserialize(self._serde.unpack_buffers(body["function_code"])[0])
        fid = str(uuid.uuid4())
        with self._lock:
            self.functions[fid] = fn.__name__
        return _json(200, {"function_uuid": fid})

    def _health(self, request: Any) -> Answer:
        try:
            health = self.facility.health()
        except EdgeAPIError as exc:
            return _fault_answer(exc)
        if health.available:
            return _json(200, {"status": "online"})
        reason = f"{health.state}: {health.message}".strip(": ")
        return _json(200, {"status": "offline", "details": {"reason": reason}})

    def _submit(self, request: Any) -> Answer:
        body = json.loads(request.body)
        out: dict[str, list[str]] = {}
        failure: EdgeAPIError | None = None
        hang = self.facility.hang_seconds
        try:
            for fid, payloads in (body.get("tasks") or {}).items():
                name = self.functions.get(fid)
                if name is None:
                    return _json(404, {"code": "FUNCTION_NOT_FOUND", "error": fid})
                for payload in payloads:
                    # every task of the request meets its own scripted fault (one fake
                    # operation each); the request itself hangs once
                    _, ser_kwargs = self._serde.unpack_buffers(payload)
                    kwargs = self._serde.deserialize(ser_kwargs)
                    try:
                        task_id = self._start(name, kwargs)
                    except EdgeAPIError as exc:
                        if isinstance(exc, EdgeNetworkError):
                            self.facility.hang_seconds = 0.0
                        failure = failure or exc
                        continue
                    out.setdefault(fid, []).append(task_id)
        finally:
            self.facility.hang_seconds = hang
        if failure is not None:
            return _fault_answer(failure)
        return _json(
            200,
            {"request_id": str(uuid.uuid4()), "task_group_id": str(uuid.uuid4()),
             "endpoint_id": self.endpoint_id, "tasks": out},
        )  # fmt: skip

    def _start(self, name: str, kwargs: dict[str, str]) -> str:
        fake = self.facility
        n = next(self._ids)
        if name in (wire.SBATCH_NAME, wire.PILOT_NAME):
            script = wire.unb64(kwargs["script"])
            m = _NAME.search(script)
            tag = m.group(1) if m else f"unnamed-{n}"
            record: dict[str, Any] = {"kind": name, "tag": tag, "handle": None}
            spec = JobSpec(tag=tag, script=script, work_dir=wire.unb64(kwargs["cwd"]),
                           nodes=1, walltime_s=0)  # fmt: skip
            # the task id is the fake's own submit task's (tests read the fake's tasks by it)
            before = set(fake.tasks)
            try:
                handle = str(fake.submit(spec).handle)
            except EdgeAPIError:
                made = [t for t in list(fake.tasks) if t not in before]
                if made:  # created_then_*: the fake made its task before failing
                    record["handle"] = made[-1]
                    with self._lock:
                        self.tasks[made[-1]] = record
                raise
            record["handle"] = handle
            with self._lock:
                self.tasks[handle] = record
            return handle
        if name == wire.PROBE_NAME:
            ids = [i for i in wire.unb64(kwargs["ids"]).split(",") if i]
            tags = [t for t in wire.unb64(kwargs["names"]).split(",") if t]
            files = [f for f in wire.unb64(kwargs["files"]).split("\n") if f]
            tails = [f for f in wire.unb64(kwargs.get("tails", "")).split("\n") if f]
            tail_bytes = int(wire.unb64(kwargs.get("tailbytes", "")) or 0)
            label = f"f{n}"
            if ids:
                first = fake.poll(ids)
                label = first.probe if isinstance(first, Deferred) else label
            if tags:
                found = fake.find(tags)
                label = found.probe if isinstance(found, Deferred) else label
            task_id = f"gc{n}-{label}"
            record = {"kind": name, "ids": ids, "tags": tags, "files": files,
                      "tails": tails, "tail_bytes": tail_bytes,
                      "marks": wire.unb64(kwargs["marks"]), "first": True}  # fmt: skip
        elif name == wire.SCANCEL_NAME:
            ids = wire.unb64(kwargs["ids"]).split()
            cancelled = fake.cancel(ids)
            label = cancelled.probe if isinstance(cancelled, Deferred) else f"c{n}"
            task_id = f"gc{n}-{label}"
            record = {"kind": name, "ids": ids,
                      "answer": None if isinstance(cancelled, Deferred) else cancelled}  # fmt: skip
        else:
            raise EdgeAPIError(f"unknown function {name}", status=400)
        with self._lock:
            self.tasks[task_id] = record
        return task_id

    def _status(self, request: Any) -> Answer:
        ids = json.loads(request.body).get("task_ids") or []
        results: dict[str, Any] = {}
        for task_id in ids:
            with self._lock:
                record = self.tasks.get(task_id)
            if record is None:
                continue
            try:
                entry = self._entry(task_id, record)
            except EdgeAPIError as exc:
                return _fault_answer(exc)
            if entry is not None:
                results[task_id] = entry
        return _json(200, {"response": "batch", "results": results})

    def _done(self, task_id: str, stdout: str, stderr: str = "", rc: int = 0) -> dict[str, Any]:
        result = ShellResult("(shell function)", stdout, stderr, rc,
                             None if rc == 0 else "subprocess.CalledProcessError")  # fmt: skip
        return {"task_id": task_id, "status": "success", "completion_t": "0",
                "result": self._serde.serialize(result)}  # fmt: skip

    def _entry(self, task_id: str, record: dict[str, Any]) -> dict[str, Any] | None:
        fake = self.facility
        kind = record["kind"]
        pending = {"task_id": task_id, "status": "waiting-for-launch"}
        if kind in (wire.SBATCH_NAME, wire.PILOT_NAME):
            handle = record["handle"]
            res = fake.resolve([handle]).get(handle) if handle else None
            if res is None:
                return None  # the service lost it
            if res.state == res.PENDING:
                return pending
            if res.state == res.ERROR:
                text = res.error if "sbatch:" in res.error else f"sbatch: error: {res.error}"
                if kind == wire.PILOT_NAME:  # the provider got no block: a task failure
                    return {"task_id": task_id, "status": "failed", "completion_t": "0",
                            "exception": f"Traceback ...\nSubmitException: {text}"}  # fmt: skip
                return self._done(task_id, "", text + "\n", 1)
            if kind == wire.SBATCH_NAME:
                return self._done(task_id, f"{res.job_id}\n")
            job = fake.jobs.get(str(res.job_id))
            if job is None or not job.state.is_final:
                return {"task_id": task_id, "status": "running"}
            return self._done(task_id, "", "", job.exit_code or 0)
        if kind == wire.SCANCEL_NAME:
            answer = record["answer"]
            if answer is None:
                got = fake.cancel(record["ids"])
                if isinstance(got, Deferred):
                    return pending
                answer = record["answer"] = got
            lines = []
            for job, outcome in answer.items():
                if outcome.kind != outcome.ACCEPTED:
                    text = re.sub(r"^scancel: error: ", "", outcome.text)
                    if f"job id {job}" not in text:
                        text = f"Kill job error on job id {job}: {text}"
                    lines.append(f"scancel: error: {text}")
            return self._done(task_id, "", "\n".join(lines), 1 if lines else 0)
        return self._probe_entry(task_id, record, pending)

    def _probe_entry(
        self, task_id: str, record: dict[str, Any], pending: dict[str, Any]
    ) -> dict[str, Any]:
        fake = self.facility
        if "stdout" in record:
            return self._done(task_id, record["stdout"])
        records: list[JobRecord] = []
        if record["ids"]:
            got = fake.poll(record["ids"])
            if isinstance(got, Deferred):
                return pending
            records += got.values()
        if record["tags"]:
            found = fake.find(record["tags"])
            if isinstance(found, Deferred):
                return pending
            records += [r for recs in found.values() for r in recs]
        if not (record["ids"] or record["tags"] or record["files"] or record["tails"]):
            # the squeue listing
            fake.live_tags("")  # the fake's "live" faults and count
            records += [fake._record(j, accounting=False) for j in fake.live_jobs()]
        lines = []
        for r in records:
            exit_text = "" if r.exit_code is None else f"{r.exit_code}:{r.signal or 0}"
            if r.confirmed_final:
                lines.append(f"A|{r.job_id}|{r.name}|{r.native}|{exit_text}|{r.nodes}")
            else:
                lines.append(f"Q|{r.job_id}|{r.name}|{r.native}|{r.reason}|{r.nodes}")
        if record["files"]:
            lines += _text_lines(record["files"], fake.read_texts(record["files"]), "F", "N")
        if record["tails"]:
            ends = fake.read_tails(record["tails"], record["tail_bytes"])
            lines += _text_lines(record["tails"], ends, "T", "U")
        if record["marks"]:
            lines += self._markers()
        record["stdout"] = "\n".join(lines + ["END"]) + "\n"
        return self._done(task_id, record["stdout"])

    def _markers(self) -> list[str]:
        fake = self.facility
        out = []
        with self._lock:
            pilots = [r for r in self.tasks.values() if r["kind"] == wire.PILOT_NAME]
        for rec in pilots:
            handle = rec["handle"]
            task = fake.tasks.get(handle) if handle else None
            if task is None or not task.done or not task.job_id:
                continue
            job = fake.jobs.get(task.job_id)
            rc = ""
            if job is not None and job.state.is_final and job.state.long_name in (
                "COMPLETED", "FAILED",
            ):  # fmt: skip
                rc = str(job.exit_code or 0)
            out.append(f"M|{rec['tag']}|{task.job_id}|{rc}")
        return out
