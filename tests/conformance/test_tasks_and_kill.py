"""Asynchronous submits that stay pending or get lost, and kills that are confirmed by Slurm."""

from __future__ import annotations

import re

import pytest

from harvester_edge.edge.lifecycle import LOOKUP_SINCE, TASK, attr
from harvester_edge.edge.states import ERROR_PATTERNS, ErrorCode
from harvester_edge.facilities.base import CancelOutcome
from harvester_edge.facilities.passthrough import SlurmState
from harvester_edge.harvester import WorkSpec

from ._helpers import drive, kill, only_job, script_ambiguous_submit, submit, tag_of


# 5. a task pending long, a task lost -------------------------------------------------------
def test_pending_task_keeps_the_worker_submitted(async_family, clock):
    fam = async_family
    fam.reconfigure(task_delay=None)
    sub, mon, _ = fam.plugins()
    ws = fam.workspec(51)
    assert submit(sub, [ws])[0][0] is True
    ((status, diag),) = drive(mon, [ws])
    assert status == WorkSpec.ST_submitted and "pending" in diag
    clock.advance(3600)  # far past taskTimeoutSeconds (30) and lookupGraceSeconds (60)
    for _ in range(2):
        ((status, diag),) = drive(mon, [ws])
        assert status == WorkSpec.ST_submitted, diag
        assert "longer than taskTimeoutSeconds" in diag
    assert ws.errorCode is None and not ws.batchID
    fam.facility.complete_tasks()
    ((status, _),) = drive(mon, [ws])
    assert status == WorkSpec.ST_submitted
    assert ws.batchID == only_job(fam.facility, ws).job_id


def test_lost_task_grace_counts_from_the_lookup(async_family, clock):
    fam = async_family
    fam.reconfigure(task_delay=None)
    sub, mon, _ = fam.plugins()
    lost = fam.workspec(52)
    assert submit(sub, [lost])[0][0] is True
    drive(mon, [lost])
    clock.advance(1000)  # submitted long ago: the grace has not started yet
    fam.facility.forget_tasks()
    finds = fam.facility.requests["find"]
    ((status, diag),) = drive(mon, [lost])
    assert status == WorkSpec.ST_submitted, diag
    # one lookup; a task-based one is asked twice: the probe starts, then it is read
    asks = 2 if fam.capabilities.deferred_queries else 1
    assert fam.facility.requests["find"] == finds + asks
    started = attr(lost, LOOKUP_SINCE)
    assert started and abs(started - clock()) < 5
    clock.advance(40)  # within lookupGraceSeconds (60) of the lookup's start
    ((status, diag),) = drive(mon, [lost])
    assert status == WorkSpec.ST_submitted, diag
    assert lost.errorCode is None
    clock.advance(40)
    ((status, diag),) = drive(mon, [lost])
    assert status == WorkSpec.ST_failed
    assert lost.errorCode == ErrorCode.SUBMIT_LOST == 5662
    assert re.match(ERROR_PATTERNS[5662], diag), diag
    assert tag_of(lost) in diag

    # the job shows up after all: cancelled on the monitor's next cycle with other workers
    late = fam.facility.sbatch(tag_of(lost))
    other = fam.workspec(53)
    assert submit(sub, [other])[0][0] is True
    fam.facility.complete_tasks()
    ((status, _),) = drive(mon, [other])
    assert status == WorkSpec.ST_submitted
    assert fam.facility.cancelled == [late]
    assert fam.facility.jobs[late].state is SlurmState.CANCELLED
    assert not fam.facility.jobs[other.batchID].state.is_final


# 6/10/11. kill -----------------------------------------------------------------------------
def test_kill_waits_for_a_pending_task(async_family):
    fam = async_family
    fam.reconfigure(task_delay=None)
    sub, mon, swp = fam.plugins()
    ws = fam.workspec(61)
    submit(sub, [ws])
    assert attr(ws, TASK)
    ((ok, message),) = kill(swp, [ws])
    assert ok is False and "pending" in message, message
    assert fam.facility.cancelled == []
    fam.facility.complete_tasks()
    ((ok, message),) = kill(fam.plugins()[2], [ws])
    assert ok is True, message
    job = only_job(fam.facility, ws)
    assert fam.facility.cancelled == [job.job_id]
    assert job.state is SlurmState.CANCELLED
    assert "CANCELLED" in message


def test_kill_within_lookup_grace_then_job_appears(family, clock):
    sub, mon, swp = family.plugins()
    ws = family.workspec(62)
    family.facility.script("submit", "timeout")  # maybe sent; here nothing was created
    ((ok, message),) = submit(sub, [ws])
    assert ok is True and "outcome unknown" in message, message
    ((status, _),) = drive(mon, [ws])
    assert status == WorkSpec.ST_submitted and not ws.batchID
    clock.advance(30)  # within lookupGraceSeconds
    ((ok, message),) = kill(swp, [ws])
    assert ok is False and tag_of(ws) in message, message
    late = family.facility.sbatch(tag_of(ws))
    ((ok, message),) = kill(swp, [ws])
    assert ok is True, message
    assert family.facility.cancelled == [late]
    assert family.facility.jobs[late].state is SlurmState.CANCELLED


