"""The local demo: every plugin family driving pilots on a real Slurm cluster, no account.

For each family (``localsite/families.py``) a loopback gateway speaks the facility's API in
front of the local Slurm cluster, and the family's example queue of the queue config
(etc/panda_queueconfig.example.json) is pointed at it: endpoint and credential keys, plus the
local cluster's shape (2 nodes x 2 pilots, generic profile, a fake CVMFS with a stub pilot).
The plugins are built from that queue exactly as Harvester's PluginFactory builds them, anew
every cycle, and driven like Harvester's agents drive them:

1. a throttler pass (the WorkerAdjuster's ``to_be_throttled``): the queue must be open;
2. submit three workers: one whose pilots all succeed, one killed by the sweeper once it
   runs, one whose pilot on node 1, slot 1 exits 3;
3. monitor cycles until every worker is final (expected: finished, cancelled, failed);
4. the sweeper's ``sweep_worker`` for each.

Families run side by side, one thread each; every state change is printed as it happens.  The
run ends with one table row per worker and the requests each gateway answered, and exits
non-zero when anything differed from the expectation.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .edge.lifecycle import BATCH_LOG_COPY, PILOTS, attr
from .facilities.registry import forget_clients
from .harvester import HAVE_HARVESTER, WorkSpec
from .localsite.fake_cvmfs import make_fake_cvmfs
from .localsite.families import LoopbackFamily, LoopbackSite
from .localsite.slurm import LocalSlurm
from .queue_config import build_plugin, merged_queue, plugin_section

FINAL = ("finished", "failed", "cancelled", "missed")
#: what each demo worker's pilots do: (seconds they run, {(node index, slot): exit code})
ROLES: dict[str, tuple[int, dict[tuple[int, int], int]]] = {
    "finish": (6, {}),
    "kill": (120, {}),
    "pilot-fails": (4, {(1, 1): 3}),
}
EXPECTED = {"finish": "finished", "kill": "cancelled", "pilot-fails": "failed"}

#: the demo stub pilot: it reads what to do from a control file per worker
STUB = """#!/bin/bash
env | sort > env.txt
ctl={ctl}/"$HARVESTER_WORKER_ID"
sleep_s=5; rc=0
if [ -f "$ctl" ]; then . "$ctl"; fi
echo "stub pilot of worker $HARVESTER_WORKER_ID on $HARVESTER_NODE slot $HARVESTER_SLOT"
trap 'exit 143' TERM
sleep "$sleep_s" &
wait $! || exit 143
var="rc_${{HARVESTER_NODE_INDEX}}_${{HARVESTER_SLOT}}"
exit "${{!var:-$rc}}"
"""

_print_lock = threading.Lock()
_t0 = time.monotonic()


def say(family: str, text: str) -> None:
    with _print_lock:
        print(f"[{time.monotonic() - _t0:6.1f}s] {family:<7} {text}", flush=True)


def default_config() -> Path:
    """etc/panda_queueconfig.example.json of the source tree (or of the current directory)."""
    here = Path(__file__).resolve().parents[2] / "etc" / "panda_queueconfig.example.json"
    return here if here.exists() else Path("etc/panda_queueconfig.example.json")


def local_shape(root: Path, family: str) -> dict[str, Any]:
    """The local cluster's shape for the example queue: 2 nodes x 2 pilots on the generic
    profile, the fake CVMFS, short walltime; the facility's partition and QOS do not exist
    here.  ``None`` removes a key (the plugins treat None as unset)."""
    return {
        "profile": "generic", "nNode": 2, "pilotsPerNode": 2, "nCorePerNode": 2,
        "gpusPerNode": 0, "qos": None, "partition": None, "constraint": None,
        "walltimeSeconds": 600, "cvmfsRoot": str(root / "cvmfs"), "cvmfsCheckTimeout": 10,
        "cvmfsexecPath": None, "cvmfsFallback": None,
        "remoteWorkDir": str(root / "site" / family / "${workerID}"),
        "maxConcurrentAllocations": 0, "healthCacheSeconds": 2, "missingGraceSeconds": 120,
    }  # fmt: skip


def loopback_queue(
    config: Mapping[str, Any], name: str, site: LoopbackSite, shape: Mapping[str, Any], ap: str
) -> dict[str, Any]:
    """Queue ``name`` after its template, pointed at the loopback site: ``common`` gets the
    site's keys and the access point; the submitter the local shape."""
    queue = merged_queue(config, name)
    common = dict(queue.get("common") or {})
    common.update(site.common)
    common["accessPoint"] = ap
    queue["common"] = common
    for section in ("submitter", "monitor", "sweeper"):
        conf = dict(queue[section])
        conf.pop("accessPoint", None)
        if section == "submitter":
            conf.update(shape)
        queue[section] = conf
    queue["messenger"] = {**queue.get("messenger", {}), "accessPoint": ap}
    return queue


