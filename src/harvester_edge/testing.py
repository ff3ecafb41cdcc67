"""A scripted facility for tests: the generic plugins driven with no network and no Slurm.

Like ``globus_sdk.testing``, this ships with the package so that operators and every plugin
family can run the same conformance suite (``tests/conformance/``).  ``FakeFacility`` is a
``FacilityClient`` with an in-memory scheduler that keeps Slurm's semantics where they matter
to the plugins: finished jobs leave the live queue and show in accounting (after an optional
lag), names are the jobs' tags, ids are unique and increasing, asynchronous submits resolve
through tasks, and faults are scripted per operation:

    fake.script("submit", "created_then_502")   # the next submit creates the job, then 502
    fake.script("query", "timeout")             # the next query times out (maybe sent)

It comes in the four capability profiles of the real services (``PROFILES``): ``async``
(submit answers a task, like SFAPI), ``sync`` (a job id at once, like S3M), ``idempotent``
(submits deduplicated by key, like IRI v2) and ``tasks`` (queries and cancels are tasks read a
cycle later, like Globus Compute).

The ``Fake*`` plugins bind the generic plugins to a named ``FakeFacility`` (queue-config key
``fakeName``), exactly as ``plugins/sfapi.py`` binds them to SFAPI.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from .edge import lifecycle
from .edge.jobs import JobRecord, Resolution, SubmitReceipt
from .edge.spec import JobSpec
from .errors import EdgeAPIError, EdgeAuthError, EdgeConfigError, EdgeNetworkError
from .facilities.base import (
    CancelOutcome,
    Capabilities,
    CredentialFacts,
    Deferred,
    FacilityClient,
    Health,
)
from .facilities.passthrough import SlurmState, slurm_record
from .plugins.base import FacilityBinding
from .plugins.monitor import EdgeMonitor
from .plugins.options import EdgeOptions
from .plugins.submitter import EdgeSubmitter
from .plugins.sweeper import EdgeSweeper

#: Scripted faults, per operation (``FakeFacility.script``):
FAULTS = {
    "ok": "answer normally",
    "refuse": "the service refuses (HTTP 400-like, not transient)",
    "limit": "sbatch refuses with a QOS submit limit",
    "auth": "credentials refused (401/403)",
    "connect": "cannot connect: surely not sent",
    "timeout": "no answer in time: maybe sent, nothing done",
    "created_then_timeout": "the job is created, then the answer is lost (read timeout)",
    "created_then_502": "the job is created, then the service answers 502",
    "created_then_500": "the job is created, then the service answers 500",
    "busy_429": "429 before anything was done",
    "hang": "the call blocks for ``hang_seconds`` then times out",
    "created_then_reset": "the job is created, then the connection is reset (not silent)",
    "unencodable": "the spec cannot be put in the service's wire format (EdgeConfigError)",
}


#: The capability profiles of the four edge services.
PROFILES: dict[str, Capabilities] = {
    "async": Capabilities(async_submit=True, files=True),
    "sync": Capabilities(),
    "idempotent": Capabilities(idempotent_submit=True),
    "tasks": Capabilities(
        async_submit=True, deferred_queries=True, server_cancel=False, files=True
    ),
}


@dataclass
class FakeJob:
    job_id: str
    name: str
    state: SlurmState = SlurmState.PENDING
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""
    state_text: str = ""
    #: when the job reached a final state (monotonic); accounting shows it after the lag
    ended_at: float | None = None
    submitted_at: float = field(default_factory=time.monotonic)
    script: str = ""


@dataclass
class FakeTask:
    task_id: str
    tag: str
    script: str
    #: the task stays pending until this time (monotonic); None = until ``complete_tasks``
    ready_at: float | None
    job_id: str | None = None
    error: str = ""
    done: bool = False


class FakeFacility(FacilityClient):
    """An in-memory scheduler behind the ``FacilityClient`` interface (thread-safe)."""

    service = "fake"

    def __init__(
        self,
        *,
        profile: str = "sync",
        async_submit: bool | None = None,
        task_delay: float | None = 0.0,
        accounting_lag: float = 0.0,
        queue_linger: float = 0.0,
        supports_files: bool = True,
        max_query_ids: int = 500,
        hang_seconds: float = 1.0,
        first_job_id: int = 1000,
    ) -> None:
        caps = PROFILES[profile]
        if async_submit is not None:  # the older switch: async profile or sync
            caps = PROFILES["async" if async_submit else "sync"]
        self.capabilities = Capabilities(  # type: ignore[misc]
            async_submit=caps.async_submit,
            idempotent_submit=caps.idempotent_submit,
            deferred_queries=caps.deferred_queries,
            server_cancel=caps.server_cancel,
            files=caps.files and supports_files,
            max_ids_per_query=max_query_ids,
            outages=caps.outages,
            credential_expiry=caps.credential_expiry,
        )
        self.task_delay = task_delay
        self.accounting_lag = accounting_lag
        self.queue_linger = queue_linger
        self.hang_seconds = hang_seconds
        self.jobs: dict[str, FakeJob] = {}
        self.tasks: dict[str, FakeTask] = {}
        self.files: dict[str, str] = {}
        self.health_answer = Health(True, "active")
        self._credential_watchers: list[Callable[[CredentialFacts], None]] = []
        self.credential_answer = CredentialFacts(kind="fake", identity="fake-client")
        self.requests: Counter[str] = Counter()
        self.cancelled: list[str] = []
        self._faults: dict[str, deque[str]] = {}
        self._lock = threading.RLock()
        self._ids = itertools.count(first_job_id)
        self._task_ids = itertools.count(1)
        self._keys: dict[str, SubmitReceipt] = {}  # idempotency key -> first answer
        self._probes: dict[tuple[str, frozenset[str]], Deferred] = {}
        self._cancel_answers: dict[frozenset[str], dict[str, CancelOutcome]] = {}

    @property
    def credential_answer(self) -> CredentialFacts:
        """The facility's word on the credential (``credential()``); a test sets it."""
        return self._credential

    @credential_answer.setter
    def credential_answer(self, facts: CredentialFacts) -> None:
        self._credential = facts
        for watcher in list(self._credential_watchers):
            watcher(facts)

    def watch_credential(self, callback: Callable[[CredentialFacts], None]) -> None:
        """Call ``callback(facts)`` each time ``credential_answer`` is set: a double that
        hands out the credential itself (a token file) writes the new one at once, as a
        credential manager would."""
        self._credential_watchers.append(callback)

    # scripting ----------------------------------------------------------------------------
    def script(self, operation: str, *faults: str) -> None:
        """Queue faults for the next calls of ``operation`` (submit, resolve, query, find,
        cancel, read, health); each call takes one, then calls answer normally again."""
        for fault in faults:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
        with self._lock:
            self._faults.setdefault(operation, deque()).extend(faults)

    def always(self, operation: str, fault: str, times: int = 10_000) -> None:
        """The same fault for the next ``times`` calls of ``operation``."""
        self.script(operation, *([fault] * times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _fault(self, operation: str) -> str:
        with self._lock:
            self.requests[operation] += 1
            queue = self._faults.get(operation)
            return queue.popleft() if queue else "ok"

    def _raise_for(self, operation: str, fault: str) -> None:
        """Raise the error a fault stands for (faults that create something are handled by
        the caller first)."""
        what = f"fake {operation}"
        if fault == "refuse":
            raise EdgeAPIError(f"{what}: HTTP 400: refused", status=400)
        if fault == "limit":
            raise EdgeAPIError(f"{what}: sbatch: error: QOSMaxSubmitJobPerUserLimit", status=400)
        if fault == "auth":
            raise EdgeAuthError(f"{what}: credentials refused (HTTP 401)", status=401)
        if fault == "connect":
            raise EdgeNetworkError(f"{what}: cannot connect (ConnectError)", maybe_sent=False)
        if fault == "busy_429":
            raise EdgeAPIError(f"{what}: HTTP 429", status=429, transient=True)
        if fault == "hang":
            time.sleep(self.hang_seconds)
            raise EdgeNetworkError(f"{what}: no answer in time (ReadTimeout)", maybe_sent=True)
        if fault == "unencodable":
            raise EdgeConfigError(f"{what}: the job header cannot be read")
        if fault == "created_then_reset":
            raise EdgeNetworkError(
                f"{what}: connection failed (ReadError)", maybe_sent=True, silent=False
            )
        if fault in ("timeout", "created_then_timeout"):
            raise EdgeNetworkError(f"{what}: no answer in time (ReadTimeout)", maybe_sent=True)
        if fault.startswith("created_then_5"):
            status = int(fault.rsplit("_", 1)[1])
            raise EdgeAPIError(f"{what}: HTTP {status}", status=status, transient=True)

    # the scheduler --------------------------------------------------------------------------
    def sbatch(self, name: str, script: str = "") -> str:
        """Create a job directly (as if someone else, or a late task, submitted it)."""
        with self._lock:
            job_id = str(next(self._ids))
            self.jobs[job_id] = FakeJob(job_id=job_id, name=name, script=script)
            return job_id

    def set_state(
        self,
        job_id: str,
        state: str | SlurmState,
        *,
        exit_code: int | None = None,
        signal: int | None = None,
        reason: str = "",
        state_text: str = "",
    ) -> None:
        """Move a job to a state (a final one starts the accounting lag)."""
        st = state if isinstance(state, SlurmState) else SlurmState.parse(state)
        with self._lock:
            job = self.jobs[job_id]
            job.state, job.reason = st, reason
            job.state_text = state_text or (st.long_name if st is not SlurmState.UNKNOWN else "")
            if exit_code is not None or st.is_final:
                job.exit_code = exit_code if exit_code is not None else 0
                job.signal = signal if signal is not None else 0
            if st.is_final and job.ended_at is None:
                job.ended_at = time.monotonic()

    def finish(self, job_id: str, exit_code: int = 0) -> None:
        self.set_state(
            job_id, SlurmState.COMPLETED if exit_code == 0 else SlurmState.FAILED,
            exit_code=exit_code,
        )  # fmt: skip

    def jobs_named(self, name: str) -> list[FakeJob]:
        with self._lock:
            return [j for j in self.jobs.values() if j.name == name]

    def live_jobs(self) -> list[FakeJob]:
        with self._lock:
            return [j for j in self.jobs.values() if not j.state.is_final]

    def complete_tasks(self) -> None:
        """Run every pending submit task now (sbatch inside the task)."""
        with self._lock:
            for task in self.tasks.values():
                task.ready_at = 0.0
            self._run_due_tasks()

    def forget_tasks(self) -> None:
        """The service lost its task table (restart): tasks become unknown."""
        with self._lock:
            self._run_due_tasks()
            self.tasks.clear()

    def _run_due_tasks(self) -> None:
        now = time.monotonic()
        for task in self.tasks.values():
            if not task.done and task.ready_at is not None and task.ready_at <= now:
                task.job_id = self.sbatch(task.tag, task.script)
                task.done = True

    def _record(self, job: FakeJob, accounting: bool) -> JobRecord:
        return slurm_record(
            job.job_id,
            job.state_text or job.state.long_name,
            name=job.name,
            exit_code=job.exit_code if accounting else None,
            signal=job.signal if accounting else None,
            reason=job.reason,
            nodes="nid001" if job.state is SlurmState.RUNNING else "",
            accounting=accounting,
        )

    def _in_queue(self, job: FakeJob, now: float) -> bool:
        return job.ended_at is None or now - job.ended_at < self.queue_linger

    def _in_accounting(self, job: FakeJob, now: float) -> bool:
        if job.ended_at is None:
            return now - job.submitted_at >= self.accounting_lag
        return now - job.ended_at >= self.accounting_lag

    # FacilityClient ------------------------------------------------------------------------
    def health(self) -> Health:
        fault = self._fault("health")
        self._raise_for("health", fault)
        return self.health_answer

    def credential(self) -> CredentialFacts:
        return self.credential_answer

    def submit(self, spec: JobSpec) -> SubmitReceipt:
        fault = self._fault("submit")
        creates = fault.startswith("created_then") or fault == "ok"
        receipt = SubmitReceipt()
        with self._lock:
            if self.capabilities.idempotent_submit and spec.tag in self._keys:
                receipt, creates = self._keys[spec.tag], False  # same key: the first answer
            if creates:
                if self.capabilities.async_submit:
                    task_id = f"t{next(self._task_ids)}"
                    delay = self.task_delay
                    ready = None if delay is None else time.monotonic() + delay
                    self.tasks[task_id] = FakeTask(task_id, spec.tag, spec.script, ready)
                    receipt = SubmitReceipt(handle=task_id)
                else:
                    receipt = SubmitReceipt(job_id=self.sbatch(spec.tag, spec.script))
                if self.capabilities.idempotent_submit:
                    self._keys[spec.tag] = receipt
        self._raise_for("submit", fault)
        return receipt

    def _probe(self, operation: str, keys: Sequence[str]) -> Deferred | None:
        """Task-based services answer a question on a later call: the first call starts a
        probe (Deferred), the next call with the same question reads it."""
        if not self.capabilities.deferred_queries:
            return None
        key = (operation, frozenset(keys))
        with self._lock:
            probe = self._probes.pop(key, None)
            if probe is not None:
                return None  # the probe has run: answer now
            probe = Deferred(probe=f"p{next(self._task_ids)}", started=lifecycle.now())
            self._probes[key] = probe
            return probe

    def resolve(self, handles: Sequence[str]) -> dict[str, Resolution]:
        fault = self._fault("resolve")
        self._raise_for("resolve", fault)
        out: dict[str, Resolution] = {}
        with self._lock:
            self._run_due_tasks()
            for handle in handles:
                task = self.tasks.get(handle)
                if task is None:
                    continue
                if not task.done:
                    out[handle] = Resolution(Resolution.PENDING)
                elif task.error:
                    out[handle] = Resolution(Resolution.ERROR, error=task.error)
                else:
                    out[handle] = Resolution(Resolution.DONE, job_id=task.job_id)
        return out

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobRecord] | Deferred:
        fault = self._fault("query")
        self._raise_for("query", fault)
        probe = self._probe("poll", job_ids)
        if probe is not None:
            return probe
        now = time.monotonic()
        with self._lock:
            self._run_due_tasks()
            out = {}
            for job_id in job_ids:
                job = self.jobs.get(str(job_id))
                if job is None:
                    continue
                in_queue = self._in_queue(job, now)
                if self._in_accounting(job, now) and (job.state.is_final or not in_queue):
                    out[job.job_id] = self._record(job, accounting=True)
                elif in_queue:
                    out[job.job_id] = self._record(job, accounting=False)
            return out

    def find(self, tags: Sequence[str]) -> dict[str, list[JobRecord]] | Deferred:
        fault = self._fault("find")
        self._raise_for("find", fault)
        probe = self._probe("find", tags)
        if probe is not None:
            return probe
        wanted = set(tags)
        now = time.monotonic()
        found: dict[str, list[JobRecord]] = {}
        with self._lock:
            self._run_due_tasks()
            for job in self.jobs.values():
                if job.name not in wanted:
                    continue
                if self._in_queue(job, now):
                    found.setdefault(job.name, []).append(self._record(job, accounting=False))
                elif self._in_accounting(job, now):
                    found.setdefault(job.name, []).append(self._record(job, accounting=True))
        return found

    def cancel(self, job_ids: Sequence[str]) -> dict[str, CancelOutcome] | Deferred:
        fault = self._fault("cancel")
        self._raise_for("cancel", fault)
        if not self.capabilities.deferred_queries:
            return self._scancel(job_ids)
        key = frozenset(job_ids)
        with self._lock:  # a cancel task runs scancel on the site now, answers next call
            done = self._cancel_answers.pop(key, None)
            if done is not None:
                return done
            self._cancel_answers[key] = self._scancel(job_ids)
            return Deferred(probe=f"p{next(self._task_ids)}", started=lifecycle.now())

    def _scancel(self, job_ids: Sequence[str]) -> dict[str, CancelOutcome]:
        out: dict[str, CancelOutcome] = {}
        with self._lock:
            for job_id in job_ids:
                job = self.jobs.get(str(job_id))
                if job is None:
                    out[str(job_id)] = CancelOutcome.refused(
                        "scancel: error: Invalid job id specified"
                    )
                    continue
                self.cancelled.append(job.job_id)
                if job.state.is_final:
                    out[job.job_id] = CancelOutcome.already_final(
                        "scancel: error: Kill job error on job id "
                        f"{job.job_id}: Job/step already completing or completed"
                    )
                    continue
                self.set_state(job.job_id, SlurmState.CANCELLED, state_text="CANCELLED by 0")
                out[job.job_id] = CancelOutcome.accepted()
        return out

    def live_tags(self, prefix: str) -> list[str]:
        fault = self._fault("live")
        self._raise_for("live", fault)
        with self._lock:
            return [j.name for j in self.jobs.values() if not j.state.is_final and
                    j.name.startswith(prefix)]  # fmt: skip

    def read_texts(self, paths: Sequence[str]) -> dict[str, str | None]:
        fault = self._fault("read")
        self._raise_for("read", fault)
        with self._lock:
            return {p: self.files.get(p) for p in paths}

    def read_tails(self, paths: Sequence[str], max_bytes: int) -> dict[str, str | None]:
        """Like ``read_texts``, one request (counted as ``tail``), each text cut to size."""
        from .facilities.tails import tail_of

        fault = self._fault("tail")
        self._raise_for("tail", fault)
        with self._lock:
            texts = {p: self.files.get(p) for p in paths}
        return {p: None if t is None else tail_of(t, max_bytes) for p, t in texts.items()}


# The fake family: the generic plugins bound to a named FakeFacility ----------------------
_FACILITIES: dict[str, FakeFacility] = {}
_REG_LOCK = threading.Lock()


def register_facility(name: str, facility: FakeFacility) -> FakeFacility:
    """Make ``facility`` the one plugins with ``fakeName=name`` talk to."""
    with _REG_LOCK:
        _FACILITIES[name] = facility
    return facility


def unregister_facilities() -> None:
    with _REG_LOCK:
        _FACILITIES.clear()


@dataclass(frozen=True, kw_only=True)
class FakeOptions(EdgeOptions):
    fakeName: str = "default"


class FakeBinding(FacilityBinding):
    options_class = FakeOptions
    options: FakeOptions

    def client_key(self) -> Hashable:
        return ("fake", self.options.fakeName)

    def make_client(self) -> FacilityClient:
        with _REG_LOCK:
            facility = _FACILITIES.get(self.options.fakeName)
        if facility is None:
            raise EdgeAPIError(f"no fake facility registered as {self.options.fakeName!r}")
        return facility


class FakeSubmitter(EdgeSubmitter):
    binding_class = FakeBinding


class FakeMonitor(EdgeMonitor):
    binding_class = FakeBinding


class FakeSweeper(EdgeSweeper):
    binding_class = FakeBinding


__all__ = [
    "FAULTS",
    "FakeFacility",
    "FakeJob",
    "FakeMonitor",
    "FakeOptions",
    "FakeSubmitter",
    "FakeSweeper",
    "register_facility",
    "unregister_facilities",
]