def test_kill_of_a_job_that_already_completed(family):
    sub, mon, swp = family.plugins()
    ws = family.workspec(63)
    submit(sub, [ws])
    drive(mon, [ws])
    family.facility.finish(ws.batchID)
    ((ok, message),) = kill(swp, [ws])
    assert ok is True, message
    assert "COMPLETED" in message
    assert family.facility.cancelled == [ws.batchID]  # scancel was asked and refused
    assert family.facility.jobs[ws.batchID].state is SlurmState.COMPLETED


def test_kill_of_a_running_job_is_confirmed(family):
    sub, mon, swp = family.plugins()
    workers = [family.workspec(i) for i in (64, 65)]
    submit(sub, workers)
    drive(mon, workers)
    family.facility.set_state(workers[0].batchID, SlurmState.RUNNING)
    assert [ok for ok, _ in kill(swp, workers)] == [True, True]
    assert sorted(family.facility.cancelled) == sorted(w.batchID for w in workers)
    assert family.facility.live_jobs() == []
    assert [s for s, _ in drive(mon, workers)] == [WorkSpec.ST_cancelled] * 2
    assert [w.errorCode for w in workers] == [ErrorCode.CANCELLED] * 2


def test_kill_not_confirmed_is_false(family):
    sub, mon, swp = family.plugins()
    ws = family.workspec(66)
    submit(sub, [ws])
    drive(mon, [ws])
    family.facility.script("cancel", "refuse")
    ((ok, message),) = kill(swp, [ws])
    assert ok is False and "not confirmed" in message, message
    assert not family.facility.jobs[ws.batchID].state.is_final


def test_kill_of_a_worker_never_submitted(family):
    _, _, swp = family.plugins()
    ws = family.workspec(67)
    ((ok, message),) = kill(swp, [ws])
    assert ok is True and "never submitted" in message
    assert family.facility.requests["cancel"] == 0


def test_kill_past_grace_watches_the_tag(family, clock):
    sub, mon, swp = family.plugins()
    ws, other = family.workspec(68), family.workspec(69)
    family.facility.script("submit", "timeout")
    assert submit(sub, [ws])[0][0] is True
    clock.advance(100)  # past lookupGraceSeconds (60), nothing ever appeared
    ((ok, message),) = kill(swp, [ws])
    assert ok is True and "no batch job appeared" in message, message
    late = family.facility.sbatch(tag_of(ws))
    assert submit(sub, [other])[0][0] is True
    ((status, _),) = drive(mon, [other])
    assert status == WorkSpec.ST_submitted
    assert family.facility.cancelled == [late]
    assert family.facility.jobs[late].state is SlurmState.CANCELLED
    assert not family.facility.jobs[other.batchID].state.is_final


def test_kill_of_an_ended_job_known_only_by_its_tag(family):
    """The worker never got its job id (ambiguous submit, lookup failed) and the job has
    already ended: accounting confirms it, so the kill is done."""
    if not family.finds_ended_jobs:
        pytest.skip(
            "the service finds jobs by name in its live list only (S3M has no job history "
            "by name): a job that ended and left the queue cannot be found by its tag"
        )
    sub, _, swp = family.plugins()
    ws = family.workspec(70)
    script_ambiguous_submit(family, sub, "created_then_502")
    family.facility.script("find", "timeout")
    assert submit(sub, [ws])[0][0] is True
    assert not ws.batchID
    family.facility.complete_tasks()
    job = only_job(family.facility, ws)
    family.facility.finish(job.job_id)
    ((ok, message),) = kill(swp, [ws])
    assert ok is True, message
    assert "COMPLETED" in message
    assert job.state is SlurmState.COMPLETED


def test_kill_of_an_ended_job_whose_task_was_not_read(async_family):
    fam = async_family
    fam.reconfigure(task_delay=None)
    sub, _, swp = fam.plugins()
    ws = fam.workspec(71)
    submit(sub, [ws])
    fam.facility.complete_tasks()
    job = only_job(fam.facility, ws)
    fam.facility.finish(job.job_id, exit_code=1)
    ((ok, message),) = kill(swp, [ws])
    assert ok is True, message
    assert "FAILED" in message