@dataclass
class DemoWorker:
    family: str
    role: str
    ws: WorkSpec
    states: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float | None = None
    diag: str = ""
    #: the batch log's copy handed to Harvester, read before the sweep deletes it
    batch_log: str = "-"

    def note(self, status: str | None) -> bool:
        """Record a status; True when it changed."""
        if status is None or (self.states and self.states[-1] == status):
            return False
        self.states.append(status)
        if status in FINAL and self.ended is None:
            self.ended = time.monotonic()
        return True


@dataclass
class FamilyRun:
    """One family's demo: its gateway, queue and workers, and what went wrong."""

    family: LoopbackFamily
    root: Path
    config: Mapping[str, Any]
    slurm: LocalSlurm
    first_id: int
    timeout: float
    site: LoopbackSite | None = None
    workers: list[DemoWorker] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.family.name

    def plugin(self, queue: Mapping[str, Any], section: str) -> Any:
        return build_plugin(plugin_section(self.family.queue, queue, section))

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # the demo reports, never hides, a crash
            self.problems.append(f"{type(exc).__name__}: {exc}")
            say(self.name, f"ERROR {type(exc).__name__}: {exc}")
        finally:
            if self.site is not None:
                self.requests = dict(self.site.gateway.counters)
                self._cancel_leftovers()
                self.site.gateway.stop()

    def _run(self) -> None:
        qname = self.family.queue
        if qname not in self.config:
            raise ValueError(f"queue {qname} is not in the queue config")
        raw = merged_queue(self.config, qname)
        self.site = self.family.start(self.root, self.slurm, raw)
        say(self.name, f"{qname}: {self.site.label}")
        ap = str(self.root / "harvester" / self.name / "${workerID}")
        # the facility-side base directory exists at a real site (jobs start in it)
        (self.root / "site" / self.name).mkdir(parents=True, exist_ok=True)
        queue = loopback_queue(self.config, qname, self.site, local_shape(self.root, self.name), ap)
        self._throttle(queue)
        if self.problems:
            return
        self._submit(queue, ap)
        self._follow(queue)
        self._sweep(queue)

    def _throttle(self, queue: Mapping[str, Any]) -> None:
        section = plugin_section(self.family.queue, queue, "submitter")
        view = SimpleNamespace(
            queueName=self.family.queue,
            submitter=section,
            walltimeLimit=queue.get("walltimeLimit"),
        )
        throttled, why = self.plugin(queue, "throttler").to_be_throttled(view)
        say(self.name, f"throttler: {'THROTTLED: ' + why if throttled else 'open'}")
        if throttled:
            self.problems.append(f"throttled: {why}")

    def _submit(self, queue: Mapping[str, Any], ap: str) -> None:
        ctl = self.root / "ctl"
        for n, role in enumerate(ROLES):
            seconds, exits = ROLES[role]
            ws = WorkSpec()
            ws.workerID, ws.computingSite = self.first_id + n, self.family.queue
            ws.mapType, ws.nCore, ws.maxWalltime = WorkSpec.MT_NoJob, 4, 1800
            ws.status, ws.accessPoint = WorkSpec.ST_pending, ap
            os.makedirs(ws.get_access_point(), exist_ok=True)
            lines = [f"sleep_s={seconds}"] + [f"rc_{k[0]}_{k[1]}={v}" for k, v in exits.items()]
            (ctl / str(ws.workerID)).write_text("\n".join(lines) + "\n")
            self.workers.append(DemoWorker(self.name, role, ws))
        answers = self.plugin(queue, "submitter").submit_workers([w.ws for w in self.workers])
        for w, (ok, message) in zip(self.workers, answers, strict=True):
            w.started = time.monotonic()
            say(self.name, f"worker {w.ws.workerID} ({w.role}) submit: {ok} {message}")
            if ok is True:
                w.ws.status = WorkSpec.ST_submitted
                w.note(WorkSpec.ST_submitted)
            else:
                w.ws.status = WorkSpec.ST_missed
                w.note(WorkSpec.ST_missed)
                self.problems.append(f"worker {w.ws.workerID} not submitted: {message}")

    def _follow(self, queue: Mapping[str, Any]) -> None:
        deadline = time.monotonic() + self.timeout
        killed = False
        last_kill: tuple[bool, str] | None = None
        while True:
            live = [w for w in self.workers if w.ws.status not in FINAL]
            if not live:
                return
            if time.monotonic() > deadline:
                self.problems.append(f"timed out after {self.timeout:.0f}s with workers live")
                if last_kill is not None and not killed:
                    self.problems.append(f"kill of the victim never confirmed: {last_kill[1]}")
                return
            ok, answers = self.plugin(queue, "monitor").check_workers([w.ws for w in live])
            if ok is not True or len(answers) != len(live):
                self.problems.append(f"check_workers answered {ok}, {len(answers)} answers")
                return
            for w, (status, diag) in zip(live, answers, strict=True):
                if status is not None:
                    w.ws.status = status
                    w.diag = diag
                if w.note(status):
                    job = w.ws.batchID or "-"
                    say(self.name, f"worker {w.ws.workerID} -> {status:<9} job {job} {diag[:90]}")
            victim = next(w for w in self.workers if w.role == "kill")
            others_done = all(w.ws.status in FINAL for w in self.workers if w is not victim)
            # killed once it runs (or, on a busy cluster, once the others are done: a
            # pending job is killed just the same)
            # a False answer is asked again next cycle, as Harvester's sweeper agent does (a
            # task-based service reads its cancel a cycle later)
            if not killed and (victim.ws.status == WorkSpec.ST_running or others_done):
                result = self.plugin(queue, "sweeper").kill_workers([victim.ws])[0]
                if result != last_kill:
                    say(self.name, f"sweeper kill_workers(worker {victim.ws.workerID}): {result}")
                killed, last_kill = bool(result[0]), result
            time.sleep(2)

    def _sweep(self, queue: Mapping[str, Any]) -> None:
        for w in self.workers:
            w.batch_log = log_text(w.ws)
        sweeper = self.plugin(queue, "sweeper")
        for w in self.workers:
            ok, message = sweeper.sweep_worker(w.ws)
            if not ok:
                self.problems.append(f"sweep of worker {w.ws.workerID}: {message}")
        for w in self.workers:
            want = EXPECTED[w.role]
            if w.ws.status != want:
                self.problems.append(
                    f"worker {w.ws.workerID} ({w.role}) ended {w.ws.status}, expected {want}: "
                    f"{w.diag[:160]}"
                )
        say(self.name, "swept; " + ("all as expected" if not self.problems else "PROBLEMS"))

    def _cancel_leftovers(self) -> None:
        """Jobs of a failed run must not keep the shared cluster busy."""
        assert self.site is not None
        created = self.site.gateway.jobs_created
        if created and self.problems:
            try:
                self.slurm.scancel(created)
            except Exception:  # noqa: BLE001 - best effort after a failure
                pass


