"""A worker's life through submit and monitor, and every kind of submit answer."""

from __future__ import annotations

import re

from harvester_edge.edge.lifecycle import TASK, attr
from harvester_edge.edge.states import ERROR_PATTERNS, ErrorCode
from harvester_edge.facilities.base import Health
from harvester_edge.facilities.passthrough import SlurmState
from harvester_edge.harvester import WorkSpec

from ._helpers import drive, only_job, submit, tag_of

PATTERN_5601 = r"submission command failed \(exit code = .*\).*"


def submitted(family, sub, mon, ws):
    """Submit one worker and run the monitor until it is adopted; returns the job."""
    ((ok, message),) = submit(sub, [ws])
    assert ok is True, message
    if family.async_submit:
        assert not ws.batchID
        assert attr(ws, TASK), ws.workAttributes
        assert "task" in message
    else:
        assert ws.batchID
        assert message == f"submitted as batch job {ws.batchID}"
    ((status, diag),) = drive(mon, [ws])
    assert status == WorkSpec.ST_submitted, diag
    job = only_job(family.facility, ws)
    assert ws.batchID == job.job_id
    assert job.name == tag_of(ws)
    return job


# 1. lifecycle -----------------------------------------------------------------------------
def test_submit_run_finish(family):
    sub, mon, _ = family.plugins()
    ws = family.workspec(1)
    job = submitted(family, sub, mon, ws)
    assert ws.nativeStatus == "PENDING"

    family.facility.set_state(job.job_id, SlurmState.RUNNING)
    ((status, _),) = drive(mon, [ws])
    assert status == WorkSpec.ST_running
    assert ws.nativeStatus == "RUNNING"

    family.facility.finish(job.job_id)
    ((status, diag),) = drive(mon, [ws])
    assert status == WorkSpec.ST_finished, diag
    assert ws.nativeStatus == "COMPLETED"
    assert ws.nativeExitCode == 0
    assert ws.errorCode is None
    assert family.facility.requests["submit"] == 1
    assert len(family.facility.jobs) == 1


def test_failed_exit_code(family):
    sub, mon, _ = family.plugins()
    ws = family.workspec(2)
    job = submitted(family, sub, mon, ws)
    family.facility.set_state(job.job_id, SlurmState.RUNNING)
    drive(mon, [ws])
    family.facility.finish(job.job_id, exit_code=3)
    ((status, diag),) = drive(mon, [ws])
    assert status == WorkSpec.ST_failed
    assert ws.errorCode == ErrorCode.NONZERO_EXIT == 5651
    assert re.match(ERROR_PATTERNS[5651], diag), diag
    assert "exit code 3" in diag
    assert ws.errorDiag == diag
    assert ws.nativeExitCode == 3
    assert ws.nativeStatus == "FAILED"


def test_cancelled(family):
    sub, mon, _ = family.plugins()
    ws = family.workspec(3)
    job = submitted(family, sub, mon, ws)
    family.facility.set_state(job.job_id, SlurmState.CANCELLED, state_text="CANCELLED by 4242")
    ((status, diag),) = drive(mon, [ws])
    assert status == WorkSpec.ST_cancelled
    assert ws.errorCode == ErrorCode.CANCELLED == 5659
    assert re.match(ERROR_PATTERNS[5659], diag), diag
    assert "4242" in diag


# 2. submit answers ------------------------------------------------------------------------
def test_refused_submit_is_false_with_5601_pattern(family):
    sub, _, _ = family.plugins()
    family.facility.script("submit", "refuse")
    ws = family.workspec(10)
    ((ok, message),) = submit(sub, [ws])
    assert ok is False
    assert re.match(PATTERN_5601, message), message
    assert "refused" in message
    assert not ws.batchID
    assert family.facility.jobs == {}
    assert family.facility.requests["submit"] == 1


