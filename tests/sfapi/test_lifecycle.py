"""SFAPI plugins end to end: gateway over the real Slurm cluster."""

from __future__ import annotations

import os
import time

import pytest

from harvester_edge.edge.states import ErrorCode
from harvester_edge.harvester import WorkSpec

from .conftest import Site, all_final, cycle, never_failed_for, run_until

pytestmark = pytest.mark.slurm


def test_finished_failed_and_running_lifecycle(site: Site) -> None:
    submitter, monitor, _ = site.plugins()
    ok_worker = site.worker("sleep 4; exit 0")
    bad_worker = site.worker("sleep 1; exit 3")
    workers = [ok_worker, bad_worker]
    results = submitter.submit_workers(workers)
    assert [r[0] for r in results] == [True, True], results
    seen: list[list[str | None]] = []
    run_until(monitor, workers, all_final, seen=seen)
    assert "running" in [s[0] for s in seen], "the 4 s job was never seen running"
    assert ok_worker.status == "finished" and ok_worker.nativeExitCode == 0
    assert bad_worker.status == "failed"
    assert bad_worker.nativeExitCode == 3 and bad_worker.errorCode == ErrorCode.NONZERO_EXIT
    assert "exit code 3" in bad_worker.errorDiag
    for ws in workers:
        assert ws.batchID and len(site.jobs_named(ws.workAttributes["edgeTag"])) == 1


def test_pending_job_is_submitted_and_cancelled_by_the_sweeper(site: Site) -> None:
    held = site.template("#SBATCH --begin=now+3600")
    submitter, monitor, sweeper = site.plugins(templateFile=str(held))
    ws = site.worker("sleep 600")
    assert submitter.submit_workers([ws])[0][0] is True
    run_until(monitor, [ws], lambda w: bool(w[0].batchID) and w[0].status == "submitted")
    assert ws.nativeStatus == "PENDING"
    kill = sweeper.kill_workers([ws])
    assert kill[0][0] is True, kill
    run_until(monitor, [ws], all_final)
    assert ws.status == "cancelled"


def test_kill_reports_true_for_every_job_slurm_cancelled(site: Site) -> None:
    submitter, monitor, sweeper = site.plugins()
    workers = [site.worker("sleep 600") for _ in range(3)]
    assert all(r[0] for r in submitter.submit_workers(workers))
    run_until(monitor, workers, lambda ws: all(w.status == "running" for w in ws))
    results = sweeper.kill_workers(workers)
    assert [r[0] for r in results] == [True, True, True], results
    for ws in workers:
        states = [r["state"] for r in site.slurm.sacct(jobids=[ws.batchID])]
        assert states and states[0].startswith("CANCELLED"), states
    run_until(monitor, workers, all_final)
    assert {w.status for w in workers} == {"cancelled"}


def test_slow_task_gets_its_batch_id_later_without_orphans(site: Site) -> None:
    site.gateway.knobs.update(task_delay=5)
    submitter, monitor, _ = site.plugins()
    ws = site.worker("sleep 2")
    start = time.monotonic()
    assert submitter.submit_workers([ws])[0][0] is True
    assert time.monotonic() - start < 3, "the submitter waited for the task"
    assert ws.batchID is None and ws.workAttributes.get("edgeTask")
    answers = cycle(monitor, [ws])
    assert answers[0][0] == "submitted" and "task" in answers[0][1]
    run_until(monitor, [ws], all_final)
    assert ws.status == "finished" and ws.batchID
    assert len(site.jobs_named(ws.workAttributes["edgeTag"])) == 1


def test_post_timeout_after_creation_gives_exactly_one_job_per_worker(site: Site) -> None:
    site.gateway.knobs.update(post_timeout=4)
    submitter, monitor, _ = site.plugins(readTimeout=1.5, retryAttempts=3)
    workers = [site.worker("sleep 1") for _ in range(3)]
    results = submitter.submit_workers(workers)
    assert all(r[0] is True for r in results), results
    site.gateway.knobs.update(post_timeout=0)
    run_until(monitor, workers, all_final)
    for ws in workers:
        assert ws.status == "finished"
        assert len(site.jobs_named(ws.workAttributes["edgeTag"])) == 1