def pilots_text(ws: WorkSpec) -> str:
    pilots = attr(ws, PILOTS)
    if not isinstance(pilots, dict) or pilots.get("none"):
        return "-"
    return f"{pilots.get('n', 0)} ({pilots.get('failed', 0)} failed)"


def log_text(ws: WorkSpec) -> str:
    """The batch log's copy handed to Harvester (``set_log_file``), by size."""
    copy = attr(ws, BATCH_LOG_COPY)
    if not copy or copy == "missing" or not os.path.exists(copy):
        return str(copy or "-")
    lines = len(Path(copy).read_text(encoding="utf-8", errors="replace").splitlines())
    return f"{lines} lines"


def table(runs: list[FamilyRun]) -> str:
    head = ("family", "worker", "tag", "batchID", "states seen", "pilots", "exit", "errorCode",
            "time", "batch log")  # fmt: skip
    rows = [head]
    for run in runs:
        for w in run.workers:
            ws = w.ws
            took = f"{(w.ended or time.monotonic()) - w.started:.0f}s" if w.started else "-"
            rows.append((
                run.name, str(ws.workerID), str(attr(ws, "edgeTag") or "-"),
                str(ws.batchID or "-"), " > ".join(w.states), pilots_text(ws),
                "-" if ws.nativeExitCode is None else str(ws.nativeExitCode),
                str(ws.errorCode or "-"), took, w.batch_log,
            ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows)


def request_lines(runs: list[FamilyRun]) -> list[str]:
    lines = []
    for run in runs:
        total = sum(run.requests.values())
        top = sorted(run.requests.items(), key=lambda kv: -kv[1])[:6]
        detail = ", ".join(f"{route} {n}" for route, n in top)
        lines.append(f"{run.name:<7} {total:>4} requests for {len(run.workers)} workers ({detail})")
    return lines


def prepare_root(root: Path) -> Path:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    root = root.resolve()
    wrapper = make_fake_cvmfs(root / "cvmfs")
    (root / "ctl").mkdir()
    wrapper.write_text(STUB.format(ctl=root / "ctl"))
    return root


def run_demo(
    root: Path,
    families: list[LoopbackFamily],
    config_path: Path | None = None,
    timeout: float = 300.0,
) -> int:
    """Run the demo for ``families`` in ``root`` (wiped first); 0 when all went as expected."""
    saved = os.environ.get("HARVESTER_ID")
    if not HAVE_HARVESTER:  # a fresh id: tags never meet jobs of earlier runs in accounting
        os.environ["HARVESTER_ID"] = f"demo{uuid.uuid4().hex[:6]}"
    try:
        return _run(root, families, config_path, timeout)
    finally:
        if saved is None:
            os.environ.pop("HARVESTER_ID", None)
        else:
            os.environ["HARVESTER_ID"] = saved


def _run(
    root: Path, families: list[LoopbackFamily], config_path: Path | None, timeout: float
) -> int:
    global _t0
    _t0 = time.monotonic()
    config_path = config_path or default_config()
    config = json.loads(config_path.read_text())
    root = prepare_root(root)
    slurm = LocalSlurm()
    if not slurm.available():
        print("the local Slurm cluster does not answer: run `harvester-edge cluster start` (root)")
        return 1
    print(f"harvester-edge demo: {len(families)} families from {config_path}, files in {root}")
    runs = [
        FamilyRun(f, root, copy.deepcopy(config), slurm, 100 * (i + 1) + 1, timeout)
        for i, f in enumerate(families)
    ]
    threads = [threading.Thread(target=r.run, name=f"demo-{r.name}") for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    forget_clients()
    took = time.monotonic() - _t0
    print("\nlifecycle of every worker:")
    print(table(runs))
    print("\nrequests answered by each family's gateway:")
    print("\n".join(request_lines(runs)))
    problems = [f"{r.name}: {p}" for r in runs for p in r.problems]
    if problems:
        print(f"\nDEMO FAILED after {took:.0f}s:")
        print("\n".join(f"  {p}" for p in problems))
        return 1
    print(f"\ndemo OK in {took:.0f}s: every worker of {len(runs)} families ended as expected")
    return 0