def test_qos_limit_is_none_then_throttled(family):
    sub, _, _ = family.plugins()
    throttler, qc = family.throttler(), family.queue_config()
    assert throttler.to_be_throttled(qc) == (False, "")
    family.facility.script("submit", "limit")
    ((ok, message),) = submit(sub, [family.workspec(11)])
    assert ok is None
    assert "submit limit" in message and "QOSMaxSubmitJobPerUserLimit" in message
    assert family.facility.jobs == {}
    throttled, reason = throttler.to_be_throttled(qc)
    assert throttled is True
    assert "submit limit" in reason and "QOSMaxSubmitJobPerUserLimit" in reason
    assert "\n" not in reason
    # the hold is configurable: with none, the limit no longer throttles
    assert family.throttler().to_be_throttled(family.queue_config(submitLimitHoldSeconds=0)) == (
        False,
        "",
    )


def test_qos_limit_in_a_task_is_missed_then_throttled(async_family):
    fam = async_family
    fam.reconfigure(task_delay=None)
    sub, mon, _ = fam.plugins()
    ws_limit, ws_bad = fam.workspec(12), fam.workspec(13)
    assert [ok for ok, _ in submit(sub, [ws_limit, ws_bad])] == [True, True]
    task = fam.facility.tasks[attr(ws_limit, TASK)]
    task.error, task.done = "sbatch: error: QOSMaxSubmitJobPerUserLimit", True
    task = fam.facility.tasks[attr(ws_bad, TASK)]
    task.error, task.done = "sbatch: error: invalid partition specified: nope", True
    (s1, d1), (s2, d2) = drive(mon, [ws_limit, ws_bad])
    assert s1 == WorkSpec.ST_missed and "QOSMaxSubmitJobPerUserLimit" in d1
    assert s2 == WorkSpec.ST_failed
    assert ws_bad.errorCode == ErrorCode.SUBMIT_REJECTED == 5601
    assert re.match(PATTERN_5601, d2) and "invalid partition" in d2, d2
    throttled, reason = fam.throttler().to_be_throttled(fam.queue_config())
    assert throttled is True and "QOSMaxSubmitJobPerUserLimit" in reason
    assert fam.facility.jobs == {}


def test_auth_refused_is_none(family):
    sub, _, _ = family.plugins()
    family.facility.script("submit", "auth")
    ((ok, message),) = submit(sub, [family.workspec(14)])
    assert ok is None
    assert "credentials refused" in message
    assert family.facility.jobs == {}
    assert family.facility.requests["submit"] == 1


def test_machine_unavailable_submits_nothing(family):
    family.facility.health_answer = Health(False, "unavailable", "scheduled power work")
    sub, _, _ = family.plugins()
    workers = [family.workspec(i) for i in (15, 16, 17)]
    answers = submit(sub, workers)
    assert [ok for ok, _ in answers] == [None, None, None]
    assert all("unavailable" in m and "scheduled power work" in m for _, m in answers), answers
    assert family.facility.requests["submit"] == 0
    assert family.facility.jobs == {} and family.facility.tasks == {}


# 19. float worker fields ------------------------------------------------------------------
def test_float_worker_fields(family, tmp_path):
    template = tmp_path / "template.sh"
    template.write_text(
        "#!/bin/bash\n#SBATCH --mem={requestRam}\n#SBATCH --time={requestWalltimeMinute}\n"
        "echo worker {workerID}\n"
    )
    sub, mon, _ = family.plugins(templateFile=str(template))
    ws = family.workspec(19, minRamCount=1843.2, maxWalltime=3599.5, nCore=1.0)
    ((ok, message),) = submit(sub, [ws])
    assert ok is True, message
    drive(mon, [ws])
    job = only_job(family.facility, ws)
    assert re.search(r"--mem=['\"]?1844\b", job.script), job.script
    assert re.search(r"--time=['\"]?60\b", job.script), job.script
    assert f"--job-name={tag_of(ws)}" in job.script


def test_a_spec_the_service_cannot_encode_fails_only_that_worker(family):
    sub, _, _ = family.plugins(submitConcurrency=1)
    bad, good = family.workspec(251), family.workspec(252)
    family.facility.script("submit", "unencodable")
    (ok_bad, why), (ok_good, _) = submit(sub, [bad, good])
    assert ok_bad is False and "cannot encode" in why and "header" in why, why
    assert ok_good is True