def test_5xx_after_the_job_was_created_gives_exactly_one_job_per_worker(site: Site) -> None:
    """The gateway runs sbatch, then answers 500/502/503/504: never POSTed again, adopted."""
    site.gateway.knobs.update(error_after_submit=1.0, seed=5)
    submitter, monitor, _ = site.plugins()
    workers = [site.worker("sleep 1") for _ in range(3)]
    site.gateway.reset_counters()
    results = submitter.submit_workers(workers)
    assert all(r[0] is True for r in results), results
    assert site.gateway.counters["jobs_submit"] == 3  # one POST per worker, whatever the 5xx
    site.gateway.knobs.update(error_after_submit=0)
    run_until(monitor, workers, all_final)
    for ws in workers:
        assert ws.status == "finished"
        (job,) = site.jobs_named(ws.workAttributes["edgeTag"])
        assert ws.batchID == job["jobid"]


def test_30_percent_5xx_fails_no_worker_and_all_finish_after(site: Site) -> None:
    site.gateway.knobs.update(error_rate=0.3, seed=11)
    submitter, monitor, _ = site.plugins(retryAttempts=6)
    workers = [site.worker("sleep 2") for _ in range(4)]
    results = submitter.submit_workers(workers)
    assert all(r[0] is True for r in results), results
    never_failed_for(monitor, workers, 12)
    site.gateway.knobs.update(error_rate=0)
    run_until(monitor, workers, all_final)
    assert {w.status for w in workers} == {"finished"}
    for ws in workers:
        assert len(site.jobs_named(ws.workAttributes["edgeTag"])) == 1


def test_machine_unavailable_gates_submit_and_monitor(site: Site) -> None:
    submitter, monitor, _ = site.plugins()
    running = site.worker("sleep 5")
    assert submitter.submit_workers([running])[0][0] is True
    site.gateway.knobs.update(machine_status="unavailable")
    time.sleep(0.3)  # health cache
    results = submitter.submit_workers([site.worker(), site.worker()])
    assert [r[0] for r in results] == [None, None]
    assert "unavailable" in results[0][1]
    ok, answers = monitor.check_workers([running])
    assert ok and answers[0][0] is None
    site.gateway.knobs.update(machine_status="active")
    time.sleep(0.3)
    run_until(monitor, [running], all_final)


def test_silent_api_never_hangs_a_plugin_call(site: Site) -> None:
    submitter, monitor, sweeper = site.plugins(
        connectTimeout=1, readTimeout=1, retryAttempts=2, callDeadline=3, killConfirmSeconds=2
    )
    ws = site.worker("sleep 30")
    assert submitter.submit_workers([ws])[0][0] is True
    site.gateway.knobs.update(hang=True)
    time.sleep(0.3)
    bound = 3 + 2 * (1 + 1) + 2  # callDeadline + attempts x (read + backoff) + slack
    for call in (
        lambda: submitter.submit_workers([site.worker()]),
        lambda: monitor.check_workers([ws]),
        lambda: sweeper.kill_workers([ws]),
    ):
        start = time.monotonic()
        answer = call()
        assert time.monotonic() - start < bound
        flat = answer[1] if isinstance(answer, tuple) else answer
        assert all(r[0] in (None, False) for r in flat), flat
        assert all(r[0] != "failed" for r in flat)
    site.gateway.knobs.update(hang=False)
    time.sleep(0.3)
    run_until(
        monitor, [ws], lambda w: w[0].status in ("running", "submitted") and bool(w[0].batchID)
    )
    sweeper.kill_workers([ws])


