"""SFAPI family benchmarks against the loopback gateway over the real Slurm cluster.

Run: ``python benchmarks/bench_sfapi.py [--quick] [--rows a,b,...]`` (needs
``scripts/slurm-cluster.sh start`` and ``SLURM_CONF``).  Prints one JSON object of figures
and exits 1 when a target is missed (or a row could not run).

How each row is measured (the measured call only, never its setup):

- ``requests``: HTTP requests the gateway counted, total and by its counter key
  (``requests_by_key``); the gateway runs in its own process and is reached through its
  loopback admin endpoints, which are neither counted nor delayed;
- ``wall_s``: ``time.perf_counter``;
- ``cpu_s``: CPU seconds of this process, all threads (``time.process_time``): the plugins
  and the SFAPI client only, since the gateway is another process (its own CPU, Slurm
  commands included, is ``gateway_cpu_s``);
- ``rss_peak_mib``: peak RSS of this process during the call: ``ru_maxrss`` read after the
  kernel's high-water mark was reset with ``/proc/self/clear_refs`` just before the call
  (``rss_start_mib`` is the RSS at that moment); where the mark cannot be reset the peak is
  since process start and ``meta.rss_method`` says so.

Rows and targets (``chunk`` is the queues' ``chunkSize``: the plugins' default 500, or
``--chunk-size``; earlier figures were measured with 200):

==================  =========================================================================
construct           1,000 submitters + 1,000 monitors constructed: 0 requests
check_after_finish  500 workers whose jobs ended (in Slurm accounting), 450 with a
                    ``worker-summary.json`` in their work dir, 50 without; 50 ms latency;
                    the cycle reporting them final: < 2 s; reading the summaries costs
                    <= ceil(500/chunk)+2 requests (the job queries of the cycle are reported
                    beside them: one live and one accounting request per chunk);
                    a second check reads no file again (no command/download request)
submit_500          submit_workers of 500 workers from a cold client, 50 ms latency: < 10 s
submit_200          the same with 200 workers: < 2 s
kill_500            kill_workers of 500 workers with held jobs, 50 ms latency: the cancel part
                    (``client.cancel``) < 1 s and <= ceil(500/chunk)+2 requests; the whole
                    call (cancel + confirmation polls) reported with its request breakdown
monitor_1000        one check of 1,000 held jobs: <= ceil(1000/chunk)+2 requests, no token
monitor_10000       one check of 10,000 workers: 1,000 held jobs and 9,000 unknown job ids
                    (they reach the accounting query too; ``--real-10000``: 10,000 held
                    jobs): < 2 s; ``variants_info`` repeats it with the other chunkSize
                    (500, or 200 when chunk is 500) and with queryConcurrency=8 (figures
                    only, no target)
token_grants        3 threads making requests through one shared client for 60 s with 20 s
                    tokens (``--quick``: 15 s with 5 s tokens): token grants <= 60/20+1
==================  =========================================================================

``client_calls`` (diagnostics) times the shared client's ``poll``, ``find`` (lookup by tag),
``read_texts`` and ``cancel`` calls inside the measured call (the ``FacilityClient``
interface, ``facilities/base.py``), and the two halves of each poll apart: ``poll.squeue``
and ``poll.sacct`` (accounting, for the ids gone from the queue or final there);
``cancel`` and ``read_texts`` also get their own requests.
Every Slurm job created here (directly or through the gateway) is cancelled at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("SLURM_CONF", "/tmp/hedge-slurm/etc/slurm.conf")
os.environ["HARVESTER_ID"] = f"bench{uuid.uuid4().hex[:6]}"

import httpx  # noqa: E402

from harvester_edge.edge.health import GATE  # noqa: E402
from harvester_edge.edge.lifecycle import PILOTS, TAG, WORK_DIR, attr  # noqa: E402
from harvester_edge.edge.pilot_summary import SUMMARY_FILE  # noqa: E402
from harvester_edge.edge.tags import job_tag  # noqa: E402
from harvester_edge.errors import EdgeAPIError  # noqa: E402
from harvester_edge.facilities.registry import forget_clients  # noqa: E402
from harvester_edge.harvester import WorkSpec, harvester_id  # noqa: E402
from harvester_edge.localsite.sfapi_gateway import make_client_key  # noqa: E402
from harvester_edge.localsite.slurm import LocalSlurm, default_slurm_conf  # noqa: E402
from harvester_edge.plugins.sfapi import SFAPIMonitor, SFAPISubmitter, SFAPISweeper  # noqa: E402

QUEUE = "BENCH_SFAPI"
#: the queues' chunkSize unless --chunk-size: the earlier figures were measured with 200
CHUNK = 500  # the plugins' default chunkSize (SFAPI's ids per query)
LATENCY = 0.05
ROWS = (
    "construct",
    "check_after_finish",
    "submit_500",
    "submit_200",
    "kill_500",
    "monitor_1000",
    "monitor_10000",
    "token_grants",
)
#: rows run in this order: finishing jobs get time to reach accounting, and the 500 submit
#: tasks (listed by every later ``GET /tasks``) come after the rows that read tasks
RUN_ORDER = (
    "construct",
    "monitor_1000",
    "monitor_10000",
    "check_after_finish",
    "kill_500",
    "submit_200",
    "submit_500",
    "token_grants",
)

# worker id ranges, one per row; job tags derive from them
MONITOR_IDS = 1  # 1..10,000 (the first 1,000 with held jobs)
FINISHED_IDS = 40_001
KILL_IDS = 50_001
SUBMIT_IDS = 60_001
WARM_ID = 99_999
#: batch ids Slurm never gave (its largest job id is 67,108,863)
UNKNOWN_JOB_IDS = 60_000_000

HELD = """#!/bin/bash
#SBATCH --job-name={tag}
#SBATCH --hold
#SBATCH --time=5
#SBATCH --output=/dev/null
true
"""
ENDS_AT_ONCE = """#!/bin/bash
#SBATCH --job-name={tag}
#SBATCH --time=1
#SBATCH --output=/dev/null
true
"""
# The submitter's template (stock placeholder); held, so the jobs never run.
TEMPLATE = """#!/bin/bash
#SBATCH --job-name={jobName}
#SBATCH --hold
#SBATCH --time=5
#SBATCH --output=/dev/null
true
"""


# measuring ---------------------------------------------------------------------------------
def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


RESETTABLE_PEAK = _can_reset_peak()
RSS_METHOD = (
    "ru_maxrss after resetting the high-water mark (/proc/self/clear_refs 5) before the call"
    if RESETTABLE_PEAK
    else "ru_maxrss since process start (the high-water mark cannot be reset here)"
)


def rss_now_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> None:
    if RESETTABLE_PEAK:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# the gateway, in its own process -----------------------------------------------------------
class Gateway:
    """The loopback SFAPI gateway run as ``python -m harvester_edge.localsite.sfapi_gateway``,
    steered through its admin endpoints (loopback only, not counted, never delayed)."""

    def __init__(self, root: Path, key: Path):
        info = self._start(
            "sfapi_gateway", "gateway",
            ["--key-file", str(key), "--workdir", str(root), "--file-root", str(root)],
            admin_timeout=30,
        )  # fmt: skip
        self.api_url: str = info["api_url"]
        self.token_url: str = info["token_url"]

    def _start(
        self, module: str, what: str, args: list[str], admin_timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Start ``python -m harvester_edge.localsite.<module> <args>`` and read its start-up
        answer (one JSON line, which names the admin URL); every family's gateway starts so."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"harvester_edge.localsite.{module}", *args],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{what} did not start (exit {self.proc.wait()})")
        info: dict[str, Any] = json.loads(line)
        self._admin = httpx.Client(base_url=info["admin_url"], timeout=admin_timeout)
        self._ticks = os.sysconf("SC_CLK_TCK")
        return info

    def state(self) -> dict[str, Any]:
        answer = self._admin.get("/state")
        answer.raise_for_status()
        return dict(answer.json())

    def counters(self) -> Counter[str]:
        return Counter(self.state()["counters"])

    def jobs_created(self) -> list[str]:
        return list(self.state()["jobs_created"])

    def reset_counters(self) -> None:
        self._admin.post("/reset_counters").raise_for_status()

    def knobs(self, **values: Any) -> None:
        self._admin.post("/knobs", json=values).raise_for_status()

    def cpu_seconds(self) -> float:
        """CPU of the gateway process and its waited-for children (the Slurm commands)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / self._ticks

    def stop(self) -> None:
        self._admin.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


