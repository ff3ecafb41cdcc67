"""The Globus Compute family end to end: the real SDKs -> the loopback GC web service -> the
real Slurm cluster.

Batch mode runs the SFAPI acceptance list: lifecycle, failure with exit code, cancel through
``scancel``, 5xx after submit -> exactly one Slurm job, a 30 % 5xx storm -> no false failure,
endpoint offline -> throttled and nothing failed, hostile worker fields inert; plus: new
plugin instances per cycle register no function and build no client, and no plugin call
blocks past its deadline.  Task mode: the pilot task's Slurm job id reaches ``batchID``;
killing that job ends the worker cancelled with the right code.
"""

from __future__ import annotations

import time

import pytest

from harvester_edge.edge.states import ErrorCode
from harvester_edge.facilities import gc_functions, registry
from harvester_edge.harvester import WorkSpec

from ..sfapi.conftest import all_final, cycle, never_failed_for, run_until
from .conftest import GCSite

pytestmark = pytest.mark.slurm


def tag(ws: WorkSpec) -> str:
    return str(ws.workAttributes["edgeTag"])


def submit(submitter, workers: list[WorkSpec]) -> list[tuple[bool | None, str]]:
    """``submit_workers`` as Harvester's submitter agent applies it."""
    answers = submitter.submit_workers(workers)
    for ws, (ok, _) in zip(workers, answers, strict=True):
        ws.status = WorkSpec.ST_submitted if ok else WorkSpec.ST_missed
    return answers


def test_lifecycle_finished_failed_with_exit_code(site: GCSite) -> None:
    submitter, monitor, _ = site.plugins()
    ok_worker, bad_worker = site.worker("sleep 3; exit 0"), site.worker("sleep 1; exit 3")
    results = submit(submitter, [ok_worker, bad_worker])
    assert [r[0] for r in results] == [True, True], results
    assert not ok_worker.batchID  # a task: the job id comes with its result
    run_until(monitor, [ok_worker, bad_worker], all_final)
    assert ok_worker.status == WorkSpec.ST_finished, ok_worker.errorDiag
    assert bad_worker.status == WorkSpec.ST_failed and bad_worker.nativeExitCode == 3
    assert bad_worker.errorCode == ErrorCode.NONZERO_EXIT and "exit code 3" in bad_worker.errorDiag
    for ws in (ok_worker, bad_worker):
        (job,) = site.jobs_named(tag(ws))
        assert ws.batchID == job["jobid"]


def kill_until_done(sweeper, workers, timeout: float = 60) -> list[tuple[bool, str]]:
    """``kill_workers`` as Harvester calls it: again next cycle while it answers False (a
    cancel is a task, read a call later)."""
    deadline = time.monotonic() + timeout
    while True:
        answers = sweeper.kill_workers(workers)
        if all(ok for ok, _ in answers) or time.monotonic() > deadline:
            return answers
        time.sleep(1.0)


def test_cancel_through_scancel(site: GCSite) -> None:
    submitter, monitor, sweeper = site.plugins()
    ws = site.worker("sleep 600")
    assert submit(submitter, [ws])[0][0] is True
    run_until(monitor, [ws], lambda w: w[0].status == WorkSpec.ST_running)
    ((ok, message),) = kill_until_done(sweeper, [ws])
    assert ok is True, message
    run_until(monitor, [ws], all_final)
    assert ws.status == WorkSpec.ST_cancelled and ws.errorCode == ErrorCode.CANCELLED
    assert site.gateway.counters.get("submit", 0) > 0


def test_5xx_after_submit_gives_exactly_one_job(site: GCSite) -> None:
    site.gateway.knobs.update(error_after_submit=1.0, seed=3)
    submitter, monitor, _ = site.plugins()
    workers = [site.worker("sleep 1") for _ in range(3)]
    results = submit(submitter, workers)
    assert all(r[0] is True and "outcome unknown" in r[1] for r in results), results
    site.gateway.knobs.update(error_after_submit=0)
    run_until(monitor, workers, all_final)
    for ws in workers:
        assert ws.status == WorkSpec.ST_finished, ws.errorDiag
        (job,) = site.jobs_named(tag(ws))
        assert ws.batchID == job["jobid"]


def test_5xx_storm_fails_no_worker(site: GCSite) -> None:
    submitter, monitor, _ = site.plugins(retryAttempts=6)
    workers = [site.worker("sleep 2") for _ in range(4)]
    results = submit(submitter, workers)
    assert all(r[0] is True for r in results), results
    site.gateway.knobs.update(error_rate=0.3, seed=11)
    never_failed_for(monitor, workers, 10)
    site.gateway.knobs.update(error_rate=0)
    run_until(monitor, workers, all_final)
    assert {w.status for w in workers} == {WorkSpec.ST_finished}
    for ws in workers:
        assert len(site.jobs_named(tag(ws))) == 1


def test_endpoint_offline_throttles_and_fails_nothing(site: GCSite) -> None:
    submitter, monitor, _ = site.plugins()
    ws = site.worker("sleep 4")
    assert submit(submitter, [ws])[0][0] is True
    site.gateway.knobs.update(endpoint_offline=True)
    time.sleep(0.3)  # health cache
    throttled, reason = site.throttle()
    assert throttled is True and "offline" in reason, reason
    for _ in range(3):
        ((status, diag),) = cycle(monitor, [ws])
        assert status is None and "offline" in diag, diag  # could not check: status kept
    ((ok, message),) = submit(submitter, [site.worker()])
    assert ok is None and "offline" in message, message
    site.gateway.knobs.update(endpoint_offline=False)
    time.sleep(0.3)
    assert site.throttle() == (False, "")
    run_until(monitor, [ws], all_final)
    assert ws.status == WorkSpec.ST_finished