def test_sbatch_rejection_fails_the_worker_with_slurms_message(site: Site) -> None:
    greedy = site.template("#SBATCH --mem=100000000")
    submitter, monitor, _ = site.plugins(templateFile=str(greedy))
    ws = site.worker()
    assert submitter.submit_workers([ws])[0][0] is True
    run_until(monitor, [ws], all_final)
    assert ws.status == "failed" and ws.errorCode == ErrorCode.SUBMIT_REJECTED
    assert "sbatch" in ws.errorDiag.lower() or "memory" in ws.errorDiag.lower(), ws.errorDiag


def test_hostile_worker_fields_never_reach_a_shell_unquoted(site: Site, tmp_path) -> None:
    marker = tmp_path / "pwned"
    submitter, monitor, _ = site.plugins()
    ws = site.worker("sleep 1")
    hostile = f"Q; touch {marker}; $(touch {marker}) `touch {marker}`"
    ws.computingSite = hostile
    assert submitter.submit_workers([ws])[0][0] is True
    run_until(monitor, [ws], all_final)
    assert ws.status == "finished"
    assert not marker.exists()
    site_file = site.root / "work" / str(ws.workerID) / "site.txt"
    assert site_file.read_text().strip() == hostile


def test_newline_in_a_worker_field_is_refused_for_that_worker_only(site: Site) -> None:
    submitter, _, _ = site.plugins()
    good, bad = site.worker(), site.worker()
    bad.computingSite = "Q\n#SBATCH --uid=0"
    results = submitter.submit_workers([good, bad])
    assert results[0][0] is True
    assert results[1][0] is False and "computingSite" in results[1][1]


def test_key_file_readable_by_others_is_refused_clearly(site: Site, tmp_path) -> None:
    loose = tmp_path / "loose.pem"
    loose.write_bytes(site.key.read_bytes())
    os.chmod(loose, 0o644)
    submitter, monitor, _ = site.plugins(keyFile=str(loose))
    results = submitter.submit_workers([site.worker()])
    assert results[0][0] is None and "0600" in results[0][1]
    tracked = site.worker()
    tracked.batchID = "999999"
    ok, answers = monitor.check_workers([tracked])
    assert ok and answers[0][0] is None and "0600" in answers[0][1]


def test_sweep_worker_removes_the_access_point(site: Site) -> None:
    _, _, sweeper = site.plugins()
    ws = site.worker()
    (open(os.path.join(ws.accessPoint, "f"), "w")).close()
    assert sweeper.sweep_worker(ws) == (True, f"deleted {ws.accessPoint}")
    assert not os.path.exists(ws.accessPoint)
    assert sweeper.sweep_worker(ws)[0] is True


def test_token_is_cached_across_plugin_instances(site: Site) -> None:
    _, monitor, _ = site.plugins()
    ws = site.worker("sleep 1")
    site.plugins()[0].submit_workers([ws])
    cycle(monitor, [ws])
    site.gateway.reset_counters()
    for _ in range(3):
        _, fresh_monitor, _ = site.plugins()  # a new instance per cycle, like Harvester
        cycle(fresh_monitor, [ws])
    assert site.gateway.counters.get("token", 0) == 0


def test_planned_maintenance_window_gates_like_an_outage(site: Site) -> None:
    submitter, monitor, _ = site.plugins()
    tracked = site.worker("sleep 1")
    tracked.batchID = "1"
    tracked.status = WorkSpec.ST_running
    site.gateway.knobs.update(maintenance=True)  # status still reads "active"
    try:
        time.sleep(0.3)
        ok, message = submitter.submit_workers([site.worker()])[0]
        assert ok is None and "planned outage" in message
        # a known window: the last status is kept, so checkTimeout never kills the worker
        status, diag = monitor.check_workers([tracked])[1][0]
        assert status == WorkSpec.ST_running and "planned maintenance until" in diag
    finally:
        site.gateway.knobs.update(maintenance=False)
    time.sleep(0.3)
    assert submitter.submit_workers([site.worker("sleep 1")])[0][0] is True
