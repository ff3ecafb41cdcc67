"""Never lose, never duplicate, never adopt someone else's job: ambiguous submits, duplicates
under one tag, tasks naming the wrong job, restarts, two Harvester instances on one machine."""

from __future__ import annotations

import logging
import re

import pytest

from harvester_edge.edge import tags
from harvester_edge.edge.lifecycle import AMBIGUOUS_AT, CANDIDATE, TASK, attr
from harvester_edge.edge.states import ERROR_PATTERNS, ErrorCode
from harvester_edge.facilities.passthrough import SlurmState
from harvester_edge.harvester import WorkSpec, harvester_id
from harvester_edge.plugins import submitter as submitter_module
from harvester_edge.plugins import throttler as throttler_module
from harvester_edge.plugins.base import LOG

from ._helpers import (
    QUEUE,
    drive,
    kill,
    only_job,
    restart,
    restored,
    script_ambiguous_submit,
    submit,
    tag_of,
)

AMBIGUOUS = ["created_then_502", "created_then_500", "created_then_timeout"]
#: answered 5xx: the facility still answers, so the submitter looks the tag up at once
ANSWERED_5XX = ["created_then_502", "created_then_500"]


# 3. ambiguous submits ------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ANSWERED_5XX)
def test_ambiguous_submit_adopted_at_once(family, fault):
    """A 5xx after the job was created.  A service that dedupes submits by key gets the same
    spec again and answers the original job; any other is never sent the submit again: the
    submitter looks the tag up and adopts the job at once, or, where lookups are tasks read a
    cycle later, answers "outcome unknown" and the monitor adopts it."""
    caps = family.capabilities
    sub, mon, _ = family.plugins()
    workers = [family.workspec(i) for i in (31, 32)]
    sends = 2 if caps.idempotent_submit else 1  # the resend, same key and same bytes
    for n, ws in enumerate(workers, start=1):
        family.facility.script("submit", fault)
        ((ok, message),) = submit(sub, [ws])
        assert ok is True, message
        assert family.facility.requests["submit"] == n * sends
        if caps.idempotent_submit:  # the service answered the job it made the first time
            assert message == f"submitted as batch job {ws.batchID}", message
            assert family.facility.requests["find"] == 0
            job = only_job(family.facility, ws)
            assert ws.batchID == job.job_id
        elif caps.deferred_queries:  # the lookup is a probe: read by the monitor
            assert "outcome unknown" in message, message
            assert not ws.batchID
            assert attr(ws, AMBIGUOUS_AT)
        else:
            assert "adopted by tag" in message
            job = only_job(family.facility, ws)
            assert ws.batchID == job.job_id
            assert attr(ws, AMBIGUOUS_AT)
    answers = drive(mon, workers)
    assert [s for s, _ in answers] == [WorkSpec.ST_submitted] * 2, answers
    for ws in workers:
        job = only_job(family.facility, ws)
        assert (ws.batchID, job.name) == (job.job_id, tag_of(ws))
    assert len(family.facility.jobs) == 2
    assert family.facility.cancelled == []
    assert family.facility.requests["submit"] == 2 * sends


@pytest.mark.parametrize("fault", AMBIGUOUS)
def test_ambiguous_submit_adopted_by_the_monitor(family, fault):
    """The submitter's own lookup fails too: the monitor finds the job by its tag."""
    sub, mon, _ = family.plugins()
    workers = [family.workspec(i) for i in (33, 34, 35)]
    sent = 0
    for ws in workers:
        sent += script_ambiguous_submit(family, sub, fault)
        if fault != "created_then_timeout":  # after a timeout the call asks nothing more
            family.facility.script("find", "timeout")
        ((ok, message),) = submit(sub, [ws])
        assert ok is True, message
        assert "outcome unknown" in message
        assert not ws.batchID
    assert family.facility.requests["submit"] == sent
    assert len(family.facility.jobs) <= 3  # a resend never makes a second job
    if fault == "created_then_timeout":
        assert family.facility.requests["find"] == 0
    answers = drive(mon, workers)
    assert [s for s, _ in answers] == [WorkSpec.ST_submitted] * 3, answers
    ids = set()
    for ws in workers:
        job = only_job(family.facility, ws)
        assert ws.batchID == job.job_id, ws.workAttributes
        assert job.name == tag_of(ws)
        ids.add(ws.batchID)
    assert len(ids) == 3
    assert len(family.facility.jobs) == 3
    assert family.facility.requests["submit"] == sent
    assert family.facility.cancelled == []
    for ws in workers:  # and it is tracked normally from there on
        family.facility.finish(ws.batchID)
    assert [s for s, _ in drive(mon, workers)] == [WorkSpec.ST_finished] * 3


