"""IRI family benchmarks against the loopback IRI gateway over the real Slurm cluster, v1 and v2.

Run: ``python benchmarks/bench_iri.py [--quick] [--rows a,b,...] [--versions v1,v2]`` (needs
``scripts/slurm-cluster.sh start`` and ``SLURM_CONF``).  Prints one JSON object of figures
and exits 1 when a target is missed (or a row could not run).  The issue's acceptance asks
for these figures (issue 11: monitoring 1,000 workers costs one status request per 1,000
workers per cycle, plus health, finished jobs included).

Measured as in ``bench_s3m.py`` (the generic parts come from ``bench_sfapi.py``): the gateway
runs in its own process (``python -m harvester_edge.localsite.iri_gateway``, both API versions
on one server) and is steered through its loopback ``/_admin/*`` endpoints, which are neither
counted nor delayed; each row runs once per API version, figures under ``rows.v1``/``rows.v2``:

- ``requests``: HTTP requests the gateway counted, total and by its route key
  (``requests_by_key``: ``jobs_status`` (the bulk ``POST /compute/status/{rid}``),
  ``job_status`` (``GET .../status/{rid}/{id}``: one job), ``resource`` and ``incidents``
  (health), ``resources`` (resource discovery by name), ``submit``, ``cancel``, ...);
- ``wall_s``: ``time.perf_counter``; ``cpu_s``: ``time.process_time`` of this process (the
  plugins and the IRI client, all threads; the gateway's own CPU, Slurm commands included, is
  ``gateway_cpu_s``); ``rss_peak_mib``: ``ru_maxrss`` after ``/proc/self/clear_refs``.

Queue config as in tests/iri/conftest.py: ``apiUrl`` (``.../api/v1`` or ``.../api/v2``),
``resource`` (perlmutter), ``token`` ``file:/path`` (mode 0600: the token the gateway printed),
an absolute ``remoteWorkDir`` whose fixed part exists, ``walltimeSeconds``.  ``chunk`` is the
queue's ``chunkSize`` (the IRI plugins' default 1000, the spec's page limit, or
``--chunk-size``).  The gateway finds an ``sbatch`` on its PATH that runs the real one with
``--hold``, so every job it submits is held (the IRI job spec has no hold, nor sbatch an
environment variable for it; held jobs never take the shared cluster's nodes); the
"finished" jobs of the monitor rows are released with ``scontrol release`` and run ``true``
to COMPLETED before the rows.

Rows and targets (50 ms latency on every counted request of the latency rows):

===============  ============================================================================
construct        1,000 IRI submitters + 1,000 monitors constructed: 0 requests
submit_200       submit_workers of 200 workers from a cold client (resource discovery and
                 health are part of the figure), 50 ms: < 5 s; all True; exactly one Slurm
                 job per worker (by its tag, with the worker's batch id)
monitor_1000     one monitor cycle over 1,000 workers, 600 with held jobs and 400 whose jobs
                 have FINISHED (COMPLETED in Slurm accounting; the bulk call lists them only
                 with ``historical=true``), health not cached (the cycle asks for it), 50 ms:
                 ``jobs_status`` <= ceil(1000/1000) = 1, nothing else but health
                 (``resource``, ``incidents``: <= 1 each), so <= ceil(1000/chunk)+2 requests
                 in all, no ``job_status``, < 2 s; the 400 'finished', the 600 'submitted'
monitor_10000    the same 1,000 workers and 9,000 with job ids never submitted there (within
                 ``missingGraceSeconds``: kept 'submitted'): ``jobs_status`` <=
                 ceil(10000/1000) = 10, no ``job_status``, <= ceil(10000/chunk)+2 requests,
                 < 2 s, all answered as above
monitor_10000_   the same with 9,000 more held jobs submitted through the gateway (given up
real             when that takes over ``--real-setup-limit`` s; those jobs are cancelled
                 right after the row): the same request targets, < 2 s, the 9,600 held
                 'submitted'.  Left out by ``--quick`` unless named in ``--rows``.
===============  ============================================================================

The 1,000 monitored jobs are submitted once through the gateway (v2, no latency, not
measured: ``meta.setup_s``) and monitored through each version (jobs belong to the token's
user and resource, not to an API version).  Before a measured cycle the client is warm
(resource id resolved, as in a running agent) and the health cache is emptied (Harvester's
monitor cycle is about as long as ``healthCacheSeconds``, so a cycle pays for health).  The
first measured cycle over the finished jobs makes the gateway read them from Slurm accounting
once (``gateway_cpu_s``); it keeps their final state after that, as the reference server's
database does.  ``client_calls`` (diagnostics) times the shared client's ``poll``,
``_statuses`` (one bulk status call, all its pages), ``find`` and ``health`` inside the
measured call.  S3M's ``variants_info`` (one chunk of 10,000) has no IRI counterpart: the
client's bulk call takes 1,000 ids at most (the spec's page limit), whatever ``chunkSize``.
Every Slurm job created here (directly or through the gateway) is cancelled at the end.

Measured on 2026-12-01 (2 cores, shared with other helpers' test runs): docs/iri.md.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench_sfapi sets SLURM_CONF's default and a fresh HARVESTER_ID before harvester_edge loads
import bench_sfapi as base  # noqa: E402
from _family import FamilyBench, chosen_rows, family_parser  # noqa: E402
from bench_sfapi import (  # noqa: E402
    LATENCY,
    MONITOR_IDS,
    UNKNOWN_JOB_IDS,
    WARM_ID,
    Gateway,
    close_bench,
    report,
    run_meta,
    slurm_missing,
)

from harvester_edge.edge.health import GATE  # noqa: E402
from harvester_edge.edge.tags import queue_prefix  # noqa: E402
from harvester_edge.facilities.iri import PAGE_LIMIT  # noqa: E402
from harvester_edge.harvester import WorkSpec  # noqa: E402
from harvester_edge.plugins.iri import IRIMonitor, IRISubmitter  # noqa: E402

QUEUE = "BENCH_IRI"
RESOURCE = "perlmutter"
VERSIONS = ("v1", "v2")
CHUNK = PAGE_LIMIT  # the IRI plugins' default chunkSize
ROWS = ("construct", "submit_200", "monitor_1000", "monitor_10000", "monitor_10000_real")
#: monitors first (the 200 submitted jobs of each version come after), the real 10,000 last
RUN_ORDER = ("construct", "monitor_1000", "monitor_10000", "monitor_10000_real", "submit_200")
REAL_SETUP_LIMIT = 300.0
#: of the 1,000 monitored workers, this many have jobs that finished (the rest are held)
FINISHED = 400
#: submit_200's worker ids, one range per version (the tag derives from the worker id)
SUBMIT_IDS = {"v1": base.SUBMIT_IDS, "v2": base.SUBMIT_IDS + 1000}
#: the client methods whose calls ``client_calls`` reports
POLL = ["poll", "_statuses", "find", "health"]
HEALTH_KEYS = ("resource", "incidents")
#: Slurm job states of a job not ended yet (``squeue --json``'s ``job_state``)
LIVE_STATES = ("PENDING", "RUNNING", "SUSPENDED", "CONFIGURING", "REQUEUED", "RESIZING")
WALLTIME = 300  # seconds; the template's own --time=5 says the same


def hold_sbatch(root: Path) -> Path:
    """A directory whose ``sbatch`` runs the real one with ``--hold`` first (sbatch has no
    environment variable for it); the gateway finds sbatch on its PATH."""
    real = shutil.which("sbatch")
    if real is None:
        raise RuntimeError("sbatch is not on PATH")
    where = root / "hold-bin"
    where.mkdir()
    script = where / "sbatch"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(real)} --hold "$@"\n')
    script.chmod(0o755)
    return where


class IRIGatewayProcess(Gateway):
    """The loopback IRI gateway run as ``python -m harvester_edge.localsite.iri_gateway``.

    Only the start differs from ``bench_sfapi.Gateway``: IRI's command line and start-up
    answer (its bearer token is written to ``token_file``, mode 0600), and an ``sbatch``
    that adds ``--hold`` first on its PATH (``hold_sbatch``).  The admin methods are
    inherited unchanged."""

    def __init__(self, root: Path, token_file: Path):  # noqa: D107 (no super: SFAPI's start)
        env = {**os.environ, "PATH": f"{hold_sbatch(root)}:{os.environ.get('PATH', '')}"}
        info = self._start(
            "iri_gateway", "IRI gateway",
            ["--resource", RESOURCE, "--user", "harvester", "--workdir", str(root)],
            env=env,
        )  # fmt: skip
        self.api_urls: dict[str, str] = info["api_urls"]
        token_file.write_text(info["token"] + "\n")
        os.chmod(token_file, 0o600)
        self.token_file = token_file


class IRIBench(FamilyBench):
    """``_family.FamilyBench`` with the IRI gateway, queue config and plugins, for one API
    version at a time (``use``); the generic helpers (sbatch_tagged, cleanup, budget,
    measure, target, wait_accounted, submit_200) are inherited."""

    queue = QUEUE
    submitter_cls = IRISubmitter
    monitor_cls = IRIMonitor
    poll_names = POLL

    def __init__(
        self, root: Path, quick: bool, chunk: int = CHUNK,
        real_setup_limit: float = REAL_SETUP_LIMIT,
    ):  # fmt: skip
        super().__init__(root, quick, chunk, real_setup_limit)
        self._extra: list[tuple[int, str]] | None = None  # monitor_10000_real's 9,000
        self.confs: dict[str, dict[str, Any]] = {
            v: {
                "queueName": QUEUE, "siteName": QUEUE, "apiUrl": self.gw.api_urls[v],
                "resource": RESOURCE, "token": f"file:{self.gw.token_file}",
                "profile": "generic", "templateFile": str(root / "template.sh"),
                "remoteWorkDir": str(root / "work" / "${workerID}"),
                "accessPoint": str(root / "ap" / "${workerID}"),
                "walltimeSeconds": WALLTIME,
                "chunkSize": chunk, "submitConcurrency": 16, "readTimeout": 60,
                "callDeadline": 120,
            }
            for v in VERSIONS
        }  # fmt: skip
        self.version = "v2"
        self.versions: list[str] = list(VERSIONS)  # the ones run, in order
        self.conf = self.confs[self.version]
        self._monitored: list[tuple[int, str]] | None = None  # (worker id, job id)
        self._slurm_states: dict[str, int] = {}
        self._warm_job: str | None = None

    def start_gateway(self, root: Path) -> Gateway:
        return IRIGatewayProcess(root, root / "iri.token")

    def live_jobs(self) -> list[str]:
        """Ids of this run's jobs (by tag prefix) still pending or running in Slurm."""
        prefix = queue_prefix(self.hid, QUEUE)
        return [
            str(j.get("job_id"))
            for j in self.slurm.squeue_json()
            if str(j.get("name", "")).startswith(prefix)
            and any(s in str(j.get("job_state")) for s in LIVE_STATES)
        ]

    def cleanup(self) -> dict[str, Any]:
        """Cancel every job made here; on the loaded shared cluster an scancel may leave a few
        (timed-out RPCs), so the ones still live are cancelled again, up to three times."""
        out = super().cleanup()
        again = 0
        for _ in range(3):
            left = self.live_jobs()
            if not left:
                break
            again += len(left)
            for i in range(0, len(left), 500):
                self.slurm.scancel(left[i : i + 500])
            time.sleep(2)
        out["cancelled_again"] = again
        return out

    def use(self, version: str) -> None:
        """The API version of the rows that follow (row names get it as their prefix)."""
        self.version = version
        self.conf = self.confs[version]

    def row_name(self, name: str) -> str:
        return f"{self.version}.{name}"

    def submit_first_id(self) -> int:
        return SUBMIT_IDS[self.version]

    # workers ---------------------------------------------------------------------------

    def submit_setup(self, wids: list[int]) -> list[str]:
        """Jobs for these workers through the gateway (held), no latency, not measured."""
        workers = [self.worker(w) for w in wids]
        conf = self.confs["v2"]
        results = IRISubmitter(**conf).submit_workers(workers)
        bad = [r for r in results if r[0] is not True]
        made = [str(ws.batchID) for ws in workers if ws.batchID]  # cleanup: jobs_created
        if bad:
            raise RuntimeError(f"setup submit failed for {len(bad)} workers: {bad[0][1][:200]}")
        return made

    def monitored(self) -> list[tuple[int, str]]:
        """1,000 workers with jobs submitted through the gateway: FINISHED of them released
        and run to COMPLETED (waited for in accounting), the others held."""
        if self._monitored is None:
            start = time.perf_counter()
            wids = list(range(MONITOR_IDS, MONITOR_IDS + 1000))
            ids: list[str] = []
            for i in range(0, len(wids), 250):
                ids += self.submit_setup(wids[i : i + 250])
            self.setup_s["submit_1000_held_through_gateway"] = round(time.perf_counter() - start, 1)
            start = time.perf_counter()
            ending = ids[:FINISHED]
            proc = subprocess.run(
                ["scontrol", "release", ",".join(ending)],
                env=dict(os.environ),  # SLURM_CONF: bench_sfapi set its default
                capture_output=True, text=True, check=False, timeout=120,
            )  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(f"scontrol release failed: {proc.stderr.strip()[:300]}")
            self._slurm_states = self.wait_accounted(ending, timeout=600)
            self.setup_s[f"release_{FINISHED}_and_wait_in_accounting"] = round(
                time.perf_counter() - start, 1
            )
            self._monitored = list(zip(wids, ids, strict=True))
        return self._monitored

    def monitor_workers(self) -> list[WorkSpec]:
        """Fresh WorkSpecs of the 1,000 monitored workers (each version starts clean)."""
        return [self.worker(w, j) for w, j in self.monitored()]

    def warm(self, conf: dict[str, Any] | None = None) -> None:
        """Resource id resolved, as in a running agent: one check of one (held) worker."""
        if self._warm_job is None:
            self._warm_job = self.submit_setup([WARM_ID])[0]
        warm = self.worker(WARM_ID, self._warm_job)
        ok, answers = IRIMonitor(**(conf or self.conf)).check_workers([warm])
        if answers[0][0] is None:
            raise RuntimeError(f"warm-up check failed: {answers[0][1]}")

    # rows (construct and submit_200: FamilyBench's) -------------------------------------
    def monitor_row(self, name: str, workers: list[WorkSpec], n_real: int) -> None:
        """One measured cycle at 50 ms, health not cached; the figures and the targets of
        every monitor row."""
        row = self.row_name(name)
        self.warm()
        # the held jobs still held (the shared cluster's other users could cancel them)
        held_ids = {j for _, j in self.monitored()[FINISHED:]}
        still_held = len(self.slurm.squeue(jobids=sorted(held_ids)))
        GATE.forget()  # the cycle asks for health, as one about healthCacheSeconds later does
        answers, fig = self.latency_check(workers)
        by_key = fig["requests_by_key"]
        n = len(workers)
        status_limit = math.ceil(n / PAGE_LIMIT)
        health = {k: by_key.get(k, 0) for k in HEALTH_KEYS}
        other = {k: v for k, v in by_key.items() if k not in ("jobs_status", *HEALTH_KEYS)}
        real = Counter(a[0] or "None" for a in answers[:n_real])
        fig.update(
            n=n, real_jobs=n_real, finished_jobs=FINISHED, held_jobs=n_real - FINISHED,
            unknown_ids=n - n_real, latency_s=LATENCY,
            statuses=dict(Counter(a[0] or "None" for a in answers)),
            status_requests=by_key.get("jobs_status", 0), health_requests=health,
            status_requests_per_1000_workers=round(by_key.get("jobs_status", 0) * 1000 / n, 2),
            request_budget=self.budget(n), slurm_states_of_finished=self._slurm_states,
            held_in_squeue_before=still_held,
            sample_answers={"finished": [answers[0][0], answers[0][1][:160]],
                            "held": [answers[FINISHED][0], answers[FINISHED][1][:160]]},
        )  # fmt: skip
        self.rows[row] = fig
        self.target_at_most(row, "status_requests", fig["status_requests"], status_limit)
        self.target(row, "health_requests", health, "<= 1 each",
                    all(v <= 1 for v in health.values()))  # fmt: skip
        self.target(row, "no_other_requests", other, "none (no job_status, no lookup)",
                    not other)  # fmt: skip
        self.target_at_most(row, "requests", fig["requests"], self.budget(n))
        self.target_wall(row, 2.0)
        expected = {WorkSpec.ST_finished: FINISHED, WorkSpec.ST_submitted: n_real - FINISHED}
        self.target(row, "real_jobs", dict(real), f"{expected}", dict(real) == expected)
        if n > n_real:
            rest = Counter(a[0] or "None" for a in answers[n_real:])
            self.target(row, "unknown_ids_kept", dict(rest), f"all {n - n_real} 'submitted'",
                        dict(rest) == {WorkSpec.ST_submitted: n - n_real})  # fmt: skip

    def row_monitor_1000(self) -> None:
        workers = self.monitor_workers()
        self.monitor_row("monitor_1000", workers, len(workers))

    def row_monitor_10000(self) -> None:
        workers = self.monitor_workers()
        n_real = len(workers)
        rest = range(MONITOR_IDS + n_real, MONITOR_IDS + 10_000)
        workers += [self.worker(w, str(UNKNOWN_JOB_IDS + w)) for w in rest]
        self.monitor_row("monitor_10000", workers, n_real)

    def extra_held(self) -> list[tuple[int, str]]:
        """9,000 more held jobs through the gateway (shared by both versions' rows)."""
        if self._extra is None:
            rest = list(range(MONITOR_IDS + 1000, MONITOR_IDS + 10_000))
            start = time.perf_counter()
            ids: list[str] = []
            try:
                self.held_in_batches(self.submit_setup, rest, ids)
            finally:  # what was made, for drop_extra_held
                self._extra = list(zip(rest, ids, strict=False))
            self.setup_s["submit_9000_held_through_gateway"] = round(time.perf_counter() - start, 1)
        return self._extra

    def drop_extra_held(self) -> None:
        """9,000 held jobs weigh on every squeue of the shared cluster: cancelled at once."""
        if not self._extra:
            return
        start = time.perf_counter()
        ids = [j for _, j in self._extra]
        for i in range(0, len(ids), 500):
            self.slurm.scancel(ids[i : i + 500])
        self.setup_s["scancel_9000_held"] = round(time.perf_counter() - start, 1)
        self._extra = []

    def row_monitor_10000_real(self) -> None:
        try:
            workers = self.monitor_workers()
            workers += [self.worker(w, j) for w, j in self.extra_held()]
            self.monitor_row("monitor_10000_real", workers, len(workers))
            self.rows[self.row_name("monitor_10000_real")]["note"] = (
                "the loopback gateway answers each bulk request with its own squeue of every "
                "job of its Unix account (10,000 held ones here, and the other test runs' "
                "jobs): gateway_cpu_s and client_calls._statuses.mean_s show where the wall "
                "goes; the client's part is cpu_s"
            )
        finally:
            if self.version == self.versions[-1]:
                self.drop_extra_held()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = family_parser(
        (__doc__ or "").splitlines()[0], ROWS, CHUNK, REAL_SETUP_LIMIT,
        quick_help="construct and monitor_1000 only unless --rows names others",
        chunk_help="the IRI plugins' own",
        limit_help="submitting the 9,000 more held jobs",
    )  # fmt: skip
    parser.add_argument(
        "--versions", default=",".join(VERSIONS), help="comma-separated API versions (v1,v2)"
    )
    args = parser.parse_args(argv)
    quick_rows = [r for r in ROWS if not args.quick or r in ("construct", "monitor_1000")]
    args.rows = chosen_rows(parser, args.rows, ROWS, quick_rows)
    args.versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    if not args.versions or not set(args.versions) <= set(VERSIONS):
        parser.error(f"versions: choose from {', '.join(VERSIONS)}")
    return args


