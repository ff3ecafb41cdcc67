"""Where the loopback Globus Compute service runs tasks: the endpoint's side.

A Multi-User Endpoint starts one user endpoint per distinct ``user_endpoint_config`` from the
admin's template; our example template (``etc/``) takes these keys:

- ``provider``: ``"local"`` (default) runs each task on the login node (this machine) as the
  endpoint's local user; ``"slurm"`` runs each task inside a Slurm job, a *block* of the user
  endpoint's Slurm provider, on the real local cluster (so ``$SLURM_JOB_ID`` is set in the
  task).  One block per task here (a real block hosts several workers).
- ``account``, ``partition``, ``walltime`` (Slurm ``--time`` text), ``nodes_per_block``:
  the block's ``sbatch`` options.
- ``scheduler_options``: extra ``#SBATCH`` lines for the block script (every line must be an
  ``#SBATCH`` directive, as the template splices them into the script header).
- ``worker_init``: shell lines run before the worker starts (both providers): the user's own
  code, run as the user, as a real endpoint does.

Other keys are ignored, as a Jinja template ignores variables it does not use.

Every task runs ``python -m harvester_edge.localsite.gc_worker`` (see there) in a per-task
sandbox ``<work_dir>/<task_id>`` (``$GC_TASK_SANDBOX_DIR``, ``$GC_TASK_UUID`` set, as with
``run_in_sandbox``), from a small launcher script whose only substituted values are quoted
paths.  The local provider runs launchers in a bounded thread pool (a task waits in
``waiting-for-launch`` while the pool is full); the Slurm provider submits the launcher with
``sbatch`` from the same pool and one monitor thread reads every block's state with a single
``squeue`` per round: ``waiting-for-nodes`` while pending, ``running``, then the worker's
result; a block that ends without one (``scancel``, walltime, node failure) fails its task
with the lost-worker exception a real endpoint reports.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .slurm import LocalSlurm, SlurmError

log = logging.getLogger(__name__)

PROVIDERS = ("local", "slurm")
#: Task states of the service (globus_compute_common.tasks.TaskState values).
FINAL_STATES = ("success", "failed")
_PENDING_SLURM = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "SUSPENDED")
_RUNNING_SLURM = ("RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING")
_TEXT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+-]{0,63}\Z")
_WALLTIME_RE = re.compile(r"^[0-9][0-9:-]{0,15}\Z")
#: The exception text of a task whose worker died (what parsl's HTEX reports).
WORKER_LOST = (
    "Traceback (most recent call last):\n"
    '  File "globus_compute_endpoint/engines/globus_compute.py", line 1, in _status_poll\n'
    "parsl.executors.high_throughput.errors.WorkerLost: Task failure due to loss of worker "
    "{worker} on host {host}\n"
)


#: Environment variables never passed to tasks (the SDK's credentials and URLs).
_PRIVATE_ENV = ("GLOBUS_COMPUTE_CLIENT_", "GLOBUS_SDK_", "GLOBUS_COMPUTE_USER_DIR")


class ConfigError(ValueError):
    """A ``user_endpoint_config`` value the template cannot take; names the key."""


@dataclass(frozen=True)
class UserEndpointConfig:
    """The template keys of one user endpoint (see the module docstring)."""

    provider: str = "local"
    account: str | None = None
    partition: str | None = None
    walltime: str | None = None
    nodes_per_block: int = 1
    scheduler_options: tuple[str, ...] = ()
    worker_init: str = ""

    @classmethod
    def parse(cls, raw: Any) -> UserEndpointConfig:
        """Check a submit's ``user_endpoint_config``; ConfigError names the bad key."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ConfigError("user_endpoint_config must be an object")
        provider = raw.get("provider", "local")
        if provider not in PROVIDERS:
            raise ConfigError(f"user_endpoint_config.provider must be one of {PROVIDERS}")
        texts: dict[str, str | None] = {}
        for key in ("account", "partition"):
            value = raw.get(key)
            if value is not None and not (isinstance(value, str) and _TEXT_RE.match(value)):
                raise ConfigError(f"user_endpoint_config.{key} is not a valid Slurm name")
            texts[key] = value or None
        walltime = raw.get("walltime")
        if walltime is not None:
            walltime = str(walltime)
            if not _WALLTIME_RE.match(walltime):
                raise ConfigError("user_endpoint_config.walltime must be Slurm --time text")
        nodes = raw.get("nodes_per_block", 1)
        if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= 64:
            raise ConfigError("user_endpoint_config.nodes_per_block must be 1..64")
        options = raw.get("scheduler_options") or ""
        if not isinstance(options, str):
            raise ConfigError("user_endpoint_config.scheduler_options must be text")
        lines = tuple(line.strip() for line in options.splitlines() if line.strip())
        bad = [line for line in lines if not line.startswith("#SBATCH ")]
        if bad or any("\x00" in line for line in lines):
            raise ConfigError("user_endpoint_config.scheduler_options: only #SBATCH lines")
        init = raw.get("worker_init") or ""
        if not isinstance(init, str) or "\x00" in init:
            raise ConfigError("user_endpoint_config.worker_init must be text")
        return cls(provider, texts["account"], texts["partition"], walltime, nodes, lines, init)

    def sbatch_options(self, name: str, output: Path) -> list[str]:
        """The block's ``sbatch`` long options (each one argument, see LocalSlurm.submit)."""
        opts = [f"--job-name={name}", f"--nodes={self.nodes_per_block}", f"--output={output}"]
        if self.walltime:
            opts.append(f"--time={self.walltime}")
        if self.partition:
            opts.append(f"--partition={self.partition}")
        if self.account:
            opts.append(f"--account={self.account}")
        return opts


