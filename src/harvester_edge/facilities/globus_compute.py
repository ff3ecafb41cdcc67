"""Globus Compute through a Multi-User Endpoint (MEP): the ``FacilityClient`` for GC.

One client per credential, web service and endpoint (``registry.shared_client``), on the
real SDKs (globus-sdk's ``ComputeClientV2``/``V3`` requests, globus-compute-sdk's
``ShellFunction``, ``Batch`` and serializer; ``gc_http``, ``gc_functions``, ``gc_wire``).

Batch mode (default): shell functions on the login node (the user endpoint's provider is
``local``): ``submit`` runs ``sbatch`` (the script as data) and answers the task
(``async_submit``); ``resolve`` reads the tasks' raw batch status (failed ones included) and
sbatch's job id.  Questions are probes (``deferred_queries``): ``poll``, ``find`` and
``read_texts``/``read_tails`` start ONE probe task for their question (one squeue, one sacct
per kind, the summaries, the batch logs' ends, the markers) and answer ``Deferred``; a later
call reads every probe and cancel in flight with ONE batch-status request (shared with the
submit tasks being resolved) and answers from it.  A question answered by a probe read this
call (or within ``status_share``) costs nothing more; one in flight that covers it is
waited for.  So monitoring any number of workers costs one request per cycle, starting and
reading in turn.

Task mode: the pilot runs as the GC task itself, on blocks of a user endpoint whose provider
is Slurm (``userEndpointConfig``); probes and cancels run on the login node
(``probeEndpointConfig``, provider ``local``).  The pilot task writes ``$SLURM_JOB_ID`` to a
marker (``<markerDir>/<tag>.job``) first and its return code (``<tag>.rc``) last; the probe
reads them, so the worker gets its block's job id as batchID and the monitor cross-checks
task and job: the block's final Slurm state wins (a killed job ends the worker cancelled);
else the task's return code or failure (exception name and return code); a job gone while
the task says running is missing (failed after the monitor's grace).

Submits of concurrent submitter threads are gathered for ``submitGatherSeconds`` into one
submit request; a submit that may have been sent (5xx, timeout, reset) is never sent again
(the submitter looks the tag up).  Every request goes through the credential's rate bucket.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..edge import lifecycle
from ..edge.jobs import JobRecord, JobState, Resolution, SubmitReceipt
from ..edge.retry import RetryPolicy, Timeouts
from ..edge.spec import JobSpec
from ..errors import EdgeAPIError, EdgeNetworkError
from ..harvester import setup_logger
from . import gc_wire as wire
from .base import (
    CancelOutcome,
    Capabilities,
    CredentialFacts,
    Deferred,
    FacilityClient,
    Health,
    chunks,
)
from .gc_auth import GCCredential, GCCredentialSettings
from .gc_functions import Batches
from .gc_http import DEFAULT_RATE, GCService, bucket_for
from .sfapi import parse_scancel, with_output
from .tails import tail_of

log = setup_logger("harvester_edge.globus_compute")

DEFAULT_SERVICE_URL = "https://compute.api.globus.org"
MODES = ("batch", "task")
#: GC task states before the function ran
_WAITING = frozenset({"received", "waiting-for-ep", "waiting-for-nodes", "waiting-for-launch"})
#: batch-status ids per request
_STATUS_CHUNK = 1000
#: task mode: how long a pilot task is remembered after its worker's final answer (Harvester
#: may ask once more if its own cycle failed); then its tag and status are forgotten
_ENDED_KEEP = 3600.0
#: how long ``check --online`` waits for the endpoint to answer a directory check
_CHECK_WAIT = 120.0


@dataclass(frozen=True)
class GCSettings:
    endpoint_id: str
    service_url: str = DEFAULT_SERVICE_URL
    credential: GCCredentialSettings = field(default_factory=GCCredentialSettings)
    mode: str = "batch"
    #: canonical JSON of the queue's user_endpoint_config (hashable)
    user_endpoint_config: str = "{}"
    #: task mode: where probes and cancels run (a login-node user endpoint); "" = the same
    probe_endpoint_config: str = ""
    marker_dir: str = ""
    timeouts: Timeouts = Timeouts()
    policy: RetryPolicy = RetryPolicy()
    rate: tuple[int, float] = DEFAULT_RATE
    #: a task status read this recently answers again without a request
    status_share: float = 5.0
    #: concurrent submits gathered this long into one submit request
    submit_gather: float = 0.05
    #: a status probe read now starts the next one for the same workers (answered every
    #: cycle: two requests per cycle); off: a probe is started, then read, cycle by cycle
    prefetch: bool = True
    #: a probe nobody asked about for this long is forgotten (epoch seconds)
    probe_ttl: float = 3600.0

    def uec(self) -> dict[str, Any]:
        return dict(json.loads(self.user_endpoint_config))

    def probe_uec(self) -> dict[str, Any]:
        return dict(json.loads(self.probe_endpoint_config or self.user_endpoint_config))


@dataclass
class _Probe:
    task_id: str
    started: float  # lifecycle.now(): the monitor's probe timeout reads it
    ids: frozenset[str]
    tags: frozenset[str]
    files: frozenset[str]
    #: log files whose last ``tail_bytes`` bytes the probe reads (``tail -c``)
    tails: frozenset[str] = frozenset()
    tail_bytes: int = 0


@dataclass(frozen=True)
class _Question:
    ids: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    tails: tuple[str, ...] = ()
    tail_bytes: int = 0

    def key(self) -> tuple[frozenset[str], ...]:
        return (frozenset(self.ids), frozenset(self.tags), frozenset(self.files),
                frozenset(self.tails))  # fmt: skip

    def covered_by(self, p: _Probe) -> bool:
        return (
            set(self.ids) <= p.ids and set(self.tags) <= p.tags and set(self.files) <= p.files
            and set(self.tails) <= p.tails and (not self.tails or p.tail_bytes >= self.tail_bytes)
        )  # fmt: skip


def _key(p: _Probe) -> tuple[frozenset[str], ...]:
    return (p.ids, p.tags, p.files, p.tails)


@dataclass
class _Answer:
    probe: _Probe
    data: wire.ProbeAnswer
    read_at: float  # monotonic

    def covers(self, q: _Question) -> bool:
        live, p = self.data.live, self.probe
        return (
            all(i in p.ids or i in live for i in q.ids)
            and set(q.tags) <= p.tags
            and set(q.files) <= p.files
            and set(q.tails) <= p.tails
            and (not q.tails or p.tail_bytes >= q.tail_bytes)
        )


@dataclass
class _Submit:
    name: str
    kwargs: dict[str, str]
    done: threading.Event = field(default_factory=threading.Event)
    task_id: str = ""
    error: BaseException | None = None


class GCClient(FacilityClient):
    """One Globus Compute endpoint through one credential (see the module docstring)."""

    service = "globus-compute"
    capabilities = Capabilities(
        async_submit=True,
        deferred_queries=True,
        server_cancel=False,
        files=True,
        max_ids_per_query=10_000,
        outages=False,  # an endpoint is online or not; no maintenance windows announced
        credential_expiry=False,  # a confidential client renews its tokens itself
    )

    def __init__(self, settings: GCSettings, *, clock: Callable[[], float] = time.monotonic):
        if settings.mode not in MODES:
            raise EdgeAPIError(f"globus compute: unknown mode {settings.mode!r}")
        if settings.mode == "task" and not settings.marker_dir.startswith("/"):
            raise EdgeAPIError("globus compute task mode needs an absolute marker directory")
        self.capabilities = capabilities_of(settings.mode)  # type: ignore[misc]
        self.settings = settings
        self.clock = clock
        self.credential_ = GCCredential(settings.credential, http_timeout=settings.timeouts.read)
        self._lock = threading.RLock()
        self._service: GCService | None = None
        self._batches: Batches | None = None
        self._probes: dict[str, _Probe] = {}
        self._answers: list[_Answer] = []
        #: summaries to read with the next prefetched status probe
        self._later_files: set[str] = set()
        self._later_tails: set[str] = set()
        self._later_tail_bytes = 0
        self._statuses: dict[str, tuple[float, dict[str, Any]]] = {}
        self._cancels: dict[frozenset[str], _Probe] = {}
        self._submits: list[_Submit] = []
        self._leading = False
        self._pilot_tasks: dict[str, str] = {}  # task mode: tag -> pilot task id
        self._tag_of_task: dict[str, str] = {}
        self._pilot_ended: dict[str, float] = {}  # task mode: tag -> first final answer

    def __repr__(self) -> str:
        return f"GCClient({self.settings.service_url!r}, endpoint={self.settings.endpoint_id})"

    # plumbing ------------------------------------------------------------------------------
    @property
    def batches(self) -> Batches:
        with self._lock:
            if self._batches is None:
                s = self.settings
                service = GCService(
                    s.service_url,
                    self.credential_.auth(),
                    bucket=bucket_for(self.credential_.rate_key, *s.rate),
                    timeouts=s.timeouts,
                    policy=s.policy,
                )
                self._service = service
                self._batches = Batches(service, s.endpoint_id, self.credential_.identity)
            return self._batches

    @property
    def requests(self) -> Mapping[str, int]:
        """Requests sent to the web service, per kind (tests and benchmarks count them)."""
        with self._lock:
            return dict(self._service.requests) if self._service is not None else {}

    def close(self) -> None:
        with self._lock:
            if self._service is not None:
                self._service.close()

    def _deadline(self) -> float:
        return self.settings.policy.deadline

    def credential(self) -> CredentialFacts:
        return self.credential_.facts()

    # health --------------------------------------------------------------------------------
    def health(self) -> Health:
        b = self.batches
        answer = b.service.call(
            "endpoint status",
            lambda: b.service.v2.get_endpoint_status(self.settings.endpoint_id),
            idempotent=True,
            deadline=self._deadline(),
        )
        data = answer.data if isinstance(answer.data, dict) else {}
        state = str(data.get("status") or "unknown").lower()
        if state == "online":
            return Health(True, state)
        details = data.get("details")
        said = details.get("reason") if isinstance(details, dict) else None
        why = f": {' '.join(str(said).split())[:200]}" if said else ""
        return Health(False, state, f"endpoint {self.settings.endpoint_id} is {state}{why}")

    # submit --------------------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> SubmitReceipt:
        if self.settings.mode == "task":
            # the batch log where the monitor's copy looks (a Slurm pattern: left to the task)
            out = spec.stdout_path if "%" not in spec.stdout_path else ""
            kwargs = wire.pilot_kwargs(
                spec.script, spec.submit_dir or spec.work_dir, spec.tag,
                self.settings.marker_dir, out if out.startswith("/") else "",
            )  # fmt: skip
            slot = _Submit(wire.PILOT_NAME, kwargs)
        else:
            # the batch log where the spec (and the monitor's copy) says, as SFAPI's
            slot = _Submit(wire.SBATCH_NAME, wire.sbatch_kwargs(with_output(spec), spec.submit_dir))
        self._gather_submit(slot)
        if slot.error is not None:
            raise slot.error
        if self.settings.mode == "task":
            with self._lock:
                self._pilot_tasks[spec.tag] = slot.task_id
                self._tag_of_task[slot.task_id] = spec.tag
        return SubmitReceipt(handle=slot.task_id)

    def _gather_submit(self, slot: _Submit) -> None:
        """Concurrent submits share one request: the first thread waits ``submit_gather``
        for the others, sends them all, and hands each its task id (or the error)."""
        with self._lock:
            self._submits.append(slot)
            lead = not self._leading
            self._leading = True
        if not lead:
            if not slot.done.wait(self._deadline() + 1.0):
                raise EdgeNetworkError("globus compute submit: no answer in time", maybe_sent=True)
            return
        time.sleep(self.settings.submit_gather)
        with self._lock:
            group, self._submits = self._submits, []
            self._leading = False
        uec = self.settings.uec()
        try:
            ids = self.batches.run(
                [(s.name, s.kwargs) for s in group], uec, idempotent=False,
                deadline=self._deadline(),
            )  # fmt: skip
            for s, task_id in zip(group, ids, strict=True):
                s.task_id = task_id
        except Exception as exc:  # noqa: BLE001 - every waiting thread gets the same error
            for s in group:
                s.error = exc
        finally:
            for s in group:
                s.done.set()

    # one function, waited for ------------------------------------------------------------
    def missing_dirs(self, paths: Sequence[str]) -> list[str]:
        """Asked on the endpoint by one Python function task (a check may wait)."""
        found = self.run_function(wire.missing_dirs, {"paths": list(paths)}, wait=_CHECK_WAIT)
        if not isinstance(found, list):
            raise EdgeAPIError("globus compute: the directory check answered no list")
        return [str(p) for p in found]

    def run_function(
        self, fn: Callable[..., Any], kwargs: Mapping[str, Any], *, wait: float
    ) -> Any:
        """Run the Python function ``fn`` (registered by its source, cached like the shell
        functions) once with ``kwargs`` as data on the login-node user endpoint (the probe
        endpoint config), and wait up to ``wait`` seconds for its result.

        For the credential manager, which may wait (a plugin call never does): the submit is
        never retried once it may have been sent; status reads go through the credential's
        rate bucket, spaced out, and one that fails for now (429, 5xx) is read again.
        Raises ``EdgeAPIError`` with the task's own last error line when it failed, a
        transient one when no result came within ``wait``."""
        end = time.monotonic() + wait
        b = self.batches
        fid = b.python_function_id(fn, self._deadline())
        (task_id,) = b.submit(
            [(fid, kwargs)], self.settings.probe_uec(), idempotent=False,
            deadline=self._deadline(),
        )  # fmt: skip
        pause, state, note = 0.25, "received", ""
        while True:
            time.sleep(min(pause, max(0.0, end - time.monotonic())))
            left = end - time.monotonic()
            try:
                entry = b.statuses([task_id], max(1.0, min(self._deadline(), left))).get(task_id)
            except EdgeAPIError as exc:  # a read that failed for now: read again while we wait
                if not (exc.transient or isinstance(exc, EdgeNetworkError)):
                    raise
                entry, note = None, f"; last read: {exc}"
            if entry is not None:
                kind, result, why = b.outcome(entry)
                if kind == "done":
                    return result
                if kind == "failed":
                    raise EdgeAPIError(f"globus compute task {task_id} failed: {why}")
                state, note = why, ""
            if time.monotonic() >= end:
                raise EdgeAPIError(
                    f"globus compute task {task_id}: no result within {wait:.0f}s "
                    f"(still {state}{note})",
                    transient=True,
                )
            pause = min(pause * 1.6, 2.0)

    # task statuses -------------------------------------------------------------------------
    def _read(self, task_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Raw statuses of these tasks, ONE request per chunk; a status read within
        ``status_share`` (or final) is reused."""
        now = self.clock()
        share = self.settings.status_share
        with self._lock:
            asked = set(task_ids)
            wanted = set(asked)
            if share > 0:  # one request reads every probe and cancel in flight, reused
                wanted |= set(self._probes) | {p.task_id for p in self._cancels.values()}
            cached = {t: self._statuses[t] for t in wanted if t in self._statuses}
        todo = [
            t for t in sorted(wanted)
            if t not in cached or (now - cached[t][0] > share and not self._final(cached[t][1]))
        ]  # fmt: skip
        if not any(t in asked for t in todo):
            todo = []  # what was asked is known: the others wait for their own question
        fresh: dict[str, dict[str, Any]] = {}
        for part in chunks(todo, _STATUS_CHUNK):
            fresh.update(self.batches.statuses(part, self._deadline()))
        with self._lock:
            for t in todo:  # asked and not answered: unknown to the service now
                if t not in fresh:
                    self._statuses.pop(t, None)
            for t, entry in fresh.items():
                self._statuses[t] = (now, entry)
            return {t: self._statuses[t][1] for t in wanted if t in self._statuses}

    @staticmethod
    def _final(entry: Mapping[str, Any]) -> bool:
        return str(entry.get("status") or "").lower() in ("success", "failed")

    def resolve(self, handles: Sequence[str]) -> dict[str, Resolution]:
        entries = self._read(handles)
        out: dict[str, Resolution] = {}
        for handle in handles:
            entry = entries.get(handle)
            if entry is None:
                continue  # unknown to the service: the monitor looks the tag up
            kind, result, why = self.batches.outcome(entry)
            if self.settings.mode == "task":
                res = self._resolve_pilot(handle, entry, kind, result, why)
                if res is not None:
                    out[handle] = res
                continue
            if kind == "pending":
                out[handle] = Resolution(Resolution.PENDING)
            elif kind == "done" and _returncode(result) == 0:
                job_id = wire.parse_sbatch(_text(result, "stdout"))
                out[handle] = Resolution(Resolution.DONE, job_id=job_id)
            elif kind == "done":
                error = _text(result, "stderr").strip() or f"exit {_returncode(result)}"
                out[handle] = Resolution(Resolution.ERROR, error=_sbatch_error(error))
            # a task that failed as a task (no shell result): sbatch may or may not have run;
            # left out, so the monitor looks the tag up instead of trusting either
        self._forget_final(handles, entries)
        return out

    def _resolve_pilot(
        self, handle: str, entry: Mapping[str, Any], kind: str, result: Any, why: str
    ) -> Resolution | None:
        """Task mode: a pilot task waiting for a block is pending; one whose marker a probe
        has read resolves to its block's job id; one that failed as a task (no shell result)
        without a marker never ran (the provider got no block): its error, as a refused
        submit's.  Else (running, or ended with a result) the monitor looks its tag's marker
        up (``find``), read on a later call."""
        if str(entry.get("status") or "").lower() in _WAITING:
            return Resolution(Resolution.PENDING)
        with self._lock:
            tag = self._tag_of_task.get(handle)
            answers = list(self._answers)
        marker = next((a.data.markers[tag] for a in answers if tag in a.data.markers), None)
        if marker is not None:
            return Resolution(Resolution.DONE, job_id=marker[0])
        if kind == "failed":
            return Resolution(Resolution.ERROR, error=why or "pilot task failed before it ran")
        return Resolution(Resolution.DONE)  # no job id: looked up by its tag's marker

    def _forget_final(self, handles: Sequence[str], entries: Mapping[str, Any]) -> None:
        with self._lock:
            for h in handles:
                entry = entries.get(h)
                if entry is not None and self._final(entry) and self.settings.mode == "batch":
                    self._statuses.pop(h, None)

    # questions (deferred probes) ----------------------------------------------------------
    def _refresh(self, probes: list[_Probe]) -> None:
        """Read these probes (one request); finished ones become answers.  A probe is read
        by the question it answers, so its answer is as fresh as that question's call."""
        if not probes:
            return
        entries = self._read([p.task_id for p in probes])
        for probe in probes:
            entry = entries.get(probe.task_id)
            if entry is None:
                continue
            kind, result, why = self.batches.outcome(entry)
            if kind == "pending":
                continue
            with self._lock:
                self._probes.pop(probe.task_id, None)
                self._statuses.pop(probe.task_id, None)
            if kind == "failed":
                log.warning(f"globus compute probe {probe.task_id} failed: {why}")
                continue
            try:
                data = wire.parse_probe(_text(result, "stdout"))
            except EdgeAPIError as exc:
                log.warning(f"globus compute probe {probe.task_id}: {exc}")
                continue
            with self._lock:
                self._answers.insert(0, _Answer(probe, data, self.clock()))
                del self._answers[8:]

    def _ask(
        self,
        ids: Sequence[str] = (),
        tags: Sequence[str] = (),
        files: Sequence[str] = (),
        tails: Sequence[str] = (),
        tail_bytes: int = 0,
    ) -> wire.ProbeAnswer | Deferred:
        """Answer from a probe that finished (read in this call, or within
        ``status_share``), else wait for one in flight that covers the question, else start
        one for it now (one submit request); a probe is read on a later call."""
        wire.check_ids(ids)
        wire.check_tags(tags)
        asked = self.clock()
        share = self.settings.status_share
        q = _Question(tuple(ids), tuple(tags), tuple(files), tuple(tails), tail_bytes)
        key = q.key()
        polling = bool(ids) and not tags and not files and not tails
        with self._lock:
            self._prune(lifecycle.now())
            covering = [p for p in self._probes.values() if q.covered_by(p)]
            exact = [p for p in covering if _key(p) == key]
            if not covering and polling and self.settings.prefetch:
                # a prefetched status probe lists every live job: it may answer a worker set
                # that changed since (new workers' jobs are live); checked by ``covers``
                covering = [
                    p for p in self._probes.values()
                    if p.ids and not (p.tags or p.files or p.tails)
                ]  # fmt: skip
        # the probe started for this very question first: a wider one (read now) may be
        # another question's, which then reads it itself
        self._refresh(exact or covering)
        with self._lock:
            found = None
            for answer in self._answers:
                fresh = answer.read_at >= asked or asked - answer.read_at <= share
                if fresh and answer.covers(q):
                    found = answer
                    break
            start_next = (
                found is not None and found.read_at >= asked and polling
                and self.settings.prefetch
                and not any(_key(p) == key for p in self._probes.values())
            )  # fmt: skip
        if found is not None:
            if start_next:  # next cycle's answer, started now: read then, not waited for
                with self._lock:
                    also = _Question(
                        files=tuple(sorted(self._later_files)),
                        tails=tuple(sorted(self._later_tails)),
                        tail_bytes=self._later_tail_bytes,
                    )
                    self._later_files, self._later_tails = set(), set()
                    self._later_tail_bytes = 0
                try:
                    self._start_probe(q, also=also if also.files or also.tails else None)
                except EdgeAPIError as exc:
                    log.info(f"globus compute: next status probe not started: {exc}")
            return found.data
        with self._lock:
            for probe in exact or covering:
                if probe.task_id in self._probes:
                    return Deferred(probe=probe.task_id, started=probe.started)
        probe = self._start_probe(q)
        return Deferred(probe=probe.task_id, started=probe.started)

    def _start_probe(self, q: _Question, also: _Question | None = None) -> _Probe:
        """Start a probe for this question (and, in the same submit request, one for
        ``also``: summaries and batch logs asked while status probes are prefetched)."""
        marks = self.settings.marker_dir if self.settings.mode == "task" else ""
        questions = [q] if also is None else [q, also]
        calls = [
            (wire.PROBE_NAME,
             wire.probe_kwargs(x.ids, x.tags, x.files, marks, x.tails, x.tail_bytes))
            for x in questions
        ]  # fmt: skip
        task_ids = self.batches.run(
            calls, self.settings.probe_uec(), idempotent=False, deadline=self._deadline()
        )
        started = lifecycle.now()
        probes = [
            _Probe(
                task_id,
                started,
                frozenset(x.ids),
                frozenset(x.tags),
                frozenset(x.files),
                frozenset(x.tails),
                x.tail_bytes if x.tails else 0,
            )  # fmt: skip
            for task_id, x in zip(task_ids, questions, strict=True)
        ]
        with self._lock:
            for probe in probes:
                self._probes[probe.task_id] = probe
        return probes[0]

    def _prune(self, now: float) -> None:
        """Forget probes nobody read for ``probe_ttl`` (a question that went away) and, in
        task mode, pilot tasks ended ``_ENDED_KEEP`` ago: a long-running Harvester's memory
        holds live workers only.  Call with the lock held."""
        ttl = self.settings.probe_ttl
        for task_id in [t for t, p in self._probes.items() if now - p.started > ttl]:
            del self._probes[task_id]
            self._statuses.pop(task_id, None)
        for key in [k for k, p in self._cancels.items() if now - p.started > ttl]:
            self._statuses.pop(self._cancels.pop(key).task_id, None)
        for tag in [t for t, at in self._pilot_ended.items() if now - at > _ENDED_KEEP]:
            del self._pilot_ended[tag]
            pilot = self._pilot_tasks.pop(tag, None)
            if pilot is not None:
                self._tag_of_task.pop(pilot, None)
                self._statuses.pop(pilot, None)

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobRecord] | Deferred:
        ids = [str(j) for j in job_ids]
        answer = self._ask(ids=ids)
        if isinstance(answer, Deferred):
            return answer
        live = answer.live
        if any(j not in live or live[j].state.is_final for j in ids):
            answer.check_accounting()  # those needed sacct: "could not ask" if it failed
        if self.settings.mode == "task":
            return self._task_records(answer, ids)
        out = {}
        for job_id in ids:
            rec = answer.record(job_id)
            if rec is not None:
                out[job_id] = rec
        return out

    def find(self, tags: Sequence[str]) -> dict[str, list[JobRecord]] | Deferred:
        answer = self._ask(tags=list(tags))
        if isinstance(answer, Deferred):
            return answer
        answer.check_accounting()  # ended jobs are found by name in accounting only
        found = answer.by_name(tags)
        if self.settings.mode == "batch":
            return found
        for tag in tags:  # task mode: the block a pilot task ran on, from its marker
            marker = answer.markers.get(tag)
            if marker is not None and all(r.job_id != marker[0] for r in found.get(tag, [])):
                rec = self._task_records(answer, [marker[0]]).get(marker[0])
                found.setdefault(tag, []).append(
                    rec or JobRecord(marker[0], JobState.ACTIVE, name=tag)
                )
        return found

    def _task_records(self, answer: wire.ProbeAnswer, ids: Sequence[str]) -> dict[str, JobRecord]:
        """Task mode: the pilot task's view merged with its block's (module docstring)."""
        tag_of = {job: tag for tag, (job, _) in answer.markers.items()}
        with self._lock:
            tasks = {tag_of[j]: self._pilot_tasks.get(tag_of[j]) for j in ids if j in tag_of}
        entries = self._read([t for t in tasks.values() if t])
        out: dict[str, JobRecord] = {}
        for job_id in ids:
            tag = tag_of.get(job_id)
            rec = answer.record(job_id)
            if tag is None:
                if rec is not None:
                    out[job_id] = rec
                continue
            rc = answer.markers[tag][1]
            task = tasks.get(tag)
            entry = entries.get(task) if task else None
            merged = self._merge(job_id, tag, rec, rc, entry)
            if merged is not None:
                out[job_id] = merged
                if merged.state.is_final:
                    with self._lock:
                        self._pilot_ended.setdefault(tag, lifecycle.now())
        return out

    def _merge(
        self, job_id: str, tag: str, rec: JobRecord | None, rc: int | None, entry: Any
    ) -> JobRecord | None:
        named = (lambda r: JobRecord(**{**r.__dict__, "name": tag})) if rec else None
        if rec is not None and rec.state.is_final and named is not None:
            if rec.state is not JobState.COMPLETED or rc in (None, 0):
                return named(rec)  # the block's end (killed, timed out...): Slurm's word
        if rc is not None:
            state = JobState.COMPLETED if rc == 0 else JobState.FAILED
            return JobRecord(
                job_id, state, name=tag, exit_code=rc, signal=0,
                native=f"pilot task ended with return code {rc}",
                confirmed_final=rc < 128,  # a signal: wait for Slurm's word on the block
            )  # fmt: skip
        if entry is not None:
            kind, result, why = self.batches.outcome(entry)
            if kind in ("done", "failed") and _returncode(result) != 0:
                name = _text(result, "exception_name") or why or "task failed"
                code = _returncode(result)
                return JobRecord(
                    job_id, JobState.FAILED, name=tag, exit_code=code, signal=0,
                    native=f"pilot task failed: {name}, return code {code}",
                    confirmed_final=True,
                )  # fmt: skip
        return named(rec) if named and rec is not None else None

    def read_texts(self, paths: Sequence[str]) -> dict[str, str | None]:
        """Summaries read by a probe task (absent: not read yet)."""
        return self.read_texts_and_tails(paths, (), 0)[0]

    def read_tails(self, paths: Sequence[str], max_bytes: int) -> dict[str, str | None]:
        """Batch logs' ends (``tail -c`` on the login node) read by a probe task."""
        return self.read_texts_and_tails((), paths, max_bytes)[1]

    def read_texts_and_tails(
        self, paths: Sequence[str], tail_paths: Sequence[str], max_bytes: int
    ) -> tuple[dict[str, str | None], dict[str, str | None]]:
        """Summaries and batch-log ends asked together ride in ONE probe (absent: not read
        yet).  With prefetched status probes, files first asked ride along with the next
        status probe's submit (no request of their own); asked again before that, they get
        a probe now."""
        wanted, tails = set(paths), set(tail_paths)
        if not wanted and not tails:
            return {}, {}
        if self.settings.prefetch:
            with self._lock:
                q = _Question(files=tuple(wanted), tails=tuple(tails), tail_bytes=max_bytes)
                known = any(q.covered_by(a.probe) for a in self._answers) or any(
                    q.covered_by(p) for p in self._probes.values()
                )
                fresh = (wanted - self._later_files) | (tails - self._later_tails)
                if fresh and not known:
                    self._later_files |= wanted
                    self._later_tails |= tails
                    if tails:
                        self._later_tail_bytes = max(self._later_tail_bytes, max_bytes)
                    return {}, {}
                if not known:
                    self._later_files -= wanted
                    self._later_tails -= tails
        answer = self._ask(files=sorted(wanted), tails=sorted(tails), tail_bytes=max_bytes)
        if isinstance(answer, Deferred):
            return {}, {}
        texts = {p: answer.files[p] for p in paths if p in answer.files}
        ends = {
            p: None if answer.tails[p] is None else tail_of(str(answer.tails[p]), max_bytes)
            for p in tail_paths if p in answer.tails
        }  # fmt: skip
        return texts, ends

    def live_tags(self, prefix: str) -> list[str]:
        """The user's live jobs named with ``prefix``: a probe's squeue listing.  Asked once
        per queue after a restart, so this one waits for its probe (within the deadline)."""
        deadline = time.monotonic() + min(self._deadline(), 20.0)
        while True:
            answer = self._ask()
            if not isinstance(answer, Deferred):
                names = [r.name for r in answer.live.values() if r.name.startswith(prefix)]
                # task mode: a block's job is the endpoint's; its pilot task's marker names it
                names += [
                    tag for tag, (job, rc) in answer.markers.items()
                    if tag.startswith(prefix) and rc is None and job in answer.live
                    and tag not in names
                ]  # fmt: skip
                return names
            if time.monotonic() + 0.2 >= deadline:
                why = f"globus compute: live jobs not known yet (probe {answer.probe} pending)"
                raise EdgeAPIError(why, transient=True)
            time.sleep(0.2)

    # cancel --------------------------------------------------------------------------------
    def cancel(self, job_ids: Sequence[str]) -> dict[str, CancelOutcome] | Deferred:
        ids = [str(j) for j in job_ids]
        bad = [j for j in ids if not wire.JOB_ID.match(j)]
        out = {j: CancelOutcome.refused(f"not a Slurm job id: {j[:40]!r}") for j in bad}
        ids = [j for j in ids if j not in out]
        if not ids:
            return out
        key = frozenset(ids)
        with self._lock:
            probe = self._cancels.get(key)
        if probe is None:
            (task_id,) = self.batches.run(
                [(wire.SCANCEL_NAME, wire.scancel_kwargs(sorted(ids)))],
                self.settings.probe_uec(), idempotent=False, deadline=self._deadline(),
            )  # fmt: skip
            probe = _Probe(task_id, lifecycle.now(), key, frozenset(), frozenset())
            with self._lock:
                self._cancels[key] = probe
            return Deferred(probe=task_id, started=probe.started)
        entry = self._read([probe.task_id]).get(probe.task_id)
        if entry is None:
            return Deferred(probe=probe.task_id, started=probe.started)
        kind, result, why = self.batches.outcome(entry)
        if kind == "pending":
            return Deferred(probe=probe.task_id, started=probe.started)
        with self._lock:
            self._cancels.pop(key, None)
            self._statuses.pop(probe.task_id, None)
        if kind == "failed":
            return {**out, **{j: CancelOutcome.refused(f"cancel task failed: {why}") for j in ids}}
        code = _returncode(result)
        text = {
            "output": _text(result, "stdout"),
            "error": "\n".join(
                ln for ln in _text(result, "stderr").splitlines() if "sandbox" not in ln.lower()
            ),
            "exit_code": code,
            "status": "ok" if code == 0 else "error",
        }
        return {**out, **parse_scancel(ids, text)}


def capabilities_of(mode: str) -> Capabilities:
    """The client's capabilities in ``mode`` (task mode: the pilot is the task)."""
    if mode != "task":
        return GCClient.capabilities
    return dataclasses.replace(GCClient.capabilities, pilot_is_task=True)


def _returncode(result: Any) -> int:
    if isinstance(result, dict):
        code = result.get("returncode")
    else:
        code = getattr(result, "returncode", 1)
    return int(code) if isinstance(code, int) else 1


def _text(result: Any, name: str) -> str:
    value = result.get(name) if isinstance(result, dict) else getattr(result, name, "")
    return str(value or "")


def _sbatch_error(stderr: str) -> str:
    """sbatch's own error line (the endpoint adds a sandbox warning we leave out)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip() and "sandbox" not in ln.lower()]
    errors = [ln for ln in lines if "sbatch:" in ln]
    return (errors or lines or ["sbatch failed"])[-1].strip()[:500]
