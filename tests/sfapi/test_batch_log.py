"""Pilot logs in PanDA through the SFAPI family: when workers end, the ends of their batch
logs are read in one ``tail`` command, copied into the access points and handed to Harvester
with ``set_log_file("batch_log", ...)`` (the stand-in does what upstream does: a cache URL and
a file to upload)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harvester_edge.edge.lifecycle import BATCH_LOG, BATCH_LOG_COPY, TAG
from harvester_edge.harvester import WorkSpec, harvester_id
from harvester_edge.plugins.batch_log import facility_path

from .conftest import Site, all_final, cycle, run_until

pytestmark = pytest.mark.slurm

CHATTY = 'for i in $(seq 1 3000); do echo "log line $i of job $SLURM_JOB_ID"; done; exit 0'


def wait_jobs_done(site: Site, workers: list[WorkSpec], timeout: float = 180) -> None:
    """Until Slurm's accounting shows every worker's job ended (by its tag)."""
    deadline = time.monotonic() + timeout
    names = [ws.workAttributes[TAG] for ws in workers]
    while time.monotonic() < deadline:
        rows = site.slurm.sacct(names=names)
        done = [r for r in rows if r.get("state", "").split()[0] in ("COMPLETED", "FAILED")]
        if len(done) >= len(workers):
            return
        time.sleep(1)
    raise AssertionError(f"jobs not done: {names}")


def test_the_ends_of_many_batch_logs_in_one_command(site: Site) -> None:
    submitter, monitor, _ = site.plugins(batchLogMaxBytes=2048)
    workers = [site.worker(CHATTY) for _ in range(3)]
    gone = site.worker(f"rm -f {site.ctl}/slurm-$SLURM_JOB_ID.out; exit 0")  # no log left
    workers.append(gone)
    assert all(ok is True for ok, _ in submitter.submit_workers(workers))
    wait_jobs_done(site, workers)
    site.gateway.reset_counters()
    cycle(monitor, workers)  # one check: tasks resolved, jobs polled, all final at once
    assert all_final(workers), [w.status for w in workers]
    # one command for the pilot summaries, one for the batch-log tails
    assert site.gateway.counters["command"] == 2, site.gateway.counters
    cache = os.environ.get("PANDA_CACHE_URL_R", "https://pandaserver.cern.ch:25443/cache")
    for ws in workers[:3]:
        tag = ws.workAttributes[TAG]
        local = Path(ws.accessPoint) / f"{tag}.batch.log"
        assert ws.workAttributes[BATCH_LOG_COPY] == str(local)
        remote = f"{harvester_id()}__{tag}.batch.log"
        assert ws.workAttributes["batchLog"] == f"{cache}/{remote}"
        assert ws.logFilesToUpload == {
            str(local): {"position": 0, "remote_name": remote, "stream_type": "batchLog"}
        }
        text = local.read_text()
        assert 0 < len(text.encode()) <= 2048
        assert text.endswith(f"log line 3000 of job {ws.batchID}\n")
        assert "log line 1 of" not in text  # only the end
        assert ws.workAttributes[BATCH_LOG] == f"{site.ctl}/slurm-%j.out"
        assert facility_path(ws) == f"{site.ctl}/slurm-{ws.batchID}.out"
    assert gone.workAttributes[BATCH_LOG_COPY] == "missing"
    assert "batchLog" not in gone.workAttributes and gone.logFilesToUpload is None
    # Harvester's second look at final workers reads nothing again
    site.gateway.reset_counters()
    cycle(monitor, workers)
    assert site.gateway.counters["command"] == 0, site.gateway.counters


def test_fetch_batch_log_off(site: Site) -> None:
    submitter, monitor, _ = site.plugins(fetchBatchLog=False)
    ws = site.worker(CHATTY)
    assert submitter.submit_workers([ws])[0][0] is True
    run_until(monitor, [ws], all_final)
    assert ws.status == "finished"
    assert BATCH_LOG_COPY not in ws.workAttributes and "batchLog" not in ws.workAttributes
    assert not list(Path(ws.accessPoint).glob("*.batch.log"))


def test_commands_refused_reads_each_log_by_download(site: Site) -> None:
    submitter, monitor, _ = site.plugins(batchLogMaxBytes=1024)
    ws = site.worker(CHATTY)
    assert submitter.submit_workers([ws])[0][0] is True
    wait_jobs_done(site, [ws])
    client = monitor.edge_client()
    client.commands_refused = "test: command utility off"
    site.gateway.reset_counters()
    cycle(monitor, [ws])
    assert ws.status == "finished"
    assert site.gateway.counters["command"] == 0
    text = Path(ws.workAttributes[BATCH_LOG_COPY]).read_text()
    assert len(text.encode()) <= 1024 and text.endswith(f"log line 3000 of job {ws.batchID}\n")
