"""SFAPI family benchmarks against the loopback gateway over the real Slurm cluster.

Targets (issue 3), checked here, not in timed tests:
- monitoring 1,000 workers costs at most ceil(1000/chunk)+2 HTTP requests, and no token
  request once a token is cached;
- submitting 200 workers with 50 ms injected latency finishes submit_workers in < 2 s;
- constructing a plugin does no I/O (no request reaches the gateway).

Run: ``python benchmarks/bench_sfapi.py`` (needs scripts/slurm-cluster.sh start and
SLURM_CONF).  Prints one JSON object of figures; exits 1 when a target is missed.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

os.environ.setdefault("SLURM_CONF", "/tmp/hedge-slurm/etc/slurm.conf")
os.environ["HARVESTER_ID"] = f"bench{uuid.uuid4().hex[:6]}"

from harvester_edge.edge.tags import job_tag  # noqa: E402
from harvester_edge.facilities.registry import forget_clients  # noqa: E402
from harvester_edge.harvester import WorkSpec, harvester_id  # noqa: E402
from harvester_edge.localsite.faults import Knobs  # noqa: E402
from harvester_edge.localsite.sfapi_gateway import SFAPIGateway, make_client_key  # noqa: E402
from harvester_edge.localsite.slurm import LocalSlurm, default_slurm_conf  # noqa: E402
from harvester_edge.plugins.sfapi import SFAPIMonitor, SFAPISubmitter  # noqa: E402

QUEUE = "BENCH_SFAPI"
N_MONITOR = 1000
N_SUBMIT = 200
CHUNK = 200

TEMPLATE = """#!/bin/bash
#SBATCH --job-name={jobName}
#SBATCH --hold
#SBATCH --time=5
true
"""


def worker(wid: int, root: Path) -> WorkSpec:
    ws = WorkSpec()
    ws.workerID = wid
    ws.computingSite = QUEUE
    ws.nCore = 1
    ws.accessPoint = str(root / "ap" / str(wid))
    return ws


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="hedge-bench-"))
    key = root / "key.pem"
    client_id, public = make_client_key(key)
    (root / "template.sh").write_text(TEMPLATE)
    slurm = LocalSlurm(default_slurm_conf())
    gw = SFAPIGateway(slurm=slurm, knobs=Knobs(), workdir=root, file_roots=[root], task_workers=8)
    gw.register_client(client_id, public)
    gw.start()
    conf = {
        "queueName": QUEUE, "apiUrl": gw.api_url, "tokenUrl": gw.token_url, "keyFile": str(key),
        "templateFile": str(root / "template.sh"), "remoteWorkDir": str(root / "w" / "${workerID}"),
        "chunkSize": CHUNK, "submitConcurrency": 16, "readTimeout": 60, "callDeadline": 120,
        "profile": "generic",
    }  # fmt: skip
    figures: dict[str, object] = {}
    created: list[str] = []
    with gw:
        # 1. construction does no I/O
        gw.reset_counters()
        start = time.perf_counter()
        for _ in range(1000):
            SFAPISubmitter(**conf)
            SFAPIMonitor(**conf)
        figures["construct_us_per_plugin"] = round((time.perf_counter() - start) / 2000 * 1e6, 1)
        figures["construct_requests"] = sum(gw.counters.values())

        # 2. monitoring 1,000 workers: real held jobs, one per worker, named by tag
        hid = harvester_id()
        workers = [worker(i, root) for i in range(1, N_MONITOR + 1)]
        start = time.perf_counter()
        for ws in workers:
            tag = job_tag(hid, QUEUE, ws.workerID)
            job_id, error = slurm.sbatch(TEMPLATE.replace("{jobName}", tag), cwd=str(root))
            assert job_id, error
            created.append(job_id)
            ws.batchID = job_id
            ws.set_work_attributes({"edgeTag": tag})
        figures["setup_sbatch_s"] = round(time.perf_counter() - start, 1)
        monitor = SFAPIMonitor(**conf)
        monitor.check_workers(workers[:1])  # warm: token + machine status cached
        gw.reset_counters()
        tracemalloc.start()
        start = time.perf_counter()
        ok, answers = SFAPIMonitor(**conf).check_workers(workers)
        figures["monitor_1000_s"] = round(time.perf_counter() - start, 3)
        figures["monitor_1000_peak_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 2)
        tracemalloc.stop()
        figures["monitor_1000_requests"] = sum(gw.counters.values())
        figures["monitor_1000_token_requests"] = gw.counters.get("token", 0)
        figures["monitor_request_budget"] = math.ceil(N_MONITOR / CHUNK) + 2
        figures["monitor_statuses"] = sorted({a[0] or "None" for a in answers})
        slurm.scancel(created)

        # 3. submitting 200 workers with 50 ms latency per request, from a cold client
        forget_clients()
        gw.knobs.update(latency=0.05)
        gw.reset_counters()
        batch = [worker(10_000 + i, root) for i in range(N_SUBMIT)]
        start = time.perf_counter()
        results = SFAPISubmitter(**conf).submit_workers(batch)
        figures["submit_200_latency50ms_s"] = round(time.perf_counter() - start, 3)
        figures["submit_200_ok"] = sum(1 for r in results if r[0] is True)
        figures["submit_200_requests"] = sum(gw.counters.values())
        gw.knobs.update(latency=0)
        deadline = time.monotonic() + 120
        while len(gw.jobs_created) < len(created) + N_SUBMIT and time.monotonic() < deadline:
            time.sleep(0.5)
        slurm.scancel(gw.jobs_created)
    forget_clients()

    checks = {
        "construct_no_io": figures["construct_requests"] == 0,
        "monitor_requests": figures["monitor_1000_requests"] <= figures["monitor_request_budget"],
        "monitor_no_token": figures["monitor_1000_token_requests"] == 0,
        "monitor_ok": ok and figures["monitor_statuses"] == ["submitted"],
        "submit_under_2s": figures["submit_200_latency50ms_s"] < 2.0,
        "submit_all_ok": figures["submit_200_ok"] == N_SUBMIT,
    }
    figures["checks"] = checks
    print(json.dumps(figures, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
