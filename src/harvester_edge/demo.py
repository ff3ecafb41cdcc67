"""The local demo: harvester-edge's SFAPI plugins driving pilots on a real Slurm cluster.

No facility account: the loopback SFAPI gateway speaks the API in front of the local Slurm
cluster, a fake CVMFS tree holds a stub pilot.  The plugins are built from a queue config
exactly as Harvester's PluginFactory builds them, anew every cycle.  What it shows:

- queue DEMO_PERLMUTTER (2 nodes x 2 pilots, perlmutter-gpu-like GPU split): two workers
  finish, one is killed by the sweeper, one has a failing pilot (diagnosed from the summary);
- queue DEMO_NO_CVMFS: the node check finds no CVMFS, the worker fails saying so;
- a stretch with 30 % of API requests answered 5xx: nothing is failed by it;
- the request counters: one bulk query per chunk, a cached token.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from .facilities.registry import forget_clients
from .harvester import WorkSpec
from .localsite.fake_cvmfs import make_fake_cvmfs
from .localsite.faults import Knobs
from .localsite.sfapi_gateway import SFAPIGateway, make_client_key
from .localsite.slurm import LocalSlurm
from .queue_config import build_plugin, plugin_section

FINAL = ("finished", "failed", "cancelled", "missed")


def queue_config(gw: SFAPIGateway, root: Path, key: Path) -> dict[str, Any]:
    common = {
        "apiUrl": gw.api_url, "tokenUrl": gw.token_url, "keyFile": str(key),
        "machine": "perlmutter",
        "readTimeout": 10, "callDeadline": 30, "healthCacheSeconds": 2, "missingGraceSeconds": 60,
    }  # fmt: skip
    batch = {
        "profile": "generic", "nNode": 2, "pilotsPerNode": 2, "nCorePerNode": 4, "gpusPerNode": 4,
        "gpuVisibleVar": "CUDA_VISIBLE_DEVICES", "cvmfsCheckTimeout": 5,
        "remoteWorkDir": str(root / "site" / "${queueName}" / "${workerID}"),
        # the messenger's access point, shared through common with the sweeper
        "accessPoint": str(root / "harvester" / "${workerID}"),
    }  # fmt: skip
    plugins = {
        section: {"module": "harvester_edge.plugins.sfapi", "name": f"SFAPI{section.title()}"}
        for section in ("submitter", "monitor", "sweeper")
    }
    return {
        "DEMO_PERLMUTTER": {
            "common": {**common, **batch, "cvmfsRoot": str(root / "cvmfs")}, **plugins,
        },
        "DEMO_NO_CVMFS": {
            "common": {**common, **batch, "cvmfsRoot": str(root / "no-cvmfs")}, **plugins,
        },
    }  # fmt: skip


def plugin(config: dict[str, Any], queue: str, section: str) -> Any:
    """A new plugin of the queue's section, as Harvester's agents build one every cycle."""
    return build_plugin(plugin_section(queue, config[queue], section))


def new_worker(worker_id: int, queue: str, root: Path) -> WorkSpec:
    ws = WorkSpec()
    ws.workerID, ws.computingSite, ws.mapType = worker_id, queue, WorkSpec.MT_NoJob
    ws.nCore, ws.maxWalltime, ws.status = 8, 1800, WorkSpec.ST_pending
    ws.accessPoint = str(root / "harvester" / str(worker_id))
    os.makedirs(ws.accessPoint, exist_ok=True)
    return ws


def show(workers: list[WorkSpec], note: str = "") -> None:
    print(f"\n-- {time.strftime('%H:%M:%S')} {note}")
    for ws in workers:
        diag = (ws.errorDiag or "")[:110]
        job, native = str(ws.batchID or "-"), str(ws.nativeStatus or "")
        print(f"   worker {ws.workerID:<3} {ws.computingSite:<16} {ws.status!s:<10} ", end="")
        print(f"job {job:<6} {native:<11} {diag}")


def run_demo(root: Path, cycles: int = 90) -> int:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    root = root.resolve()
    make_fake_cvmfs(root / "cvmfs")
    os.environ["STUB_SLEEP"] = "20"
    os.environ["STUB_EXIT_1_2"] = "0"
    key = root / "iris-client.pem"
    client_id, public_pem = make_client_key(key)
    gw = SFAPIGateway(slurm=LocalSlurm(), knobs=Knobs(seed=3), workdir=root, file_roots=[root])
    gw.register_client(client_id, public_pem)
    with gw:
        config = queue_config(gw, root, key)
        print(f"harvester-edge demo: SFAPI gateway {gw.api_url}, files in {root}")
        main_q = [new_worker(i, "DEMO_PERLMUTTER", root) for i in (1, 2, 3)]
        failing = new_worker(4, "DEMO_PERLMUTTER", root)
        no_cvmfs = new_worker(5, "DEMO_NO_CVMFS", root)
        workers = [*main_q, failing, no_cvmfs]
        for queue, batch in (("DEMO_PERLMUTTER", main_q), ("DEMO_NO_CVMFS", [no_cvmfs])):
            for ws, (ok, msg) in zip(
                batch, plugin(config, queue, "submitter").submit_workers(batch), strict=True
            ):
                print(f"submit worker {ws.workerID}: {ok} {msg}")
        os.environ["STUB_EXIT_1_2"] = "3"  # the next job's pilot on node 2, slot 2 fails
        ok, msg = plugin(config, "DEMO_PERLMUTTER", "submitter").submit_workers([failing])[0]
        print(f"submit worker {failing.workerID}: {ok} {msg}")
        time.sleep(1.5)
        os.environ["STUB_EXIT_1_2"] = "0"
        killed = False
        for n in range(cycles):
            if n == 2:
                gw.knobs.update(error_rate=0.3)
                print("\n** injecting 30% HTTP 5xx answers for a while **")
            if n == 5:
                gw.knobs.update(error_rate=0)
                print("\n** API healthy again **")
            for queue in ("DEMO_PERLMUTTER", "DEMO_NO_CVMFS"):
                mine = [w for w in workers if w.computingSite == queue and w.status not in FINAL]
                if mine:
                    ok, answers = plugin(config, queue, "monitor").check_workers(mine)
                    for ws, (status, _diag) in zip(mine, answers, strict=True):
                        if status is not None:
                            ws.status = status
            if not killed and main_q[2].status == "running":
                result = plugin(config, "DEMO_PERLMUTTER", "sweeper").kill_workers([main_q[2]])
                print(f"\n** sweeper kill_workers(worker 3): {result[0]}")
                killed = True
            show(workers, f"monitor cycle {n + 1}")
            if all(w.status in FINAL for w in workers):
                break
            time.sleep(2)
        gw.knobs.update(error_rate=0)
        gw.reset_counters()
        plugin(config, "DEMO_PERLMUTTER", "monitor").check_workers([*main_q, failing])
        print(f"\nHTTP requests of one monitor cycle over 4 workers: {dict(gw.counters)}")
        sweeper = plugin(config, "DEMO_PERLMUTTER", "sweeper")
        swept = [sweeper.sweep_worker(ws) for ws in workers]
        for ws, result in zip(workers, swept, strict=True):
            print(f"sweep worker {ws.workerID}: {result}")
    forget_clients()
    if not all(ok for ok, _ in swept):
        print("UNEXPECTED: an access point was not swept")
        return 1
    expected = {1: "finished", 2: "finished", 3: "cancelled", 4: "failed", 5: "failed"}
    got = {w.workerID: w.status for w in workers}
    print(f"\nfinal statuses: {got}")
    if got != expected:
        print(f"UNEXPECTED: wanted {expected}")
        return 1
    print("demo OK: every worker ended as expected")
    return 0