def config_key(raw: Any) -> str:
    """A stable key of a ``user_endpoint_config``: one user endpoint per distinct config."""
    text = json.dumps(raw or {}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Task:
    """One task as the service keeps it."""

    id: str
    owner: str
    function_id: str
    endpoint_id: str
    task_group_id: str
    config: UserEndpointConfig
    config_key: str
    function: dict[str, Any] = field(repr=False)
    payload: str = field(repr=False)
    created_mono: float = 0.0
    state: str = "received"
    transitions: dict[str, float] = field(default_factory=dict)
    result: str | None = field(default=None, repr=False)
    exception: str | None = field(default=None, repr=False)
    completed_at: float | None = None  # service clock (abandonment)
    ended_mono: float = 0.0  # time.monotonic() at the end (held back while offline)
    fetched_at: float | None = None
    job_id: str | None = None  # the block's Slurm job (never shown in task documents)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


def _package_root() -> str:
    """The directory that holds ``harvester_edge`` (so workers import this very code)."""
    return str(Path(__file__).resolve().parents[2])


class TaskRunner:
    """Runs tasks for the service: a bounded pool, block submission and one Slurm monitor.

    ``on_state(task, state)`` reports a state change, ``on_done(task, outcome)`` the end of a
    task with ``{"result": ...}`` or ``{"exception": ...}``; ``on_job(job_id)`` each block.
    ``lost_delay()`` is how long a block may be gone without a result before its task fails
    (the endpoint's heartbeat timeout).
    """

    def __init__(
        self,
        work_dir: Path,
        slurm: LocalSlurm,
        on_state: Callable[[Task, str], None],
        on_done: Callable[[Task, dict[str, str]], None],
        on_job: Callable[[str], None],
        workers: int = 4,
        poll_interval: float = 0.5,
        task_timeout: float = 3600.0,
        host: str = "localhost",
        lost_delay: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.work_dir = work_dir
        self.slurm = slurm
        self._on_state = on_state
        self._on_done = on_done
        self._on_job = on_job
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gc-task")
        # block submission has its own pool: long local tasks never hold up an sbatch
        self._submitter = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gc-block")
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._poll_interval = poll_interval
        self._task_timeout = task_timeout
        self._host = host
        self._blocks: dict[str, Task] = {}  # Slurm job id -> task
        self._lost: dict[str, float] = {}  # block job id -> when it was seen gone
        self._lost_delay = lost_delay
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._monitor is None:
            self._stop.clear()
            self._monitor = threading.Thread(target=self._watch, name="gc-blocks", daemon=True)
            self._monitor.start()

    def stop(self) -> None:
        """Stop taking work: queued tasks are dropped and the login-node workers killed (the
        endpoint goes down with them); blocks stay with Slurm."""
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._submitter.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self._monitor is not None:
            self._monitor.join(5)
            self._monitor = None

    @property
    def blocks(self) -> dict[str, str]:
        """Live blocks: Slurm job id -> task id."""
        with self._lock:
            return {job: task.id for job, task in self._blocks.items()}

    # ------------------------------------------------------------------ dispatch
    def dispatch(self, task: Task) -> None:
        """Start a task without blocking the caller (an HTTP handler)."""
        self._on_state(task, "waiting-for-launch")
        if task.config.provider == "local":
            self._pool.submit(self._guard, task, self._run_local)
        else:
            self._submitter.submit(self._guard, task, self._submit_block)

    def _guard(self, task: Task, target: Callable[[Task], None]) -> None:
        try:
            target(task)
        except Exception as exc:  # a service-side failure still ends the task
            log.exception("task %s could not run", task.id)
            self._on_done(task, {"exception": f"{type(exc).__name__}: {exc}\n"})

    def _files(self, task: Task) -> tuple[Path, Path, Path, Path]:
        """(sandbox, task file, result file, launcher) of a task, created."""
        control = self.work_dir / ".gc" / task.id
        control.mkdir(parents=True, exist_ok=True)
        sandbox = self.work_dir / task.id
        sandbox.mkdir(parents=True, exist_ok=True)
        task_file = control / "task.json"
        task_file.write_text(json.dumps({**task.function, "payload": task.payload}))
        launcher = control / "launch.sh"
        lines = ["#!/bin/bash", *task.config.scheduler_options]
        if task.config.worker_init:
            lines.append(task.config.worker_init)
        worker = [sys.executable, "-m", "harvester_edge.localsite.gc_worker"]
        argv = [*worker, str(task_file), str(control / "result.json")]
        lines.append("exec " + " ".join(shlex.quote(a) for a in argv))
        launcher.write_text("\n".join(lines) + "\n")
        return sandbox, task_file, control / "result.json", launcher

    def _env(self, task: Task, sandbox: Path) -> dict[str, str]:
        """The worker's environment: ours (PATH, Slurm) without any Globus credentials (the
        endpoint never hands the submitter's client secret to tasks), plus the sandbox."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_ENV)}
        if self.slurm.slurm_conf:
            env["SLURM_CONF"] = self.slurm.slurm_conf
        root = _package_root()
        path = env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = root if not path else f"{root}{os.pathsep}{path}"
        env["GC_TASK_SANDBOX_DIR"] = str(sandbox)
        env["GC_TASK_UUID"] = task.id
        return env

    def _run_local(self, task: Task) -> None:
        sandbox, _, result_file, launcher = self._files(task)
        if self._stop.is_set():
            return
        self._on_state(task, "running")
        # own session: stop() kills the worker with everything it started; its stderr goes
        # to a file, so a child left running in the background can never hold us up
        errors = result_file.with_name("worker.err")
        with errors.open("w") as err:
            proc = subprocess.Popen(
                ["/bin/bash", str(launcher)],
                cwd=sandbox,
                env=self._env(task, sandbox),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        with self._lock:
            self._procs.add(proc)
        try:
            proc.wait(timeout=self._task_timeout)
            detail = errors.read_text(errors="replace")[-2000:]
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            detail = f"worker exceeded {self._task_timeout:g} s"
        finally:
            with self._lock:
                self._procs.discard(proc)
        if not self._stop.is_set():
            self._on_done(task, self._outcome(result_file, detail))

    def _outcome(self, result_file: Path, detail: str) -> dict[str, str]:
        try:
            data = json.loads(result_file.read_text())
        except (OSError, ValueError):
            text = WORKER_LOST.format(worker=0, host=self._host)
            return {"exception": text + (f"\nworker output:\n{detail}" if detail else "")}
        if isinstance(data, dict) and isinstance(data.get("result"), str):
            return {"result": data["result"]}
        return {"exception": str(data.get("exception") if isinstance(data, dict) else data)}

    def _submit_block(self, task: Task) -> None:
        sandbox, _, result_file, launcher = self._files(task)
        name = f"gc-block-{task.config_key[:8]}-{task.id[:8]}"
        options = task.config.sbatch_options(name, result_file.with_name("block.out"))
        job_id, error = self.slurm.submit(
            launcher.read_text(), options, cwd=sandbox, environment=self._env(task, sandbox)
        )
        if job_id is None:
            # the provider could not start a block: the endpoint reports the task failed
            text = f"globus_compute_endpoint.providers.BlockError: sbatch refused: {error}\n"
            self._on_done(task, {"exception": text})
            return
        task.job_id = job_id
        self._on_job(job_id)
        with self._lock:
            self._blocks[job_id] = task
        self._on_state(task, "waiting-for-nodes")

    # ------------------------------------------------------------------ block monitor
    def _watch(self) -> None:
        while not self._stop.wait(self._poll_interval):
            try:
                self.poll_blocks()
            except Exception:
                log.exception("block monitor round failed")

    def poll_blocks(self) -> None:
        """One round: one ``squeue`` for every live block; end the tasks of ended blocks."""
        with self._lock:
            blocks = dict(self._blocks)
        if not blocks:
            return
        try:
            rows = self.slurm.squeue(list(blocks))
        except SlurmError as exc:
            log.warning("squeue failed, block states kept: %s", exc)
            return
        seen = {row["jobid"]: row for row in rows}
        for job_id, task in blocks.items():
            row = seen.get(job_id)
            state = row["state"] if row else ""
            if state in _PENDING_SLURM:
                self._on_state(task, "waiting-for-nodes")
            elif state in _RUNNING_SLURM:
                self._on_state(task, "running")
            else:  # gone from the queue or in a final state: the worker is done or lost
                self._block_ended(job_id, task, (row or {}).get("nodelist") or self._host)

    def _block_ended(self, job_id: str, task: Task, host: str) -> None:
        outcome = self._outcome(task_result_file(self.work_dir, task.id), "")
        if "exception" in outcome and "WorkerLost" in outcome["exception"]:
            # a real endpoint notices a lost worker only when its heartbeats stop
            now = time.monotonic()
            with self._lock:
                noticed = self._lost.setdefault(job_id, now)
            if now - noticed < self._lost_delay():
                return
            outcome = {"exception": WORKER_LOST.format(worker=0, host=host)}
        with self._lock:
            self._blocks.pop(job_id, None)
            self._lost.pop(job_id, None)
        self._on_done(task, outcome)


def task_result_file(work_dir: Path, task_id: str) -> Path:
    return work_dir / ".gc" / task_id / "result.json"
