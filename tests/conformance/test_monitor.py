"""What the monitor answers: odd rows, jobs missing from accounting, maintenance windows, the
pilots' own summaries (cancellations, CVMFS), read in bulk."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from harvester_edge.edge.lifecycle import BATCH_LOG_COPY, PILOTS, attr
from harvester_edge.edge.pilot_summary import SUMMARY_FILE
from harvester_edge.edge.states import ERROR_PATTERNS, ErrorCode
from harvester_edge.facilities.base import Health, Outage
from harvester_edge.facilities.passthrough import SlurmState
from harvester_edge.harvester import WorkSpec
from harvester_edge.plugins.batch_log import facility_path

from ._helpers import drive, kill, set_health, submit, work_dir_of


def tracked(family, mon, sub, worker_ids, **fields):
    workers = [family.workspec(i, **fields) for i in worker_ids]
    assert [ok for ok, _ in submit(sub, workers)] == [True] * len(workers)
    drive(mon, workers)
    assert all(ws.batchID for ws in workers)
    return workers


def summary(exit_codes, cvmfs_error=None):
    pilots = [
        {"node": f"nid00{k}", "node_index": k, "slot": 0, "start": 100, "end": 200 + k,
         "exit_code": code}
        for k, code in enumerate(exit_codes)
    ]  # fmt: skip
    return json.dumps(
        {
            "version": 1,
            "expected_pilots": len(pilots),
            "exit_code": next((c for c in exit_codes if c), 0),
            "cvmfs_error": cvmfs_error,
            "pilots": pilots,
        }
    )


# 7. one unreadable row ----------------------------------------------------------------------
def test_unknown_state_affects_only_its_row(family):
    sub, mon, _ = family.plugins()
    workers = tracked(family, mon, sub, (71, 72, 73))
    odd, running, done = workers
    family.facility.set_state(odd.batchID, SlurmState.UNKNOWN, state_text="BURST_BUF+")
    family.facility.set_state(running.batchID, SlurmState.RUNNING)
    family.facility.finish(done.batchID)
    (s1, d1), (s2, _), (s3, _) = drive(mon, workers)
    assert s1 is None and "BURST_BUF+" in d1
    assert (s2, s3) == (WorkSpec.ST_running, WorkSpec.ST_finished)
    assert odd.status == WorkSpec.ST_submitted  # kept
    assert odd.errorCode is None


# 8. missing from accounting -----------------------------------------------------------------
def test_final_only_in_the_queue_past_grace(family, clock):
    family.reconfigure(queue_linger=3600, accounting_lag=3600)
    sub, mon, _ = family.plugins()
    (ws,) = tracked(family, mon, sub, (81,))
    family.facility.set_state(ws.batchID, SlurmState.RUNNING)
    drive(mon, [ws])
    family.facility.finish(ws.batchID)
    ((status, diag),) = drive(mon, [ws])
    assert status == WorkSpec.ST_running and "not in accounting yet" in diag, diag
    clock.advance(30)
    ((status, diag),) = drive(mon, [ws])
    assert status == WorkSpec.ST_running, diag
    clock.advance(40)  # past missingGraceSeconds (60)
    ((status, diag),) = drive(mon, [ws])
    if not family.queue_shows_ended_jobs:
        # the service's live set holds no ended job (IRI: an ended job is in its history or
        # nowhere): it never showed a final state to trust, so the job is lost
        assert status == WorkSpec.ST_failed and ws.errorCode == ErrorCode.JOB_LOST, diag
        return
    assert status == WorkSpec.ST_finished, diag
    assert "accounting never confirmed it" in diag


def test_missing_everywhere_past_grace_fails_as_lost(family, clock):
    if family.capabilities.pilot_is_task:
        pytest.skip(
            "the pilot is the task: it reports its own end (return code) besides Slurm's accounting"
        )
    family.reconfigure(queue_linger=0, accounting_lag=3600)
    sub, mon, _ = family.plugins()
    (ws,) = tracked(family, mon, sub, (82,))
    family.facility.finish(ws.batchID)  # leaves the queue, never reaches accounting
    ((status, diag),) = drive(mon, [ws])
    assert status == WorkSpec.ST_submitted, diag
    assert ws.errorCode is None
    clock.advance(70)
    ((status, diag),) = drive(mon, [ws])
    assert status == WorkSpec.ST_failed
    assert ws.errorCode == ErrorCode.JOB_LOST == 5661
    assert re.match(ERROR_PATTERNS[5661], diag), diag
    assert ws.batchID in diag


# 9. maintenance ---------------------------------------------------------------------------
def test_planned_maintenance_keeps_every_status(family):
    if not family.capabilities.outages:
        pytest.skip("the service announces no planned outages (Globus Compute: online or not)")
    sub, mon, _ = family.plugins()
    workers = tracked(family, mon, sub, (91, 92))
    family.facility.set_state(workers[1].batchID, SlurmState.RUNNING)
    drive(mon, workers)
    assert [w.status for w in workers] == [WorkSpec.ST_submitted, WorkSpec.ST_running]
    end = time.time() + 7200
    set_health(
        family.facility,
        Health(
            False, "maintenance", "system upgrade", planned=Outage(time.time() - 60, end, "upgrade")
        ),
    )
    queries = family.facility.requests["query"]
    answers = drive(mon, workers)
    assert [s for s, _ in answers] == [WorkSpec.ST_submitted, WorkSpec.ST_running]
    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(end))
    for _, diag in answers:
        assert "maintenance" in diag and until in diag, diag
    assert family.facility.requests["query"] == queries


def test_unplanned_outage_is_could_not_check(family):
    sub, mon, _ = family.plugins()
    workers = tracked(family, mon, sub, (93, 94))
    set_health(family.facility, Health(False, "unavailable", "power outage"))
    queries = family.facility.requests["query"]
    answers = drive(mon, workers)
    assert [s for s, _ in answers] == [None, None]
    assert all("unavailable" in d for _, d in answers), answers
    assert family.facility.requests["query"] == queries
    assert [w.status for w in workers] == [WorkSpec.ST_submitted] * 2


# 10. a cancelled job's pilots ------------------------------------------------------------------
def test_cancelled_job_with_sigterm_pilots_stays_cancelled(family):
    if not family.capabilities.files:
        pytest.skip("the service gives no file access: no pilot summaries")
    sub, mon, swp = family.plugins()
    (ws,) = tracked(family, mon, sub, (101,))
    family.facility.set_state(ws.batchID, SlurmState.RUNNING)
    drive(mon, [ws])
    assert kill(swp, [ws])[0][0] is True
    family.facility.files[f"{work_dir_of(ws)}/{SUMMARY_FILE}"] = summary([143, 143])
    reads = family.facility.requests["read"]
    ((status, diag),) = drive(mon, [ws])
    assert status == WorkSpec.ST_cancelled
    assert ws.errorCode == ErrorCode.CANCELLED == 5659
    assert diag.startswith("Slurm job cancelled"), diag
    assert re.match(ERROR_PATTERNS[5659], diag)
    # the pilots are counted after Slurm's words, never blamed for the cancellation
    assert diag.endswith("2 pilots ended with the allocation"), diag
    assert "failed" not in diag
    assert family.facility.requests["read"] == reads + 1
    # a second check (e.g. after a restart): same answer, no second read
    ((again, diag2),) = drive(mon, [ws])
    assert (again, diag2) == (status, diag)
    assert ws.errorCode == 5659
    assert family.facility.requests["read"] == reads + 1


def test_failed_pilots_name_the_first_failure(family):
    if not family.capabilities.files:
        pytest.skip("the service gives no file access: no pilot summaries")
    sub, mon, _ = family.plugins()
    (ws,) = tracked(family, mon, sub, (102,))
    family.facility.files[f"{work_dir_of(ws)}/{SUMMARY_FILE}"] = summary([0, 7])
    family.facility.finish(ws.batchID, exit_code=7)
    ((status, diag),) = drive(mon, [ws])
    assert status == WorkSpec.ST_failed
    assert ws.errorCode == ErrorCode.PILOTS_FAILED
    assert re.match(ERROR_PATTERNS[5663], diag), diag
    assert "exit 7" in diag


# 11. CVMFS --------------------------------------------------------------------------------
def test_cvmfs_exit_code(family):
    sub, mon, _ = family.plugins()
    (ws,) = tracked(family, mon, sub, (111,))
    family.facility.finish(ws.batchID, exit_code=64)
    ((status, diag),) = drive(mon, [ws])
    assert status == WorkSpec.ST_failed
    assert ws.errorCode == ErrorCode.CVMFS == 2064
    assert re.match(ERROR_PATTERNS[2064], diag), diag
    assert ws.errorDiag == diag


def test_cvmfs_from_the_pilot_summary(family):
    if not family.capabilities.files:
        pytest.skip("the service gives no file access: no pilot summaries")
    sub, mon, _ = family.plugins()
    (ws,) = tracked(family, mon, sub, (112,))
    family.facility.files[f"{work_dir_of(ws)}/{SUMMARY_FILE}"] = summary(
        [64], cvmfs_error="nid000: atlas.cern.ch not mounted"
    )
    family.facility.finish(ws.batchID, exit_code=64)
    ((status, diag),) = drive(mon, [ws])
    assert status == WorkSpec.ST_failed
    assert ws.errorCode == 2064
    assert re.match(ERROR_PATTERNS[2064], diag), diag
    assert "atlas.cern.ch not mounted" in diag


# 12. summaries in bulk --------------------------------------------------------------------
def test_summaries_read_in_one_request(family):
    if not family.capabilities.files:
        pytest.skip("the service gives no file access: no pilot summaries")
    sub, mon, _ = family.plugins(chunkSize=10)
    workers = tracked(family, mon, sub, range(1200, 1250))
    with_file = workers[:45]
    without = workers[45:]
    for ws in with_file:
        family.facility.files[f"{work_dir_of(ws)}/{SUMMARY_FILE}"] = summary([0])
    for ws in workers:
        family.facility.finish(ws.batchID)
    reads = family.facility.requests["read"]
    answers = drive(mon, workers)
    assert [s for s, _ in answers] == [WorkSpec.ST_finished] * 50
    assert family.facility.requests["read"] == reads + 1
    assert all(attr(ws, PILOTS)["n"] == 1 for ws in with_file)
    assert all(attr(ws, PILOTS) == {"none": True} for ws in without)
    assert all("1 pilots, 0 failed" in d for _, d in answers[:45]), answers[:2]
    # the missing files are remembered: the second pass asks for nothing
    for ws in without:
        family.facility.files[f"{work_dir_of(ws)}/{SUMMARY_FILE}"] = summary([0])
    answers = drive(mon, workers)
    assert [s for s, _ in answers] == [WorkSpec.ST_finished] * 50
    assert family.facility.requests["read"] == reads + 1


# 13. batch logs in bulk -------------------------------------------------------------------
def test_batch_logs_read_in_one_request_and_handed_to_harvester(family):
    if not family.capabilities.files:
        pytest.skip("the service gives no file access: no batch logs")
    sub, mon, _ = family.plugins(chunkSize=10, batchLogMaxBytes=1024)
    workers = tracked(family, mon, sub, range(1300, 1330))
    logged = workers[:20]
    for ws in logged:
        family.facility.files[str(facility_path(ws))] = "x" * 5000 + f"end of {ws.workerID}\n"
    for ws in workers:
        family.facility.finish(ws.batchID)
    tails = family.facility.requests["tail"]
    answers = drive(mon, workers)
    assert [s for s, _ in answers] == [WorkSpec.ST_finished] * 30
    assert family.facility.requests["tail"] == tails + 1
    for ws in logged:
        local = Path(attr(ws, BATCH_LOG_COPY))
        assert local.parent == Path(ws.get_access_point())
        text = local.read_text()
        assert len(text) == 1024 and text.endswith(f"end of {ws.workerID}\n")
        assert ws.workAttributes["batchLog"].endswith(f"__{local.name}")
        assert list(ws.logFilesToUpload) == [str(local)]
    assert all(attr(ws, BATCH_LOG_COPY) == "missing" for ws in workers[20:])
    assert all("batchLog" not in ws.workAttributes for ws in workers[20:])
    drive(mon, workers)  # Harvester's second look: nothing read again
    assert family.facility.requests["tail"] == tails + 1


def test_batch_logs_off(family):
    sub, mon, _ = family.plugins(fetchBatchLog=False)
    workers = tracked(family, mon, sub, (1400,))
    family.facility.finish(workers[0].batchID)
    tails = family.facility.requests["tail"]
    assert [s for s, _ in drive(mon, workers)] == [WorkSpec.ST_finished]
    assert family.facility.requests["tail"] == tails
    assert attr(workers[0], BATCH_LOG_COPY) is None
