"""A silent facility holds a plugin call for about one request timeout, never chunks x it."""

from __future__ import annotations

import time

import pytest

from harvester_edge.edge.lifecycle import TAG, attr
from harvester_edge.harvester import WorkSpec

from ._helpers import drive, kill, script_ambiguous_submit, submit

HANG = 0.3


def timed(call, *args):
    start = time.monotonic()
    result = call(*args)
    return result, time.monotonic() - start


@pytest.mark.parametrize("concurrency", [1, 4])
def test_check_workers_bounded(family, concurrency):
    family.reconfigure(hang_seconds=HANG)
    sub, mon, _ = family.plugins(chunkSize=2, queryConcurrency=concurrency)
    workers = [family.workspec(i) for i in range(141, 147)]  # 3 chunks
    submit(sub, workers)
    drive(mon, workers)
    assert all(ws.batchID for ws in workers)
    family.facility.always("query", "hang")
    answers, took = timed(drive, mon, workers)
    assert [s for s, _ in answers] == [None] * 6, answers
    assert all("could not" in d for _, d in answers), answers
    assert HANG * 0.9 <= took < 2 * HANG, took
    assert [ws.status for ws in workers] == [WorkSpec.ST_submitted] * 6


def asked_at(facility, operation, monkeypatch):
    """When each ``operation`` request reached the facility (monotonic)."""
    times = []
    real = getattr(facility, operation)

    def recording(*args, **kwargs):
        times.append(time.monotonic())
        return real(*args, **kwargs)

    monkeypatch.setattr(facility, operation, recording)
    return times


def test_kill_workers_bounded(family, monkeypatch):
    # several cancel requests needed: chunks of 2 ids, or (one job per request, a few at a
    # time) more jobs than a client sends at once
    family.reconfigure(hang_seconds=HANG, max_query_ids=2)
    sub, mon, swp = family.plugins()
    workers = [family.workspec(i) for i in range(1470, 1490)]
    submit(sub, workers)
    drive(mon, workers)
    family.facility.always("cancel", "hang")
    asked = asked_at(family.facility, "cancel", monkeypatch)
    answers, took = timed(kill, swp, workers)
    assert [ok for ok, _ in answers] == [False] * 20, answers
    assert took < 2 * HANG, took
    # once a cancel went unanswered nothing more is asked: every one was sent before that
    assert asked and max(asked) - min(asked) < HANG / 2, [t - asked[0] for t in asked]
    assert len(family.facility.live_jobs()) == 20


@pytest.mark.parametrize("concurrency", [1, 16])
def test_submit_workers_bounded(family, concurrency):
    family.reconfigure(hang_seconds=HANG)
    sub, _, _ = family.plugins(submitConcurrency=concurrency)
    workers = [family.workspec(i) for i in range(153, 157)]
    family.facility.always("submit", "hang")
    answers, took = timed(submit, sub, workers)
    assert took < 2 * HANG + 0.3, took
    first_ok, first_message = answers[0]
    assert first_ok is True and "outcome unknown" in first_message, answers
    if concurrency == 1:  # the first timed out: the others are not sent in this call
        assert [ok for ok, _ in answers[1:]] == [None] * 3, answers
        assert family.facility.requests["submit"] == 1
    else:  # all were in flight together
        assert family.facility.requests["submit"] == 4
    assert family.facility.jobs == {}


# the same with every kind of request silent, not only the bulk polls ------------------------
def silent(facility, *operations):
    for operation in operations:
        facility.always(operation, "hang")


def test_check_workers_bounded_when_every_request_hangs(family):
    """Tracked workers, one adopted after an ambiguous submit (its tag is re-checked for
    duplicates) and, for asynchronous families, one with its submit task still pending: once
    one request timed out, nothing more is asked in this call."""
    family.reconfigure(hang_seconds=HANG, task_delay=None)
    sub, mon, _ = family.plugins(chunkSize=2)
    workers = [family.workspec(i) for i in range(160, 164)]
    submit(sub, workers)
    family.facility.complete_tasks()
    unsure = family.workspec(164)
    script_ambiguous_submit(family, sub, "created_then_502")
    family.facility.script("find", "timeout")
    assert "outcome unknown" in submit(sub, [unsure])[0][1]
    family.facility.complete_tasks()
    workers.append(unsure)
    drive(mon, workers)
    assert all(ws.batchID for ws in workers)
    if family.async_submit:
        pending = family.workspec(165)
        submit(sub, [pending])
        workers.append(pending)
    silent(family.facility, "resolve", "find", "query")
    answers, took = timed(drive, mon, workers)
    assert [s for s, _ in answers] == [None] * len(workers), answers
    assert took < 2 * HANG, took


def test_kill_workers_bounded_when_every_request_hangs(family):
    family.reconfigure(hang_seconds=HANG, task_delay=None)
    sub, mon, swp = family.plugins()
    workers = [family.workspec(i) for i in (166, 167)]
    submit(sub, workers)
    family.facility.complete_tasks()
    drive(mon, workers)
    assert all(ws.batchID for ws in workers)
    unsure = family.workspec(168)  # its job may still appear: looked up by tag
    family.facility.script("submit", "timeout")
    assert submit(sub, [unsure])[0][0] is True
    workers.append(unsure)
    if family.async_submit:
        pending = family.workspec(169)
        submit(sub, [pending])
        workers.append(pending)
    silent(family.facility, "resolve", "find", "query", "cancel")
    answers, took = timed(kill, swp, workers)
    assert [ok for ok, _ in answers] == [False] * len(workers), answers
    assert took < 2 * HANG, took


def test_submit_workers_bounded_when_the_lookup_hangs_too(family):
    family.reconfigure(hang_seconds=HANG)
    sub, _, _ = family.plugins(submitConcurrency=1)
    workers = [family.workspec(i) for i in range(170, 173)]
    silent(family.facility, "submit", "find")
    answers, took = timed(submit, sub, workers)
    assert answers[0][0] is True, answers  # maybe sent: the monitor looks it up later
    assert [ok for ok, _ in answers[1:]] == [None, None], answers
    assert family.facility.requests["submit"] == 1
    assert took < 2 * HANG, took


def test_one_reset_connection_does_not_stop_the_other_submits(family):
    """A dropped connection is not a silent facility: the rest of the call goes on.  The
    reset submit may have created its job, so it is never sent again (adopted by tag)."""
    sub, mon, _ = family.plugins(submitConcurrency=1)
    workers = [family.workspec(i) for i in (241, 242, 243)]
    family.facility.script("submit", "created_then_reset")
    if family.capabilities.idempotent_submit:  # resent with the same key: the original job
        family.facility.script("submit", "created_then_reset", "created_then_reset",
                               "created_then_reset")  # fmt: skip
    answers = submit(sub, workers)
    assert [ok for ok, _ in answers] == [True, True, True], answers
    assert all("not submitted" not in diag for _, diag in answers)
    drive(mon, workers)
    drive(mon, workers)
    for ws in workers:
        assert len(family.facility.jobs_named(attr(ws, TAG))) == 1
