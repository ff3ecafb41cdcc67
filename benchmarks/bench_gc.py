"""Globus Compute family benchmark: the loopback GC web service over the real Slurm cluster.

Run: ``python benchmarks/bench_gc.py [--workers N] [--cycles N]`` (needs
``scripts/slurm-cluster.sh start`` and ``SLURM_CONF``).  Prints one JSON object of figures and
exits 1 when a target is missed.  Targets (issue 10):

- ``monitor``: monitoring 1,000 tracked workers (held Slurm jobs named by their tags) costs at
  most 2 web-service requests per cycle: one batch status reads the probe started last
  cycle, one submit starts the next (``prefetchProbes``); every cycle after the first
  answers every worker;
- ``rate``: 10 cycles over 1,000 workers, each with NEW plugin instances as Harvester builds
  them, stay under GC's 20 requests per 10 s: the service's own limiter (20 per 10 s, on)
  answers no 429 and the client's bucket never saw more than its limit in a window;
- every check answers every worker (no "could not check" once the first probe was read), no
  function is registered after the first cycle and no second client is built.

The service runs in this process (``start_gc_service``); its counters are per route
(``submit``, ``batch_status``, ``endpoint_status``, ``register_function``, ``auth.token``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harvester_edge.edge import lifecycle as lc
from harvester_edge.edge.tags import job_tag
from harvester_edge.facilities import gc_functions, registry
from harvester_edge.harvester import WorkSpec, harvester_id
from harvester_edge.localsite.gc_knobs import GCKnobs
from harvester_edge.localsite.gc_service import start_gc_service
from harvester_edge.localsite.slurm import LocalSlurm, default_slurm_conf
from harvester_edge.plugins.globus_compute import GCMonitor

QUEUE = "BENCH_GC"
HELD = """#!/bin/bash
#SBATCH --job-name={tag}
#SBATCH --hold
#SBATCH --time=5
#SBATCH --output=/dev/null
true
"""


def held_jobs(slurm: LocalSlurm, root: Path, n: int) -> list[WorkSpec]:
    """``n`` workers as the monitor sees them once tracked: a held Slurm job each."""
    hid = harvester_id()
    tags = [job_tag(hid, QUEUE, w) for w in range(1, n + 1)]
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda t: slurm.sbatch(HELD.replace("{tag}", t), cwd=str(root)), tags)
        )
    workers = []
    for wid, (tag, (job_id, error)) in enumerate(zip(tags, results, strict=True), start=1):
        if not job_id:
            raise RuntimeError(f"sbatch failed: {error}")
        ws = WorkSpec()
        ws.workerID, ws.computingSite, ws.mapType = wid, QUEUE, WorkSpec.MT_NoJob
        ws.batchID, ws.status = job_id, WorkSpec.ST_submitted
        ws.set_work_attributes({lc.TAG: tag, lc.WORK_DIR: str(root / "work" / str(wid)),
                                lc.SUBMITTED_AT: time.time()})  # fmt: skip
        workers.append(ws)
    return workers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between cycles")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-gc-"))
    (root / "work").mkdir()
    slurm = LocalSlurm(default_slurm_conf())
    svc = start_gc_service(slurm=slurm, work_dir=root / "endpoint",
                           knobs=GCKnobs(rate_limit=20, rate_window=10.0))  # fmt: skip
    secret = root / "secret"
    secret.write_text(str(svc.client_secret))
    secret.chmod(0o600)
    conf: dict[str, Any] = {
        "queueName": QUEUE, "siteName": QUEUE, "endpointId": svc.endpoint_id,
        "serviceUrl": svc.url, "authUrl": svc.auth_url, "clientId": svc.client_id,
        "clientSecretFile": str(secret), "userEndpointConfig": {"provider": "local"},
        "remoteWorkDir": str(root / "work" / "${workerID}"), "readTimeout": 60,
        "callDeadline": 60, "statusShareSeconds": 1.0, "readPilotSummary": False,
    }  # fmt: skip
    created: list[str] = []
    figures: dict[str, Any] = {"workers": args.workers, "cycles": args.cycles}
    try:
        start = time.perf_counter()
        workers = held_jobs(slurm, root, args.workers)
        created = [str(w.batchID) for w in workers]
        figures["setup_sbatch_s"] = round(time.perf_counter() - start, 1)
        per_cycle: list[dict[str, int]] = []
        answered: list[int] = []
        wall: list[float] = []
        registrations = None
        clients = None
        start_all = time.monotonic()
        for n in range(args.cycles):
            before = dict(svc.counters)
            t = time.perf_counter()
            _, answers = GCMonitor(**conf).check_workers(workers)  # new plugins every cycle
            wall.append(round(time.perf_counter() - t, 3))
            after = dict(svc.counters)
            per_cycle.append({k: after.get(k, 0) - before.get(k, 0) for k in after
                              if after.get(k, 0) != before.get(k, 0)})  # fmt: skip
            answered.append(sum(1 for s, d in answers if s is not None and "probe" not in d))
            if n == 0:
                registrations = len(gc_functions.REGISTRATIONS)
                clients = len(registry._clients)
            time.sleep(args.interval)
        elapsed = time.monotonic() - start_all
        compute = [{k: v for k, v in c.items() if not k.startswith("auth")} for c in per_cycle]
        steady = [sum(c.values()) for c in compute[1:]]
        bucket = next(iter(registry._clients.values())).batches.service.bucket  # type: ignore[attr-defined]
        figures.update(
            requests_per_cycle=[sum(c.values()) for c in compute],
            requests_by_route=per_cycle,
            steady_max_requests_per_cycle=max(steady) if steady else 0,
            answered_per_cycle=answered,
            check_wall_s=wall,
            run_s=round(elapsed, 1),
            total_compute_requests=sum(sum(c.values()) for c in compute),
            service_429=svc.counters.get("throttled", 0),
            bucket_peak_per_window=bucket.peak,
            bucket_limit=f"{bucket.limit} per {bucket.window:.0f}s",
            registrations_after_first_cycle=len(gc_functions.REGISTRATIONS) - (registrations or 0),
            clients_after_first_cycle=len(registry._clients) - (clients or 0),
        )
        checks = {
            "monitor_le_2_requests_per_cycle": bool(steady) and max(steady) <= 2,
            "no_429": figures["service_429"] == 0,
            "bucket_under_limit": bucket.peak <= bucket.limit,
            "all_answered_after_first_probe": all(a == args.workers for a in answered[1:]),
            "no_new_registration": figures["registrations_after_first_cycle"] == 0,
            "no_new_client": figures["clients_after_first_cycle"] == 0,
        }
        figures["checks"] = checks
        print(json.dumps(figures, indent=1))
        return 0 if all(checks.values()) else 1
    finally:
        for i in range(0, len(created), 500):
            slurm.scancel(created[i : i + 500])
        svc.stop()


if __name__ == "__main__":
    sys.exit(main())
