"""Harvester's side of each plugin call, and small readers of a worker's edge state."""

from __future__ import annotations

import json
from typing import Any

from harvester_edge.edge.health import GATE
from harvester_edge.edge.lifecycle import TAG, WORK_DIR, attr
from harvester_edge.harvester import WorkSpec

QUEUE = "CONF_Q"


# Harvester's side of each call ---------------------------------------------------------------
def submit(sub: Any, workers: list[WorkSpec]) -> list[tuple[bool | None, str]]:
    """``submit_workers`` as Harvester's submitter agent applies it."""
    answers = sub.submit_workers(workers)
    assert len(answers) == len(workers), answers
    for ws, (ok, _) in zip(workers, answers, strict=True):
        ws.status = WorkSpec.ST_submitted if ok else WorkSpec.ST_missed
    return answers


#: monitor cycles a task-based service needs at most to answer one question (lookup, then
#: poll of the candidate): each probe is read on the next call
PROBE_ROUNDS = 4


def _probing(answers: list[tuple[Any, str]]) -> bool:
    return any("probe" in diag and "pending" in diag for _, diag in answers)


def drive(mon: Any, workers: list[WorkSpec]) -> list[tuple[str | None, str]]:
    """``check_workers`` as Harvester's monitor agent applies it: a non-None status is set.

    A service whose queries are tasks answers a cycle later: those cycles are run too, so
    one ``drive`` is one *answered* check for every profile."""
    for _ in range(PROBE_ROUNDS):
        ok, answers = mon.check_workers(workers)
        assert ok is True, answers
        assert len(answers) == len(workers), answers
        for ws, (status, _) in zip(workers, answers, strict=True):
            assert status is None or status in WorkSpec.ST_LIST, status
            if status is not None:
                ws.status = status
        if not _probing(answers):
            break
    return answers


def kill(swp: Any, workers: list[WorkSpec]) -> list[tuple[bool, str]]:
    """``kill_workers``; Harvester calls it again next cycle while it answers False, which a
    task-based service needs (its cancel is read a cycle later)."""
    for _ in range(PROBE_ROUNDS):
        answers = swp.kill_workers(workers)
        assert len(answers) == len(workers), answers
        if not _probing(answers):
            break
    return answers


def script_ambiguous_submit(family: Any, sub: Any, fault: str) -> int:
    """Script the next submit to end ambiguous with ``fault`` (job created, answer lost) on
    every profile; returns how many submit requests that takes.

    A service that dedupes submits by key (``idempotent_submit``) is sent a 5xx-answered
    submit again, same key and same bytes, up to ``retryAttempts`` times: each resend is
    answered ``fault`` too (the service keeps failing), so the submitter ends on the lookup
    by tag as it does at once on the other profiles.  A network fault trips the call's
    budget, so it is never resent."""
    resent = family.capabilities.idempotent_submit and fault.startswith("created_then_5")
    attempts = int(sub.edge_options.retryAttempts) if resent else 1
    family.facility.script("submit", *([fault] * attempts))
    return attempts


def tag_of(ws: WorkSpec) -> str:
    tag = attr(ws, TAG)
    assert tag, f"worker {ws.workerID} has no tag"
    return str(tag)


def work_dir_of(ws: WorkSpec) -> str:
    return str(attr(ws, WORK_DIR))


def only_job(facility: Any, ws: WorkSpec) -> Any:
    """The one job under the worker's tag (fails if there are none or several)."""
    jobs = facility.jobs_named(tag_of(ws))
    assert len(jobs) == 1, [(j.job_id, j.state) for j in jobs]
    return jobs[0]


def restored(ws: WorkSpec) -> WorkSpec:
    """The worker as Harvester reloads it from its DB after a restart (JSON columns)."""
    new = WorkSpec()
    for column in (
        "workerID", "batchID", "mapType", "queueName", "status", "computingSite", "nCore",
        "minRamCount", "maxWalltime", "accessPoint", "nativeStatus", "errorCode", "errorDiag",
    ):  # fmt: skip
        setattr(new, column, getattr(ws, column))
    new.workAttributes = json.loads(json.dumps(ws.workAttributes))
    new.workParams = json.loads(json.dumps(ws.workParams)) if ws.workParams else None
    return new


def set_health(facility: Any, answer: Any) -> None:
    """The facility's status changes; the shared health cache is dropped so that plugins see
    it now rather than after ``healthCacheSeconds``."""
    facility.health_answer = answer
    GATE.forget()


def set_credential(facility: Any, answer: Any) -> None:
    """The facility's word on the credential changes (refused, new expiry).  A client that
    learns it from the service (S3M's token introspection, read with the health check) sees
    it at its next health read: the shared health cache is dropped so that this is now."""
    facility.credential_answer = answer
    GATE.forget()


def restart(monkeypatch: Any) -> None:
    """A Harvester restart: every in-process cache is gone (shared clients, health cache,
    orphan watch, submit limits, allocation book, throttler bindings); the DB rows stay."""
    from harvester_edge.edge import allocations, limits, watch
    from harvester_edge.facilities import registry
    from harvester_edge.plugins import monitor, submitter, throttler

    registry.forget_clients()
    GATE.forget()
    watch.WATCH.forget()
    limits.LIMITS.forget()
    book = allocations.AllocationBook()
    for module in (allocations, submitter, monitor, throttler):
        monkeypatch.setattr(module, "BOOK", book)
    monkeypatch.setattr(throttler, "_bindings", {})