#: what each spied client method is reported as, from its arguments: ``SFAPIClient.poll``
#: runs ``_query(ids, accounting)`` once for squeue and once for sacct
SPY_KEYS: dict[str, Callable[[tuple[Any, ...], dict[str, Any]], str]] = {
    "_query": lambda args, kwargs: (
        "poll.sacct" if (args[1] if len(args) > 1 else kwargs["accounting"]) else "poll.squeue"
    ),
}
#: the client methods whose calls ``client_calls`` reports
POLL = ["poll", "_query"]


class ClientSpy:
    """Where a measured call's wall time goes: the shared client's calls, timed (diagnostics
    only; wrapping adds microseconds).  For calls that never overlap (``with_requests``) the
    gateway's counters are also read around each call, so their requests are known apart."""

    def __init__(self, gw: Gateway):
        self.gw = gw
        self._lock = threading.Lock()
        self._walls: dict[str, list[float]] = {}
        self._requests: dict[str, Counter[str]] = {}

    @contextmanager
    def watch(
        self, client: Any, names: list[str], with_requests: Iterable[str] = ()
    ) -> Iterator[ClientSpy]:
        counted = set(with_requests)
        for name in names:
            setattr(client, name, self._wrap(name, getattr(client, name), name in counted))
        try:
            yield self
        finally:
            for name in names:
                delattr(client, name)  # the class's method again

    def _wrap(self, name: str, method: Callable[..., Any], count: bool) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            key = SPY_KEYS[name](args, kwargs) if name in SPY_KEYS else name
            before = self.gw.counters() if count else None
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                wall = time.perf_counter() - start
                delta = self.gw.counters() - before if before is not None else None
                with self._lock:
                    self._walls.setdefault(key, []).append(wall)
                    if delta is not None:
                        self._requests.setdefault(key, Counter()).update(delta)

        return timed

    def summary(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for key, walls in sorted(self._walls.items()):
            out[key] = {
                "calls": len(walls),
                "total_s": round(sum(walls), 3),
                "max_s": round(max(walls), 3),
            }
            if key in self._requests:
                out[key]["requests"] = sum(self._requests[key].values())
                out[key]["requests_by_key"] = dict(sorted(self._requests[key].items()))
        return out


# the bench ---------------------------------------------------------------------------------
class Bench:
    """The SFAPI rows, and the generic helpers every family's bench inherits (bench_s3m.py and
    bench_iri.py through ``_family.FamilyBench``): jobs by tag, cleanup, measuring, targets,
    the latency knob, one row run."""

    queue = QUEUE
    submitter_cls: Any = SFAPISubmitter
    monitor_cls: Any = SFAPIMonitor

    def __init__(self, root: Path, quick: bool, real_10000: bool = False, chunk: int = CHUNK):
        self.root = root
        self.chunk = chunk
        self.quick = quick
        self.real_10000 = real_10000
        self.slurm = LocalSlurm(default_slurm_conf())
        self.hid = harvester_id()
        self.created: list[str] = []  # Slurm ids of the jobs sbatch-ed here
        key = root / "key.pem"
        make_client_key(key)
        (root / "template.sh").write_text(TEMPLATE)
        self.gw = Gateway(root, key)
        self.conf: dict[str, Any] = {
            "queueName": QUEUE, "apiUrl": self.gw.api_url, "tokenUrl": self.gw.token_url,
            "keyFile": str(key), "machine": "perlmutter", "profile": "generic",
            "templateFile": str(root / "template.sh"),
            "remoteWorkDir": str(root / "work" / "${workerID}"),
            "accessPoint": str(root / "ap" / "${workerID}"),
            "chunkSize": chunk, "submitConcurrency": 16, "readTimeout": 60, "callDeadline": 120,
        }  # fmt: skip
        self.rows: dict[str, dict[str, Any]] = {}
        self.checks: dict[str, bool] = {}
        self.setup_s: dict[str, float] = {}
        self._held: list[WorkSpec] | None = None
        self._ending: list[WorkSpec] | None = None
        self._warm: WorkSpec | None = None

    # workers and jobs ------------------------------------------------------------------
    def tag(self, wid: int) -> str:
        return job_tag(self.hid, self.queue, wid)

    def worker(self, wid: int, job_id: str | None = None) -> WorkSpec:
        """A worker as the submitter leaves it (built like tests/sfapi/conftest.py)."""
        ws = WorkSpec()
        ws.workerID = wid
        ws.computingSite = self.queue
        ws.mapType = WorkSpec.MT_NoJob
        ws.nCore = 1
        ws.maxWalltime = 600
        ws.accessPoint = str(self.root / "ap" / str(wid))
        if job_id is None:
            ws.status = WorkSpec.ST_pending
        else:
            ws.status = WorkSpec.ST_submitted
            ws.batchID = job_id
            ws.set_work_attributes({TAG: self.tag(wid), WORK_DIR: self.work_dir(wid)})
        return ws

    def work_dir(self, wid: int) -> str:
        return str(self.root / "work" / str(wid))

    def sbatch_tagged(self, template: str, wids: Iterable[int]) -> list[str]:
        """One job per worker id, named by the worker's tag; 8 sbatch at a time."""
        scripts = [template.replace("{tag}", self.tag(w)) for w in wids]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda s: self.slurm.sbatch(s, cwd=str(self.root)), scripts))
        ids = [job_id for job_id, _ in results if job_id]
        self.created += ids
        errors = [error for job_id, error in results if not job_id]
        if errors:
            raise RuntimeError(f"sbatch failed for {len(errors)} jobs: {errors[0]}")
        return ids

    def held_workers(self) -> list[WorkSpec]:
        """1,000 workers with held jobs (shared by the two monitor rows)."""
        if self._held is None:
            start = time.perf_counter()
            wids = range(MONITOR_IDS, MONITOR_IDS + 1000)
            ids = self.sbatch_tagged(HELD, wids)
            self._held = [self.worker(w, j) for w, j in zip(wids, ids, strict=True)]
            self.setup_s["sbatch_1000_held"] = round(time.perf_counter() - start, 1)
        return self._held

    def start_ending_jobs(self) -> None:
        """500 jobs that end at once, started early so accounting has them when needed."""
        if self._ending is None:
            start = time.perf_counter()
            wids = range(FINISHED_IDS, FINISHED_IDS + 500)
            ids = self.sbatch_tagged(ENDS_AT_ONCE, wids)
            self._ending = [self.worker(w, j) for w, j in zip(wids, ids, strict=True)]
            self.setup_s["sbatch_500_ending"] = round(time.perf_counter() - start, 1)

    def warm(self, conf: dict[str, Any] | None = None) -> None:
        """Token and machine status cached, as in a running agent: one check of one worker."""
        if self._warm is None:
            self._warm = self.worker(WARM_ID, self.sbatch_tagged(HELD, [WARM_ID])[0])
        ok, answers = SFAPIMonitor(**(conf or self.conf)).check_workers([self._warm])
        if answers[0][0] is None:
            raise RuntimeError(f"warm-up check failed: {answers[0][1]}")

    def cleanup(self) -> dict[str, Any]:
        """Cancel every job created here or through the gateway."""
        ids = list(self.created)
        try:
            ids += self.gw.jobs_created()
        except httpx.HTTPError:
            pass
        failed = 0
        for i in range(0, len(ids), 500):
            if self.slurm.scancel(ids[i : i + 500]) is not None:
                failed += 1
        return {"jobs_cancelled": len(ids), "scancel_calls_with_messages": failed}

    # measuring -------------------------------------------------------------------------
    def budget(self, n: int) -> int:
        """Requests allowed for ``n`` workers: one per chunk, plus two."""
        return math.ceil(n / self.chunk) + 2

    def measure(self, call: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
        gc.collect()
        self.gw.reset_counters()
        gw_cpu = self.gw.cpu_seconds()
        rss_start = rss_now_mib()
        reset_peak_rss()
        cpu = time.process_time()
        start = time.perf_counter()
        result = call()
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
        peak = peak_rss_mib()
        counters = self.gw.counters()
        return result, {
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "rss_start_mib": round(rss_start, 1),
            "rss_peak_mib": round(peak, 1),
            "requests": sum(counters.values()),
            "requests_by_key": dict(sorted(counters.items())),
            "gateway_cpu_s": round(self.gw.cpu_seconds() - gw_cpu, 3),
        }

    def measure_check(
        self, workers: list[WorkSpec], conf: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """One check_workers by a new monitor (as Harvester builds one per cycle), with the
        client's poll, lookup and file-read calls timed."""
        conf = conf or self.conf
        spy = ClientSpy(self.gw)
        client = SFAPIMonitor(**conf).edge_client()
        with spy.watch(client, [*POLL, "find", "read_texts"], with_requests=["read_texts"]):
            result, fig = self.measure(lambda: SFAPIMonitor(**conf).check_workers(workers))
        fig["client_calls"] = spy.summary()
        return result, fig

    def target(self, row: str, name: str, value: Any, limit: str, met: bool) -> None:
        self.rows[row].setdefault("targets", {})[name] = {
            "value": value,
            "target": limit,
            "met": bool(met),
        }
        self.checks[f"{row}.{name}"] = bool(met)

    def target_at_most(self, row: str, name: str, value: Any, limit: float) -> None:
        """The target ``value <= limit`` (request budgets)."""
        self.target(row, name, value, f"<= {limit}", value <= limit)

    def target_wall(self, row: str, seconds: float) -> None:
        """The target ``wall_s < seconds`` of the row's figures."""
        wall = self.rows[row]["wall_s"]
        self.target(row, "wall", wall, f"< {seconds:g} s", wall < seconds)

    @contextmanager
    def latency(self) -> Iterator[None]:
        """The gateway delays every counted request by LATENCY inside the block."""
        self.gw.knobs(latency=LATENCY)
        try:
            yield
        finally:
            self.gw.knobs(latency=0)

    def row_name(self, name: str) -> str:
        """The key of a row's figures (bench_iri prefixes the API version)."""
        return name

    def run_row(self, row: str, errors: dict[str, str], **reset: Any) -> None:
        """Run ``row_<row>``; a row that cannot run is a missed target (``<key>.ran``), not a
        crash: its error is kept and the gateway's knobs set back (latency 0, ``reset``)."""
        key = self.row_name(row)
        try:
            getattr(self, f"row_{row}")()
        except Exception as exc:
            errors[key] = f"{type(exc).__name__}: {exc}"
            self.checks[f"{key}.ran"] = False
            self.gw.knobs(latency=0, **reset)

    # rows ------------------------------------------------------------------------------
    def row_construct(self) -> None:
        row = self.row_name("construct")

        def build() -> None:
            for _ in range(1000):
                self.submitter_cls(**self.conf)
                self.monitor_cls(**self.conf)

        _, fig = self.measure(build)
        fig["us_per_plugin"] = round(fig["wall_s"] / 2000 * 1e6, 1)
        self.rows[row] = fig
        self.target(row, "no_io", fig["requests"], "== 0", fig["requests"] == 0)

    def row_monitor_1000(self) -> None:
        workers = self.held_workers()
        self.warm()
        (_, answers), fig = self.measure_check(workers)
        statuses = Counter(a[0] or "None" for a in answers)
        fig.update(n=len(workers), statuses=dict(statuses))
        self.rows["monitor_1000"] = fig
        row, limit = "monitor_1000", self.budget(len(workers))
        self.target_at_most(row, "requests", fig["requests"], limit)
        tokens = fig["requests_by_key"].get("token", 0)
        self.target(row, "no_token", tokens, "== 0", tokens == 0)
        self.target(row, "all_submitted", dict(statuses), "all 'submitted'",
                    set(statuses) == {"submitted"})  # fmt: skip

    def row_monitor_10000(self) -> None:
        held = self.held_workers()
        workers = [self.worker(ws.workerID, ws.batchID) for ws in held]
        rest = range(MONITOR_IDS + len(held), MONITOR_IDS + 10_000)
        if self.real_10000:
            start = time.perf_counter()
            workers += [
                self.worker(w, j) for w, j in zip(rest, self.sbatch_tagged(HELD, rest), strict=True)
            ]
            self.setup_s["sbatch_9000_held"] = round(time.perf_counter() - start, 1)
            held = workers
        else:
            workers += [self.worker(w, str(UNKNOWN_JOB_IDS + w)) for w in rest]
        self.warm()
        (_, answers), fig = self.measure_check(workers)
        statuses = Counter(a[0] or "None" for a in answers)
        unknown_kept = sum(
            1 for a in answers[len(held) :] if a[0] == "submitted" and "not in accounting" in a[1]
        )
        fig.update(n=len(workers), real_jobs=len(held), unknown_ids=len(workers) - len(held),
                   statuses=dict(statuses), unknown_kept_submitted=unknown_kept,
                   request_budget_info=self.budget(len(workers)))  # fmt: skip
        # not targets: how the wall moves with the queue's knobs (same workers, warm client)
        variants = {}
        other = 200 if self.chunk == 500 else 500
        for name, change in ((f"chunkSize={other}", {"chunkSize": other}),
                             ("queryConcurrency=8", {"queryConcurrency": 8})):  # fmt: skip
            conf = {**self.conf, **change}
            self.warm(conf)
            _, var = self.measure_check(workers, conf)
            variants[name] = {k: var[k] for k in ("wall_s", "cpu_s", "requests", "gateway_cpu_s")}
        fig["variants_info"] = variants
        self.rows["monitor_10000"] = fig
        row = "monitor_10000"
        self.target(row, "wall", fig["wall_s"], "< 2 s", fig["wall_s"] < 2.0)
        self.target(row, "all_answered", dict(statuses), "all 'submitted'",
                    set(statuses) == {"submitted"})  # fmt: skip

    def row_check_after_finish(self) -> None:
        self.start_ending_jobs()
        assert self._ending is not None
        workers = self._ending
        start = time.perf_counter()
        states = self.wait_accounted([str(ws.batchID) for ws in workers], timeout=240)
        self.setup_s["wait_500_in_accounting"] = round(time.perf_counter() - start, 1)
        with_summary = self.write_summaries(workers)
        self.warm()
        with self.latency():
            (_, first), fig = self.measure_check(workers)
            (_, second), again = self.measure_check(workers)
        row, n = "check_after_finish", len(workers)
        final = {"finished", "failed", "cancelled"}
        summarised = sum(
            1
            for ws, a in zip(workers, first, strict=True)
            if ws.workerID in with_summary and "pilots," in a[1]
        )
        remembered_none = sum(
            1
            for ws in workers
            if ws.workerID not in with_summary and attr(ws, PILOTS) == {"none": True}
        )
        remembered_read = sum(
            1 for ws in workers if ws.workerID in with_summary and "n" in (attr(ws, PILOTS) or {})
        )
        fig.update(
            n=n, latency_s=LATENCY, slurm_states=states, with_summary_file=len(with_summary),
            statuses=dict(Counter(a[0] or "None" for a in first)),
            diagnoses_with_pilot_summary=summarised, sample_diag=first[0][1][:160],
            pilots_remembered_read=remembered_read, pilots_remembered_none=remembered_none,
            request_budget=self.budget(n),
        )  # fmt: skip
        again.update(
            statuses=dict(Counter(a[0] or "None" for a in second)),
            same_answers=sum(1 for a, b in zip(first, second, strict=True) if a == b),
        )
        fig["second_check"] = again
        self.rows[row] = fig
        self.target_wall(row, 2.0)
        file_reads = sum(v for k, v in fig["requests_by_key"].items()
                         if k in ("command", "utilities", "task", "tasks"))  # fmt: skip
        fig["summary_read_requests"] = file_reads
        self.target_at_most(row, "summary_read_requests", file_reads, self.budget(n))
        self.target(row, "all_final", fig["statuses"], "all final",
                    set(fig["statuses"]) <= final)  # fmt: skip
        self.target(row, "summaries_used", summarised, f"== {len(with_summary)}",
                    summarised == len(with_summary))  # fmt: skip
        self.target(row, "no_file_remembered", remembered_none, f"== {n - len(with_summary)}",
                    remembered_none == n - len(with_summary))  # fmt: skip
        reads = {k: v for k, v in again["requests_by_key"].items()
                 if k in ("command", "utilities", "task", "tasks")}  # fmt: skip
        self.target(row, "second_check_reads_no_file", reads, "no command/download/task request",
                    not reads)  # fmt: skip
        self.target(row, "second_check_same_answers", again["same_answers"], f"== {n}",
                    again["same_answers"] == n)  # fmt: skip

    def wait_accounted(self, ids: list[str], timeout: float) -> dict[str, int]:
        """Wait until every job has left the queue and accounting shows it ended."""
        deadline = time.monotonic() + timeout
        while True:
            queued = self.slurm.squeue(jobids=ids)
            rows = self.slurm.sacct(jobids=ids)
            states = Counter(r["state"].split()[0] for r in rows)
            ended = sum(v for k, v in states.items() if k in ("COMPLETED", "FAILED", "CANCELLED"))
            if not queued and ended == len(ids):
                return dict(states)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"jobs not all ended in accounting after {timeout:.0f}s: "
                    f"{len(queued)} queued, accounting {dict(states)}"
                )
            time.sleep(2)

    def write_summaries(self, workers: list[WorkSpec]) -> set[int]:
        """worker-summary.json (pilot_summary.py's format) for 9 workers in 10; one in 10 of
        those reports a failed pilot.  Returns the ids of the workers with a file."""
        done: set[int] = set()
        for k, ws in enumerate(workers):
            work_dir = Path(self.work_dir(ws.workerID))
            work_dir.mkdir(parents=True, exist_ok=True)
            if k % 10 == 9:
                continue  # no summary: the monitor must remember that
            codes = [0, 1] if k % 10 == 8 else [0, 0]
            pilots = [
                {"node": f"nid00{n + 1}", "node_index": n, "slot": 0, "start": 100,
                 "end": 200 + n, "exit_code": c, "gpus": "", "dir": f"nid00{n + 1}/slot0"}
                for n, c in enumerate(codes)
            ]  # fmt: skip
            summary = {
                "version": 1, "harvester_id": self.hid, "worker_id": ws.workerID,
                "job_name": self.tag(ws.workerID), "queue": QUEUE, "slurm_job_id": ws.batchID,
                "nodes_requested": 2, "pilots_per_node": 1, "expected_pilots": len(pilots),
                "finished_pilots": len(pilots), "failed_pilots": sum(1 for c in codes if c),
                "exit_code": next((c for c in codes if c), 0), "step_exit_code": 0,
                "end": int(time.time()), "cvmfs_error": None, "nodes": [], "pilots": pilots,
            }  # fmt: skip
            (work_dir / SUMMARY_FILE).write_text(json.dumps(summary) + "\n")
            done.add(ws.workerID)
        return done

    def row_kill_500(self) -> None:
        start = time.perf_counter()
        wids = range(KILL_IDS, KILL_IDS + 500)
        workers = [
            self.worker(w, j) for w, j in zip(wids, self.sbatch_tagged(HELD, wids), strict=True)
        ]
        self.setup_s["sbatch_500_held"] = round(time.perf_counter() - start, 1)
        self.warm()
        client = SFAPISweeper(**self.conf).edge_client()
        spy = ClientSpy(self.gw)
        with self.latency(), spy.watch(client, ["cancel", *POLL, "find"], with_requests=["cancel"]):
            results, fig = self.measure(lambda: SFAPISweeper(**self.conf).kill_workers(workers))
        row, n = "kill_500", len(workers)
        killed = sum(1 for ok, _ in results if ok)
        calls = spy.summary()
        cancel_wall = calls.get("cancel", {}).get("total_s", 0.0)
        cancel_requests = calls.get("cancel", {}).get("requests", 0)
        fig.update(n=n, latency_s=LATENCY, killed=killed, client_calls=calls,
                   cancel_wall_s=cancel_wall, cancel_requests=cancel_requests,
                   confirm_wall_s=round(fig["wall_s"] - cancel_wall, 3),
                   confirm_requests=fig["requests"] - cancel_requests,
                   request_budget=self.budget(n), sample_result=list(results[0]))  # fmt: skip
        self.rows[row] = fig
        self.target(row, "cancel_wall", cancel_wall, "< 1 s", cancel_wall < 1.0)
        self.target_at_most(row, "cancel_requests", cancel_requests, self.budget(n))
        self.target(row, "all_killed", killed, f"== {n}", killed == n)

    def row_submit_200(self) -> None:
        self.submit_row("submit_200", SUBMIT_IDS + 1000, 200, 2.0)

    def row_submit_500(self) -> None:
        self.submit_row("submit_500", SUBMIT_IDS, 500, 10.0)

    def submit_row(self, row: str, first_id: int, n: int, seconds: float) -> None:
        forget_clients()  # a cold client: token and machine status are part of the figure
        GATE.forget()
        created_before = len(self.gw.jobs_created())
        workers = [self.worker(w) for w in range(first_id, first_id + n)]
        with self.latency():
            results, fig = self.measure(lambda: SFAPISubmitter(**self.conf).submit_workers(workers))
        ok = sum(1 for r in results if r[0] is True)
        refused = Counter(f"{r[0]}: {r[1][:160]}" for r in results if r[0] is not True)
        fig.update(n=n, latency_s=LATENCY, submitted=ok, sample_result=list(results[0]),
                   not_submitted=dict(refused.most_common(3)))  # fmt: skip
        self.rows[row] = fig
        self.target_wall(row, seconds)
        self.target(row, "all_submitted", ok, f"== {n}", ok == n)
        # let the gateway's submit tasks run, so cleanup cancels every job
        deadline = time.monotonic() + 120
        while len(self.gw.jobs_created()) < created_before + ok and time.monotonic() < deadline:
            time.sleep(0.5)

    def row_token_grants(self) -> None:
        duration, lifetime = (15.0, 5.0) if self.quick else (60.0, 20.0)
        forget_clients()
        self.gw.knobs(token_lifetime=lifetime, latency=0)
        client = SFAPIMonitor(**self.conf).edge_client()
        calls = [0, 0, 0]
        errors: list[str] = []

        def loop(k: int, stop_at: float) -> None:
            while time.perf_counter() < stop_at:
                try:
                    client.transport.request("GET", "account/")  # type: ignore[attr-defined]
                    calls[k] += 1
                except EdgeAPIError as exc:
                    errors.append(str(exc))
                time.sleep(0.01)

        def run() -> None:
            stop_at = time.perf_counter() + duration
            threads = [threading.Thread(target=loop, args=(k, stop_at)) for k in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        try:
            _, fig = self.measure(run)
        finally:
            self.gw.knobs(token_lifetime=600)
        grants = fig["requests_by_key"].get("token", 0)
        limit = int(duration / lifetime) + 1
        answered = fig["requests_by_key"].get("account", 0)
        row = "token_grants"
        fig.update(threads=3, duration_s=duration, token_lifetime_s=lifetime, grants=grants,
                   client_grant_count=client.credentials.grant_count,  # type: ignore[attr-defined]
                   calls=sum(calls), api_requests_beyond_calls=answered - sum(calls),
                   errors=len(errors), first_error=errors[0][:200] if errors else None)  # fmt: skip
        self.rows[row] = fig
        self.target_at_most(row, "grants", grants, limit)
        self.target(row, "no_errors", len(errors), "== 0", not errors)
        forget_clients()


def slurm_missing() -> bool:
    """True, with the one-line JSON error every bench prints then, when Slurm does not answer."""
    if LocalSlurm(default_slurm_conf()).available():
        return False
    print(json.dumps({"error": "Slurm is not reachable (SLURM_CONF?)"}))
    return True


def run_meta(bench: Bench, cleanup: dict[str, Any], started: float) -> dict[str, Any]:
    """The ``meta`` entries of every bench: how CPU and RSS are measured, the set-up times,
    the cleanup and the run's total time (since ``started``, a ``perf_counter``)."""
    return {
        "cpu_method": "time.process_time of this process (plugins + client, all threads)",
        "rss_method": RSS_METHOD,
        "setup_s": bench.setup_s,
        "cleanup": cleanup,
        "total_s": round(time.perf_counter() - started, 1),
    }


def close_bench(
    bench: Bench, root: Path, keep: bool, count_left: Callable[[], int] | None = None
) -> dict[str, Any]:
    """After the rows: cancel every job made (``bench.cleanup``; ``left_in_squeue`` counted by
    ``count_left``), then stop the gateway, drop the clients and the temporary directory."""
    try:
        cleanup = bench.cleanup()
        if count_left is not None:
            cleanup["left_in_squeue"] = count_left()
    finally:
        bench.gw.stop()
        forget_clients()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return cleanup


def report(figures: dict[str, Any], bench: Bench, errors: dict[str, str]) -> int:
    """Print the figures with the errors and every target; exit status 1 when one is missed."""
    if errors:
        figures["errors"] = errors
    figures["checks"] = bench.checks
    figures["missed"] = [name for name, met in bench.checks.items() if not met]
    print(to_json(figures))
    return 0 if all(bench.checks.values()) else 1


def to_json(value: Any, indent: int = 0) -> str:
    """JSON with small objects and lists on one line (same content as ``json.dumps``)."""
    flat = json.dumps(value)
    if not isinstance(value, dict | list) or len(flat) + indent <= 96:
        return flat
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, list):
        items = [inner + to_json(v, indent + 2) for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    items = [f"{inner}{json.dumps(k)}: {to_json(v, indent + 2)}" for k, v in value.items()]
    return "{\n" + ",\n".join(items) + f"\n{pad}}}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="token_grants row: 15 s with 5 s tokens (not 60/20)"
    )
    parser.add_argument(
        "--rows",
        default=",".join(ROWS),
        help=f"comma-separated rows (default all): {','.join(ROWS)}",
    )
    parser.add_argument(
        "--real-10000",
        action="store_true",
        help="monitor_10000 row: 10,000 held jobs (9,000 more sbatch, about a minute or two) "
        "instead of 1,000 held jobs and 9,000 unknown job ids",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=CHUNK,
        help=f"the queues' chunkSize (default {CHUNK}, the plugins' own; earlier figures: 200; "
        "default is 500)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown or not args.rows:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if slurm_missing():
        return 1
    root = Path(tempfile.mkdtemp(prefix="hedge-bench-"))
    bench = Bench(root, args.quick, args.real_10000, args.chunk_size)
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    errors: dict[str, str] = {}
    cleanup: dict[str, Any] = {}
    try:
        if "check_after_finish" in args.rows:
            bench.start_ending_jobs()
        for row in RUN_ORDER:
            if row in args.rows:
                bench.run_row(row, errors, token_lifetime=600)
    finally:
        cleanup = close_bench(bench, root, args.keep)
    figures: dict[str, Any] = {
        "meta": {
            "rows": args.rows, "quick": args.quick, "real_10000": args.real_10000,
            "chunk_size": bench.chunk,
            "query_concurrency": 4, "latency_rows_s": LATENCY, "cpus": os.cpu_count(),
            "gateway": "separate process (python -m harvester_edge.localsite.sfapi_gateway)",
            **run_meta(bench, cleanup, started),
            # other work on the machine (test suites, Slurm daemons) shifts the wall figures
            "loadavg_1min_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        },
        "rows": {row: bench.rows[row] for row in ROWS if row in bench.rows},
    }  # fmt: skip
    return report(figures, bench, errors)


if __name__ == "__main__":
    sys.exit(main())
