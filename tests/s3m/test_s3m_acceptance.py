"""The S3M family end to end: the loopback S3M gateway over the real Slurm cluster.

The SFAPI acceptance list, run for S3M: lifecycle, failure with exit code and Slurm reason,
cancel, slow answers, 5xx after create, a 5xx storm, resource not OPERATIONAL, a downtime
ahead, hostile worker fields, and the project token's expiry.
"""

from __future__ import annotations

import logging
import time

import pytest

from harvester_edge.edge.states import ErrorCode
from harvester_edge.harvester import WorkSpec

from ..sfapi.conftest import all_final, never_failed_for, run_until
from .conftest import S3MSite

pytestmark = pytest.mark.slurm


def tag(ws: WorkSpec) -> str:
    return str(ws.workAttributes["edgeTag"])


def test_lifecycle_finished_failed_with_exit_code(site: S3MSite) -> None:
    submitter, monitor, _ = site.plugins()
    ok_worker, bad_worker = site.worker("sleep 3; exit 0"), site.worker("sleep 1; exit 3")
    results = submitter.submit_workers([ok_worker, bad_worker])
    assert [r[0] for r in results] == [True, True], results
    assert ok_worker.batchID and bad_worker.batchID  # S3M answers a job id at once
    seen: list[list[str | None]] = []
    run_until(monitor, [ok_worker, bad_worker], all_final, seen=seen)
    assert ok_worker.status == WorkSpec.ST_finished
    assert bad_worker.status == WorkSpec.ST_failed and bad_worker.nativeExitCode == 3
    assert bad_worker.errorCode == ErrorCode.NONZERO_EXIT and "exit code 3" in bad_worker.errorDiag
    for ws in (ok_worker, bad_worker):
        assert len(site.jobs_named(tag(ws))) == 1


def test_cancel_through_the_sweeper(site: S3MSite) -> None:
    submitter, monitor, sweeper = site.plugins()
    ws = site.worker("sleep 600")
    assert submitter.submit_workers([ws])[0][0] is True
    run_until(monitor, [ws], lambda w: w[0].status == WorkSpec.ST_running)
    ((ok, message),) = sweeper.kill_workers([ws])
    assert ok is True, message
    run_until(monitor, [ws], all_final)
    assert ws.status == WorkSpec.ST_cancelled and ws.errorCode == ErrorCode.CANCELLED


def test_slow_answers_are_waited_for(site: S3MSite) -> None:
    site.gateway.knobs.update(latency=1.0)
    submitter, monitor, _ = site.plugins()
    ws = site.worker("sleep 1")
    assert submitter.submit_workers([ws])[0][0] is True
    site.gateway.knobs.update(latency=0)
    run_until(monitor, [ws], all_final)
    assert ws.status == WorkSpec.ST_finished


def test_5xx_after_create_gives_exactly_one_job(site: S3MSite) -> None:
    site.gateway.knobs.update(error_after_submit=1.0, seed=3)
    submitter, monitor, _ = site.plugins()
    workers = [site.worker("sleep 1") for _ in range(3)]
    results = submitter.submit_workers(workers)
    assert all(r[0] is True for r in results), results
    site.gateway.knobs.update(error_after_submit=0)
    run_until(monitor, workers, all_final)
    for ws in workers:
        assert ws.status == WorkSpec.ST_finished
        (job,) = site.jobs_named(tag(ws))
        assert ws.batchID == job["jobid"]


def test_5xx_storm_fails_no_worker(site: S3MSite) -> None:
    site.gateway.knobs.update(error_rate=0.3, seed=11)
    submitter, monitor, _ = site.plugins(retryAttempts=6)
    workers = [site.worker("sleep 2") for _ in range(4)]
    results = submitter.submit_workers(workers)
    assert all(r[0] is True for r in results), results
    never_failed_for(monitor, workers, 8)
    site.gateway.knobs.update(error_rate=0)
    run_until(monitor, workers, all_final)
    assert {w.status for w in workers} == {WorkSpec.ST_finished}
    for ws in workers:
        assert len(site.jobs_named(tag(ws))) == 1


def test_resource_not_operational_throttles_and_keeps_statuses(site: S3MSite) -> None:
    submitter, monitor, _ = site.plugins()
    ws = site.worker("sleep 4")
    assert submitter.submit_workers([ws])[0][0] is True
    site.gateway.knobs.update(machine_status="unavailable")
    time.sleep(0.3)  # health cache
    throttled, reason = site.throttle()
    assert throttled is True and "unavailable" in reason.lower(), reason
    ((status, _),) = monitor.check_workers([ws])[1]
    assert status is None  # could not check: Harvester keeps the status
    site.gateway.knobs.update(machine_status="active")
    time.sleep(0.3)
    assert site.throttle() == (False, "")
    run_until(monitor, [ws], all_final)


def test_downtime_ahead_stops_jobs_that_would_overlap(site: S3MSite) -> None:
    site.gateway.schedule_downtime(start_in=1800, duration=3600)
    time.sleep(0.3)
    throttled, reason = site.throttle(walltime=3600)
    assert throttled is True and "outage" in reason, reason
    assert site.throttle(walltime=600) == (False, "")  # a short job ends before it


def test_hostile_worker_fields_never_reach_a_shell(site: S3MSite, tmp_path) -> None:
    marker = tmp_path / "pwned"
    submitter, monitor, _ = site.plugins()
    ws = site.worker("sleep 1")
    hostile = f"Q; touch {marker}; $(touch {marker}) `touch {marker}`"
    ws.computingSite = hostile
    assert submitter.submit_workers([ws])[0][0] is True
    run_until(monitor, [ws], all_final)
    assert ws.status == WorkSpec.ST_finished and not marker.exists()
    assert (site.root / "work" / str(ws.workerID) / "site.txt").read_text().strip() == hostile


def test_expired_token_throttles_without_a_request_storm(site: S3MSite, caplog) -> None:
    token = site.write_token(expires_in=1)
    time.sleep(1.2)  # expired
    submitter, monitor, _ = site.plugins()
    site.gateway.reset_counters()
    with caplog.at_level(logging.DEBUG):
        throttled, reason = site.throttle()
        assert throttled is True and "expire" in reason, reason
        results = submitter.submit_workers([site.worker(), site.worker()])
        for _ in range(3):
            site.throttle()
    assert all(r[0] is None and "expire" in r[1] for r in results), results
    counts = site.gateway.counters
    assert counts.get("submit", 0) == 0
    assert counts.get("introspect", 0) <= 1, counts
    texts = [r.getMessage() for r in caplog.records] + [reason] + [r[1] for r in results]
    assert not any(token in t for t in texts)