def test_task_naming_a_job_that_does_not_exist(async_family, clock):
    """A task's job id is a candidate only; when no such job shows up, the worker's own job
    (found under its tag) must not be left running unaccounted."""
    fam = async_family
    fam.reconfigure(task_delay=None)
    sub, mon, _ = fam.plugins()
    ws, other = fam.workspec(72), fam.workspec(73)
    submit(sub, [ws])
    fam.facility.complete_tasks()
    own = only_job(fam.facility, ws)
    fam.facility.tasks[attr(ws, TASK)].job_id = "999999"  # the service answered a wrong id
    drive(mon, [ws])
    clock.advance(100)  # past missingGraceSeconds: the task's id is given up
    drive(mon, [ws])
    drive(mon, [ws])  # the next cycle looks the worker's own tag up
    submit(sub, [other])
    fam.facility.complete_tasks()
    drive(mon, [other])  # a further cycle (orphan watch)
    assert ws.batchID != "999999"
    if ws.status in (WorkSpec.ST_failed, WorkSpec.ST_cancelled, WorkSpec.ST_finished):
        assert own.state is SlurmState.CANCELLED, (
            f"worker ended {ws.status} ({ws.errorDiag}) while its job {own.job_id} under "
            f"its tag is {own.state.name}, neither adopted nor cancelled"
        )
    else:
        assert ws.batchID == own.job_id, ws.workAttributes


def test_task_error_while_a_job_was_created(async_family):
    """sbatch can report an error although slurmctld created the job ("Socket timed out on
    send/recv operation"): the worker fails with the submit error, and a job under its tag
    must not run unaccounted (the monitor cancels jobs under tags of ended workers)."""
    fam = async_family
    fam.reconfigure(task_delay=None)
    sub, mon, _ = fam.plugins()
    ws, other = fam.workspec(74), fam.workspec(75)
    submit(sub, [ws])
    task = fam.facility.tasks[attr(ws, TASK)]
    task.error = "sbatch: error: Batch job submission failed: Socket timed out on send/recv"
    task.done = True
    created = fam.facility.sbatch(tag_of(ws))
    ((status, diag),) = drive(mon, [ws])
    if status == WorkSpec.ST_failed:
        assert ws.errorCode == ErrorCode.SUBMIT_REJECTED and "Socket timed out" in diag
        submit(sub, [other])
        fam.facility.complete_tasks()
        drive(mon, [other])  # the next cycle
        assert fam.facility.jobs[created].state is SlurmState.CANCELLED, (
            f"worker failed ({diag}) but job {created} under its tag is still "
            f"{fam.facility.jobs[created].state.name}"
        )
    else:  # or the job is found under the tag and adopted
        drive(mon, [ws])
        assert ws.batchID == created, (status, diag)


def test_kill_after_an_ambiguous_submit_kills_the_duplicates(family):
    """A worker adopted after an ambiguous submit is killed with every job under its tag.
    (A service that dedupes submits is made to fail every resend, so it ends on the lookup;
    where lookups are tasks the monitor adopts the job.)"""
    sub, mon, swp = family.plugins()
    ws = family.workspec(76)
    script_ambiguous_submit(family, sub, "created_then_502")
    assert submit(sub, [ws])[0][0] is True
    if family.capabilities.deferred_queries:
        assert not ws.batchID
        drive(mon, [ws])
    first = ws.batchID
    assert first
    late = family.facility.sbatch(tag_of(ws))
    ((ok, message),) = kill(swp, [ws])
    assert ok is True, message
    if family.capabilities.deferred_queries:
        # a cancel is read a call later: the adopted job is asked again once the lookup
        # (also read a call later) adds the duplicate to the request
        assert set(family.facility.cancelled) == {first, late}
    else:
        assert sorted(family.facility.cancelled) == sorted([first, late])
    assert family.facility.live_jobs() == []


def test_kill_confirms_every_duplicate_it_asked_to_cancel(family, monkeypatch):
    """The first cancel of a duplicate under the worker's tag is refused (slurmctld busy):
    the worker is not reported killed while that job still runs."""
    sub, mon, swp = family.plugins()
    ws = family.workspec(77)
    script_ambiguous_submit(family, sub, "created_then_502")
    assert submit(sub, [ws])[0][0] is True
    drive(mon, [ws])  # adopted (where lookups are tasks, by the monitor)
    first = ws.batchID
    assert first
    late = family.facility.sbatch(tag_of(ws))
    scancel = family.facility._scancel
    refused: list[str] = []

    def busy_once(job_ids):
        out = scancel([j for j in job_ids if j != late or refused])
        if late in job_ids and not refused:
            refused.append(late)
            out[late] = CancelOutcome.refused(
                f"scancel: error: Kill job error on job id {late}: Socket timed out"
            )
        return out

    monkeypatch.setattr(family.facility, "_scancel", busy_once)
    ((ok, message),) = kill(swp, [ws])
    assert refused == [late]
    live = [(j.job_id, j.state.name) for j in family.facility.live_jobs()]
    if ok:
        assert live == [], f"worker reported killed ({message}) while {live} still run"
    else:  # not confirmed yet: the next call finishes it
        ((ok, message),) = kill(swp, [ws])
        assert ok is True, message
        assert family.facility.live_jobs() == []
    assert family.facility.jobs[late].state is SlurmState.CANCELLED