def nest(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"v1.row": x}`` -> ``{"v1": {"row": x}}`` in ROWS order."""
    out: dict[str, dict[str, Any]] = {}
    for version in VERSIONS:
        for row in ROWS:
            if f"{version}.{row}" in flat:
                out.setdefault(version, {})[row] = flat[f"{version}.{row}"]
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if slurm_missing():
        return 1
    root = Path(tempfile.mkdtemp(prefix="hedge-bench-iri-"))
    bench = IRIBench(root, args.quick, args.chunk_size, args.real_setup_limit)
    bench.versions = args.versions
    query_concurrency = int(IRIMonitor(**bench.conf).edge_options.queryConcurrency)
    started = time.perf_counter()
    load_start = os.getloadavg()
    errors: dict[str, str] = {}
    cleanup: dict[str, Any] = {}
    try:
        for row in RUN_ORDER:
            if row not in args.rows:
                continue
            for version in args.versions:
                bench.use(version)
                bench.run_row(row, errors)
    finally:
        bench.drop_extra_held()
        cleanup = close_bench(bench, root, args.keep, lambda: len(bench.live_jobs()))
    figures: dict[str, Any] = {
        "meta": {
            "rows": args.rows, "versions": args.versions, "quick": args.quick,
            "chunk_size": bench.chunk, "page_limit": PAGE_LIMIT,
            "query_concurrency": query_concurrency,
            "latency_rows_s": LATENCY, "cpus": os.cpu_count(), "resource": RESOURCE,
            "monitored": {"finished": FINISHED, "held": 1000 - FINISHED},
            "gateway": "separate process (python -m harvester_edge.localsite.iri_gateway), "
                       "v1 and v2 on one server, its sbatch with --hold",
            "call_deadline_s": bench.conf["callDeadline"],
            **run_meta(bench, cleanup, started),
            # other work on the machine (test suites, Slurm daemons) shifts the wall figures
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "rows": nest(bench.rows),
    }  # fmt: skip
    return report(figures, bench, errors)


if __name__ == "__main__":
    sys.exit(main())
