"""Each capability profile is what it declares: idempotent submits are resent unchanged,
task-based queries never hold a plugin call, and every profile really runs the suite."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest

from harvester_edge import testing
from harvester_edge.edge.jobs import SubmitReceipt
from harvester_edge.edge.lifecycle import TASK, attr
from harvester_edge.edge.spec import JobSpec
from harvester_edge.facilities.base import Deferred
from harvester_edge.harvester import WorkSpec

from ._helpers import drive, kill, only_job, submit, tag_of
from .conftest import CAPABILITIES, FAMILIES

#: a plugin call that waits on nothing answers well within this (seconds); the call's own
#: deadline in the suite is 2 s, a probe's timeout minutes
AT_ONCE = 0.5


def recorded_submits(facility: Any, monkeypatch: Any) -> list[JobSpec]:
    """Every spec the facility is sent, in order (its answers unchanged)."""
    sent: list[JobSpec] = []
    real = facility.submit

    def recording(spec: JobSpec) -> SubmitReceipt:
        sent.append(spec)
        return real(spec)

    monkeypatch.setattr(facility, "submit", recording)
    return sent


def body(spec: JobSpec) -> bytes:
    """The spec as bytes (every field): what an idempotency key is checked against."""
    return json.dumps(dataclasses.asdict(spec), sort_keys=True).encode()


def _same_kind(caps: Any, profile: Any) -> bool:
    """Do these capabilities make the plugins take the paths of this profile?"""
    return all(
        getattr(caps, name) == getattr(profile, name)
        for name in ("async_submit", "idempotent_submit", "deferred_queries", "server_cancel")
    )


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    start = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - start


# (a) idempotent submit: a 5xx after creation is resent, same key and same bytes ---------------
def test_idempotent_submit_resent_with_the_same_spec(idempotent_family, monkeypatch):
    fam = idempotent_family
    assert fam.capabilities.idempotent_submit
    sent = recorded_submits(fam.facility, monkeypatch)
    sub, mon, _ = fam.plugins()
    ws = fam.workspec(801)
    fam.facility.script("submit", "created_then_502")
    ((ok, message),) = submit(sub, [ws])
    assert ok is True, message
    assert message == f"submitted as batch job {ws.batchID}", message
    assert [spec.tag for spec in sent] == [tag_of(ws)] * 2  # the same key twice
    assert sent[0] == sent[1] and body(sent[0]) == body(sent[1])  # the same bytes
    assert fam.facility.requests["submit"] == 2
    job = only_job(fam.facility, ws)  # the service answered the job it made first
    assert ws.batchID == job.job_id
    assert len(fam.facility.jobs) == 1
    assert fam.facility.requests["find"] == 0  # nothing to look up
    ((status, diag),) = drive(mon, [ws])
    assert status == WorkSpec.ST_submitted, diag
    assert only_job(fam.facility, ws).job_id == ws.batchID
    assert fam.facility.cancelled == []


# (b) task-based queries: a probe never holds check_workers ----------------------------------
def test_check_workers_never_blocks_on_a_probe(deferred_family, clock, monkeypatch):
    if deferred_family.capabilities.pilot_is_task:
        pytest.skip(
            "the pilot is the task: its first check reads the pilot's marker (a lookup), not a poll"
        )
    fam = deferred_family
    assert fam.capabilities.deferred_queries
    sub, mon, _ = fam.plugins(probeTimeoutSeconds=120)
    ws = fam.workspec(802)
    assert submit(sub, [ws])[0][0] is True

    def check() -> tuple[str | None, str]:
        """One check_workers call: it asks the service once and answers at once."""
        queries = fam.facility.requests["query"]
        (ok, answers), took = timed(mon.check_workers, [ws])
        assert ok is True and len(answers) == 1, answers
        assert took < AT_ONCE, f"check_workers took {took:.2f}s: {answers}"
        assert fam.facility.requests["query"] == queries + 1
        if answers[0][0] is not None:
            ws.status = answers[0][0]
        return answers[0]

    # the submit task resolves; the candidate's status probe starts and is read next call
    status, diag = check()
    assert status == WorkSpec.ST_submitted and "probe" in diag and "pending" in diag, diag
    assert not ws.batchID
    status, diag = check()
    assert status == WorkSpec.ST_submitted and "probe" not in diag, diag
    assert ws.batchID == only_job(fam.facility, ws).job_id
    fam.facility.set_state(ws.batchID, "RUNNING")

    # from now on the service never answers a status probe
    stuck: dict[tuple[str, frozenset[str]], Deferred] = {}

    def never_answered(operation: str, keys: Any) -> Deferred:
        key = (operation, frozenset(keys))
        return stuck.setdefault(key, Deferred(probe="p-stuck", started=clock()))

    monkeypatch.setattr(fam.facility, "_probe", never_answered)
    status, diag = check()  # the status is kept while the probe is young
    assert status == WorkSpec.ST_submitted and "p-stuck pending" in diag, diag
    clock.advance(100)
    status, diag = check()
    assert status == WorkSpec.ST_submitted and "p-stuck pending" in diag, diag
    clock.advance(30)  # older than probeTimeoutSeconds (120): "could not check"
    status, diag = check()
    assert status is None, diag
    assert diag.startswith("could not check") and "p-stuck unanswered" in diag, diag
    assert ws.errorCode is None and ws.batchID


# (c) every profile runs, with the capabilities it declares ----------------------------------
def test_every_profile_is_in_the_suite():
    assert {f"fake-{p}" for p in testing.PROFILES} <= set(FAMILIES)
    for name, caps in CAPABILITIES.items():  # every family declares one of the profiles
        assert any(_same_kind(caps, profile) for profile in testing.PROFILES.values()), name
    caps = testing.PROFILES
    assert caps["async"].async_submit and not caps["async"].deferred_queries
    assert not (caps["sync"].async_submit or caps["sync"].idempotent_submit)
    assert caps["idempotent"].idempotent_submit and not caps["idempotent"].async_submit
    assert caps["tasks"].async_submit and caps["tasks"].deferred_queries


def test_profile_runs_with_its_declared_capabilities(family, monkeypatch):
    caps = family.capabilities
    declared = testing.PROFILES[family.profile]
    assert _same_kind(caps, declared)
    sent = recorded_submits(family.facility, monkeypatch)
    sub, mon, swp = family.plugins()
    client = sub.edge_client()  # one client shared by the plugins: the family's
    assert client is mon.edge_client() is swp.edge_client()
    assert client.capabilities == caps

    # submit: a task handle stored, or a batch job id at once
    ws = family.workspec(803)
    ((ok, message),) = submit(sub, [ws])
    assert ok is True, message
    if caps.async_submit:
        assert not ws.batchID
        assert attr(ws, TASK) in family.facility.tasks, ws.workAttributes
        assert f"task {attr(ws, TASK)} pending" in message
    else:
        assert ws.batchID == only_job(family.facility, ws).job_id
        assert attr(ws, TASK) is None
        assert message == f"submitted as batch job {ws.batchID}"

    # the same spec again: the service dedupes it by key, or makes another job or task
    jobs, tasks = len(family.facility.jobs), len(family.facility.tasks)
    again = family.facility.submit(sent[0])
    if caps.idempotent_submit:
        assert again.job_id == ws.batchID
        assert (len(family.facility.jobs), len(family.facility.tasks)) == (jobs, tasks)
    elif caps.async_submit:
        assert again.handle and again.handle != attr(ws, TASK)
        assert len(family.facility.tasks) == tasks + 1
        del family.facility.tasks[again.handle]  # never ran: no second job
    else:
        assert again.job_id and again.job_id != ws.batchID
        assert len(family.facility.jobs) == jobs + 1
        del family.facility.jobs[again.job_id]  # gone without a trace

    # a check: answered in this call, or a probe read on the next one
    ok, ((status, diag),) = mon.check_workers([ws])
    assert ok is True and status == WorkSpec.ST_submitted, diag
    probing = "probe" in diag and "pending" in diag
    assert probing == caps.deferred_queries, diag
    ((status, diag),) = drive(mon, [ws])
    assert status == WorkSpec.ST_submitted, diag
    assert ws.batchID == only_job(family.facility, ws).job_id

    # a final state: the pilots' summary is read only where the service gives file access
    family.facility.finish(ws.batchID)
    ((status, diag),) = drive(mon, [ws])
    assert status == WorkSpec.ST_finished, diag
    assert (family.facility.requests["read"] > 0) == caps.files

    # a kill: confirmed in this call, or its cancel is a probe read on the next one
    ((ok, message),) = swp.kill_workers([ws])
    assert ok is not caps.deferred_queries, message
    if caps.deferred_queries:
        assert "cancel probe" in message and "pending" in message, message
        ((ok, message),) = kill(swp, [ws])
        assert ok is True, message
    assert "COMPLETED" in message