# 4. duplicates -------------------------------------------------------------------------------
def test_duplicate_seen_by_the_monitor_lookup(family):
    sub, mon, _ = family.plugins()
    ws = family.workspec(41)
    sent = script_ambiguous_submit(family, sub, "created_then_502")
    family.facility.script("find", "timeout")
    assert submit(sub, [ws])[0][0] is True
    assert not ws.batchID
    second = family.facility.sbatch(tag_of(ws))
    ((status, diag),) = drive(mon, [ws])
    assert status == WorkSpec.ST_submitted, diag
    jobs = family.facility.jobs_named(tag_of(ws))
    assert len(jobs) == 2
    keep, extra = sorted(jobs, key=lambda j: int(j.job_id))
    assert second in (keep.job_id, extra.job_id)
    assert ws.batchID == keep.job_id
    assert family.facility.cancelled == [extra.job_id]
    assert extra.state is SlurmState.CANCELLED
    assert not keep.state.is_final
    assert family.facility.requests["submit"] == sent


def test_duplicate_seen_by_the_submitter_lookup(family):
    """A job already exists under the tag (an earlier attempt): the ambiguous submit adopts
    the oldest and cancels the new one.  Where lookups are tasks the submitter's lookup is
    read a cycle later, so the monitor's first lookup does it."""
    sub, mon, _ = family.plugins()
    ws = family.workspec(42)
    tag = tags.job_tag(harvester_id(), QUEUE, 42)
    earlier = family.facility.sbatch(tag)
    sent = script_ambiguous_submit(family, sub, "created_then_500")
    ((ok, message),) = submit(sub, [ws])
    assert family.facility.requests["submit"] == sent
    if family.capabilities.deferred_queries:
        assert ok is True and "outcome unknown" in message, message
        assert not ws.batchID
        ((status, diag),) = drive(mon, [ws])
        assert status == WorkSpec.ST_submitted, diag
    else:
        assert ok is True and "adopted by tag" in message, message
    assert tag_of(ws) == tag
    assert ws.batchID == earlier
    jobs = family.facility.jobs_named(tag_of(ws))
    assert len(jobs) == 2
    (extra,) = [j for j in jobs if j.job_id != earlier]
    assert family.facility.cancelled == [extra.job_id]
    assert extra.state is SlurmState.CANCELLED


def test_late_duplicate_after_an_ambiguous_submit_is_cancelled(family, clock):
    """A job shows up under the tag after the ambiguous submit was adopted (the service ran
    the request twice, or a stray submit): the monitor's duplicate check cancels it.  (A
    service that dedupes submits is made to fail every resend, so it ends on the lookup.)"""
    sub, mon, _ = family.plugins()
    ws = family.workspec(43)
    script_ambiguous_submit(family, sub, "created_then_502")
    assert submit(sub, [ws])[0][0] is True
    if family.capabilities.deferred_queries:  # the submitter's lookup is read by the monitor
        assert not ws.batchID
        drive(mon, [ws])
    first = ws.batchID
    assert first and only_job(family.facility, ws).job_id == first
    drive(mon, [ws])
    assert ws.batchID == first
    late = family.facility.sbatch(tag_of(ws))  # the service ran the request a second time
    clock.advance(10)  # still within lookupGraceSeconds (60)
    ((status, _),) = drive(mon, [ws])
    assert status == WorkSpec.ST_submitted
    assert ws.batchID == first
    assert family.facility.cancelled == [late]
    assert family.facility.jobs[late].state is SlurmState.CANCELLED
    assert not family.facility.jobs[first].state.is_final