def test_hostile_worker_fields_never_reach_a_shell(site: GCSite, tmp_path) -> None:
    marker = tmp_path / "pwned"
    submitter, monitor, _ = site.plugins()
    ws = site.worker("sleep 1")
    hostile = f"Q; touch {marker}; $(touch {marker}) `touch {marker}` {{x}} {{0}}"
    ws.computingSite = hostile
    assert submit(submitter, [ws])[0][0] is True
    run_until(monitor, [ws], all_final)
    assert ws.status == WorkSpec.ST_finished and not marker.exists()
    assert (site.root / "work" / str(ws.workerID) / "site.txt").read_text().strip() == hostile


def test_new_plugins_per_cycle_register_nothing_and_share_the_client(site: GCSite) -> None:
    """Harvester builds plugin instances every cycle: functions are registered once per
    content and the client (session, token, rate bucket) is shared."""
    start = len(gc_functions.REGISTRATIONS)
    workers = [site.worker("sleep 2") for _ in range(2)]
    submitter, monitor, _ = site.plugins()
    assert all(r[0] for r in submit(submitter, workers))
    run_until(monitor, workers, lambda w: all(x.batchID for x in w))
    client = monitor.edge_client()
    clients = len(registry._clients)
    for _ in range(6):
        _, fresh_monitor, _ = site.plugins()
        cycle(fresh_monitor, workers)
        assert fresh_monitor.edge_client() is client
        time.sleep(0.5)
    more_submitter, more_monitor, _ = site.plugins()
    extra = site.worker("sleep 1")
    assert submit(more_submitter, [extra])[0][0] is True
    run_until(more_monitor, workers + [extra], all_final)
    made = gc_functions.REGISTRATIONS[start:]
    assert sorted(made) == ["hedge_probe", "hedge_sbatch"], made  # once each
    assert len(registry._clients) == clients


def test_no_call_blocks_past_its_deadline(site: GCSite) -> None:
    submitter, monitor, sweeper = site.plugins(callDeadline=3, readTimeout=2)
    ws = site.worker("sleep 30")
    assert submit(submitter, [ws])[0][0] is True
    run_until(monitor, [ws], lambda w: bool(w[0].batchID))
    site.gateway.knobs.update(hang=True)
    try:
        for call, args in (
            (monitor.check_workers, [ws]),
            (sweeper.kill_workers, [ws]),
            (submitter.submit_workers, [site.worker()]),
        ):
            start = time.monotonic()
            call(args)
            took = time.monotonic() - start
            assert took < 3 + 2.5, (call.__name__, took)
    finally:
        site.gateway.knobs.update(hang=False)
    site.slurm.scancel([str(ws.batchID)])


# task mode ---------------------------------------------------------------------------------
def test_task_mode_batch_id_from_the_pilot_tasks_job(site: GCSite) -> None:
    submitter, monitor, _ = site.task_plugins()
    ws = site.worker("sleep 2; exit 0")
    assert submit(submitter, [ws])[0][0] is True
    run_until(monitor, [ws], lambda w: bool(w[0].batchID), timeout=120)
    blocks = [j for j in site.gateway.jobs_created if j == str(ws.batchID)]
    assert blocks, (ws.batchID, site.gateway.jobs_created)
    run_until(monitor, [ws], all_final, timeout=120)
    assert ws.status == WorkSpec.ST_finished, ws.errorDiag


def test_task_mode_killing_the_block_cancels_the_worker(site: GCSite) -> None:
    submitter, monitor, _ = site.task_plugins()
    ws = site.worker("sleep 600")
    assert submit(submitter, [ws])[0][0] is True
    run_until(monitor, [ws], lambda w: bool(w[0].batchID), timeout=120)
    site.slurm.scancel([str(ws.batchID)])
    run_until(monitor, [ws], all_final, timeout=120)
    assert ws.status == WorkSpec.ST_cancelled, ws.errorDiag
    assert ws.errorCode == ErrorCode.CANCELLED


def test_task_mode_a_failing_pilot_fails_with_its_return_code(site: GCSite) -> None:
    submitter, monitor, _ = site.task_plugins()
    ws = site.worker("sleep 1; exit 3")
    assert submit(submitter, [ws])[0][0] is True
    run_until(monitor, [ws], all_final, timeout=120)
    assert ws.status == WorkSpec.ST_failed, ws.errorDiag
    assert ws.nativeExitCode == 3 and "3" in ws.errorDiag, ws.errorDiag


def test_a_429_burst_is_waited_out_and_fails_nothing(site: GCSite) -> None:
    submitter, monitor, _ = site.plugins(retryAttempts=4, retryBackoff=0.2)
    site.gateway.knobs.update(burst_429=3, retry_after=1)
    workers = [site.worker("sleep 1") for _ in range(2)]
    results = submit(submitter, workers)
    assert all(ok is not False for ok, _ in results), results  # True, or None: not now
    retry = [ws for ws, (ok, _) in zip(workers, results, strict=True) if ok is None]
    if retry:
        assert all(r[0] is True for r in submit(submitter, retry))
    run_until(monitor, workers, all_final)
    assert {w.status for w in workers} == {WorkSpec.ST_finished}, [
        (w.status, w.errorDiag) for w in workers
    ]
    assert site.gateway.counters.get("throttled", 0) >= 3
    for ws in workers:
        assert len(site.jobs_named(tag(ws))) == 1
