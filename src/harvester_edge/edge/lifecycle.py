"""A worker's edge lifecycle: one explicit state machine over its work attributes.

Harvester persists only the WorkSpec (``batchID`` and the work attributes), so everything the
plugins know between cycles, and after a restart, lives in the attributes below; the phase is
derived from them, never stored.  Transitions are the functions at the bottom; the plugins
call them instead of setting attributes by hand.

::

    NEW --submit--> AWAITING_TASK --task names a job--> CANDIDATE --poll: name is the tag--> TRACKED
     |                 | task unknown / error              | name is another's: LOOKING_UP
     |                 v                                   v
     +--ambiguous--> LOOKING_UP --found under the tag--> CANDIDATE
     +--job id-----> TRACKED <--> MISSING (absent from queue and accounting; grace)
                                   TRACKED/MISSING --final & confirmed--> final status

A submit that may have been sent twice also keeps ``edgeAmbiguousAt``: duplicates under the
tag are looked for until the lookup grace passes, even once the worker is TRACKED.
"""

from __future__ import annotations

import enum
import time
from typing import Any

from ..harvester import WorkSpec

# Work-attribute keys (docs/operations.md lists them).
TAG = "edgeTag"
TASK = "edgeTask"
CANDIDATE = "edgeCandidate"
AMBIGUOUS_AT = "edgeAmbiguousAt"
WORK_DIR = "edgeWorkDir"
SUBMITTED_AT = "edgeSubmittedAt"
LOOKUP_SINCE = "edgeLookupSince"
MISSING_SINCE = "edgeMissingSince"
PILOTS = "edgePilots"
#: the facility-side path of the batch job's output (Slurm's %j/%x patterns unexpanded)
BATCH_LOG = "edgeBatchLog"
#: where its tail was copied (or "missing"): read once
BATCH_LOG_COPY = "edgeBatchLogCopy"
#: a task-based service: when the monitor first asked for a final worker's pilot summary
SUMMARY_ASKED_AT = "edgeSummaryAskedAt"


class Phase(enum.Enum):
    NEW = "new"
    AWAITING_TASK = "awaiting task"
    LOOKING_UP = "looking up by tag"
    CANDIDATE = "candidate job"
    TRACKED = "tracked"
    MISSING = "missing"


def now() -> float:
    return time.time()


def attr(ws: WorkSpec, key: str) -> Any:
    found, value = ws.get_work_attribute(key)
    return value if found else None


def phase_of(ws: WorkSpec) -> Phase:
    if ws.batchID:
        return Phase.MISSING if attr(ws, MISSING_SINCE) else Phase.TRACKED
    if attr(ws, CANDIDATE):
        return Phase.CANDIDATE
    if attr(ws, TASK):
        return Phase.AWAITING_TASK
    if attr(ws, TAG):
        return Phase.LOOKING_UP
    return Phase.NEW


def job_id_of(ws: WorkSpec) -> str | None:
    """The job id to poll: the adopted one, else a task's unverified candidate."""
    return str(ws.batchID) if ws.batchID else attr(ws, CANDIDATE)


# transitions ------------------------------------------------------------------------------
def prepared(ws: WorkSpec, tag: str, work_dir: str, batch_log: str = "") -> None:
    attributes = {TAG: tag, WORK_DIR: work_dir}
    if batch_log:
        attributes[BATCH_LOG] = batch_log
    ws.set_work_attributes(attributes)


def sending(ws: WorkSpec) -> None:
    ws.set_work_attributes({SUBMITTED_AT: now()})


def submitted(ws: WorkSpec, job_id: str | None, handle: str | None) -> None:
    """The service answered: a job id (TRACKED) or a task to resolve (AWAITING_TASK)."""
    if job_id:
        ws.batchID = job_id
        ws.set_work_attributes({TASK: None, LOOKUP_SINCE: None})
    else:
        ws.set_work_attributes({TASK: handle, LOOKUP_SINCE: None})


def ambiguous(ws: WorkSpec) -> None:
    """The submit may have created the job (maybe twice): LOOKING_UP, duplicates watched."""
    ws.set_work_attributes({AMBIGUOUS_AT: now(), TASK: None})


def duplicates_possible(ws: WorkSpec, grace: float) -> bool:
    at = attr(ws, AMBIGUOUS_AT)
    return bool(ws.batchID) and bool(at) and now() - float(at) < grace


def candidate(ws: WorkSpec, job_id: str) -> None:
    """A task or a lookup named a job: CANDIDATE until a poll shows its name is the tag."""
    ws.set_work_attributes({CANDIDATE: job_id, TASK: None})


def verified(ws: WorkSpec, job_id: str) -> None:
    ws.batchID = job_id
    ws.set_work_attributes({CANDIDATE: None, LOOKUP_SINCE: None})


def look_up(ws: WorkSpec) -> None:
    """Back to LOOKING_UP (a task named a job that is not this worker's, or none showed)."""
    ws.set_work_attributes({TASK: None, CANDIDATE: None, MISSING_SINCE: None, LOOKUP_SINCE: now()})


def lookup_started(ws: WorkSpec) -> float:
    """When the lookup by tag started (the grace counts from here), set on first use."""
    since = attr(ws, LOOKUP_SINCE)
    if not since:
        since = now()
        ws.set_work_attributes({LOOKUP_SINCE: since})
    return float(since)


def missing_since(ws: WorkSpec) -> float:
    since = attr(ws, MISSING_SINCE)
    if not since:
        since = now()
        ws.set_work_attributes({MISSING_SINCE: since})
    return float(since)


def seen(ws: WorkSpec) -> None:
    if attr(ws, MISSING_SINCE):
        ws.set_work_attributes({MISSING_SINCE: None})


def disowned(ws: WorkSpec) -> None:
    """The recorded job id names another job: never adopted, never killed."""
    ws.batchID = None


def pause_graces(ws: WorkSpec) -> None:
    """During a planned outage nothing can appear or be accounted: restart the lookup and
    missing-job graces, so the first check after the window does not fail workers at once."""
    updates = {key: now() for key in (LOOKUP_SINCE, MISSING_SINCE) if attr(ws, key)}
    if updates:
        ws.set_work_attributes(updates)
