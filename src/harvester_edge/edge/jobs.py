"""The facility-neutral view of one batch job, as every facility client returns it.

Four services, four vocabularies (Slurm states through SFAPI, S3M and Globus Compute; PSI/J
states through the DOE IRI API) meet here: a ``JobState`` that every client can say, plus the
Slurm detail where the facility passes it (``cause``: NODE_FAIL, OUT_OF_MEMORY, TIMEOUT...;
``native``: the facility's own words, e.g. ``CANCELLED by 1234``).  ``edge/states.py`` turns a
record into Harvester's status and error code in one function.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class JobState(enum.Enum):
    """PSI/J's job states, which every edge service can be mapped onto."""

    QUEUED = "queued"
    HELD = "held"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    #: a state the client could not read (a new Slurm state, a truncated text): neither live
    #: nor final; the worker keeps its status for that record only
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELED)


@dataclass(frozen=True)
class JobRecord:
    """One job as the facility reports it.

    ``confirmed_final`` is True when a final state comes from the scheduler's accounting or
    the service's history (with exit code), not only from a live listing: the monitor waits
    for it (up to ``missingGraceSeconds``) before it reports a worker final.
    """

    job_id: str
    state: JobState
    #: the job's name: the worker's tag when the facility reports names
    name: str = ""
    #: Slurm detail of a final state (NODE_FAIL, OUT_OF_MEMORY, TIMEOUT, PREEMPTED, ...)
    cause: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    #: the facility's own words for the state ("CANCELLED by 0", "failed: exit 3")
    native: str = ""
    reason: str = ""
    nodes: str = ""
    confirmed_final: bool = False

    @property
    def native_status(self) -> str:
        return self.native or self.state.value.upper()


@dataclass(frozen=True)
class SubmitReceipt:
    """What a submit request gave back: a job id at once, or a handle to resolve later."""

    job_id: str | None = None
    handle: str | None = None


@dataclass(frozen=True)
class Resolution:
    """The outcome of an asynchronous submit (an SFAPI task, a Globus Compute task)."""

    state: str  # "pending" | "done" | "error"
    job_id: str | None = None
    error: str = ""

    PENDING = "pending"
    DONE = "done"
    ERROR = "error"


def oldest_first(records: list[JobRecord]) -> list[JobRecord]:
    """Jobs found under one tag, the one to adopt first (lowest Slurm id); the rest are
    duplicates.  Non-numeric ids (federated ``123+0``, array ``123_4``, UUIDs) sort by text."""
    return sorted(
        records, key=lambda r: (0, int(r.job_id), "") if r.job_id.isdigit() else (1, 0, r.job_id)
    )