# 13. adoption only by tag ---------------------------------------------------------------------
class _Records(logging.Handler):
    """Records of the plugins' own logger (Harvester's loggers do not propagate to root)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_task_naming_another_workers_job_is_not_adopted(async_family, clock):
    if async_family.capabilities.pilot_is_task:
        pytest.skip(
            "the pilot is the task: its block's job id comes from the pilot's own marker, "
            "not from a service's answer checked by job name"
        )
    fam = async_family
    fam.reconfigure(task_delay=None)
    sub, mon, swp = fam.plugins()
    a, b = fam.workspec(131), fam.workspec(132)
    assert [ok for ok, _ in submit(sub, [a, b])] == [True, True]
    other = fam.facility.sbatch(tag_of(b))  # B's job
    for ws in (a, b):  # both tasks answer B's job (a service that reused task ids)
        task = fam.facility.tasks[attr(ws, TASK)]
        task.job_id, task.done = other, True

    # the sweeper, asked to kill A now, trusts only A's tag
    ((ok, message),) = kill(fam.plugins()[2], [a])
    assert ok is False, message
    assert fam.facility.cancelled == []

    finds = fam.facility.requests["find"]
    seen = _Records()
    LOG.addHandler(seen)
    try:
        (sa, da), (sb, db) = drive(mon, [a, b])
    finally:
        LOG.removeHandler(seen)
    assert sa == WorkSpec.ST_submitted and "not this worker's" in da, da
    assert not a.batchID and not attr(a, CANDIDATE)
    assert sb == WorkSpec.ST_submitted and b.batchID == other
    assert any(
        r.levelno >= logging.ERROR and other in r.getMessage() and "not this worker's" in
        r.getMessage() for r in seen.records
    ), [r.getMessage() for r in seen.records]  # fmt: skip

    (sa, da), _ = drive(mon, [a, b])  # A looks its own tag up
    assert fam.facility.requests["find"] > finds
    assert sa == WorkSpec.ST_submitted and not a.batchID, da

    clock.advance(100)  # past lookupGraceSeconds: A never had a job
    (sa, da), (sb, _) = drive(mon, [a, b])
    assert sa == WorkSpec.ST_failed and a.errorCode == ErrorCode.SUBMIT_LOST
    assert re.match(ERROR_PATTERNS[5662], da), da
    assert sb == WorkSpec.ST_submitted and b.batchID == other
    ((ok, message),) = kill(swp, [a])
    assert ok is True, message
    drive(mon, [b])  # the orphan watch on A's tag must not touch B's job
    assert fam.facility.cancelled == []
    assert not fam.facility.jobs[other].state.is_final
    assert not a.batchID


def test_task_naming_another_job_then_own_job_found(async_family):
    if async_family.capabilities.pilot_is_task:
        pytest.skip(
            "the pilot is the task: its block's job id comes from the pilot's own marker, "
            "not from a service's answer checked by job name"
        )
    fam = async_family
    fam.reconfigure(task_delay=None)
    sub, mon, swp = fam.plugins()
    a, b = fam.workspec(133), fam.workspec(134)
    submit(sub, [a, b])
    fam.facility.complete_tasks()  # both jobs exist, each under its tag
    own = only_job(fam.facility, a).job_id
    theirs = only_job(fam.facility, b).job_id
    fam.facility.tasks[attr(a, TASK)].job_id = theirs  # A's task names B's job
    drive(mon, [a, b])
    assert not a.batchID and b.batchID == theirs
    drive(mon, [a, b])
    assert (a.batchID, b.batchID) == (own, theirs)
    ((ok, message),) = kill(swp, [a])
    assert ok is True, message
    assert fam.facility.cancelled == [own]
    assert not fam.facility.jobs[theirs].state.is_final


# 17. restart -------------------------------------------------------------------------------
def test_restart_keeps_only_the_workspecs(family, monkeypatch):
    fam = family
    fam.reconfigure(task_delay=None)  # async: nothing resolves before the restart
    sub, _, _ = fam.plugins(submitConcurrency=1)
    plain = [fam.workspec(i) for i in range(171, 175)]
    unsure = [fam.workspec(i) for i in (175, 176)]
    assert [ok for ok, _ in submit(sub, plain)] == [True] * 4
    sent = len(plain)
    for ws, fault in zip(unsure, ("created_then_502", "created_then_timeout"), strict=True):
        sent += script_ambiguous_submit(fam, sub, fault)
        if fault == "created_then_502":  # and its lookup by tag times out
            fam.facility.script("find", "timeout")
        # one call each: a timeout ends the call it happens in
        ((ok, message),) = submit(sub, [ws])
        assert ok is True and "outcome unknown" in message, message

    restart(monkeypatch)  # only the WorkSpecs survive
    workers = [restored(ws) for ws in plain + unsure]
    fam.facility.complete_tasks()
    _, mon, _ = fam.plugins()
    answers = drive(mon, workers)
    assert [s for s, _ in answers] == [WorkSpec.ST_submitted] * 6, answers
    ids = [ws.batchID for ws in workers]
    assert all(ids) and len(set(ids)) == 6
    for ws in workers:
        assert only_job(fam.facility, ws).job_id == ws.batchID
    for ws in workers:
        fam.facility.finish(ws.batchID)
    _, mon, _ = fam.plugins()
    assert [s for s, _ in drive(mon, workers)] == [WorkSpec.ST_finished] * 6
    assert len(fam.facility.jobs) == 6
    assert fam.facility.cancelled == []
    assert fam.facility.live_jobs() == []
    assert fam.facility.requests["submit"] == sent


# 18. two Harvester instances, overlapping worker ids -------------------------------------
def test_two_harvester_ids_share_a_facility(family, monkeypatch):
    fam = family

    def as_instance(hid):
        # the plugins ask harvester_id() (Harvester's config, or the stand-in's environment)
        for module in (submitter_module, throttler_module):
            monkeypatch.setattr(module, "harvester_id", lambda hid=hid: hid)
        return fam.plugins()

    sub_a, _, _ = as_instance("instA")
    mine = [fam.workspec(i) for i in (1, 2, 3)]
    for ws in mine:  # A's submits are ambiguous: A's monitor finds its jobs by tag
        script_ambiguous_submit(fam, sub_a, "created_then_502")
        fam.facility.script("find", "timeout")
        assert [ok for ok, _ in submit(sub_a, [ws])] == [True]
    sub_b, _, _ = as_instance("instB")
    theirs = [fam.workspec(i) for i in (1, 2, 3)]
    assert [ok for ok, _ in submit(sub_b, theirs)] == [True] * 3

    assert {tag_of(w) for w in mine}.isdisjoint({tag_of(w) for w in theirs})
    _, mon_b, _ = as_instance("instB")
    drive(mon_b, theirs)
    _, mon_a, _ = as_instance("instA")
    drive(mon_a, mine)
    for ws in mine + theirs:
        assert only_job(fam.facility, ws).job_id == ws.batchID
    ids_a, ids_b = {w.batchID for w in mine}, {w.batchID for w in theirs}
    assert len(ids_a) == len(ids_b) == 3 and ids_a.isdisjoint(ids_b)
    assert len(fam.facility.jobs) == 6

    _, _, swp_a = as_instance("instA")
    assert [ok for ok, _ in kill(swp_a, mine)] == [True] * 3
    assert sorted(fam.facility.cancelled) == sorted(ids_a)
    assert all(not fam.facility.jobs[j].state.is_final for j in ids_b)
    _, mon_b, _ = as_instance("instB")
    assert [s for s, _ in drive(mon_b, theirs)] == [WorkSpec.ST_submitted] * 3
    _, mon_a, _ = as_instance("instA")
    assert [s for s, _ in drive(mon_a, mine)] == [WorkSpec.ST_cancelled] * 3
    assert sorted(fam.facility.cancelled) == sorted(ids_a)
