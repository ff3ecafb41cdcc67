"""The one interface every edge service implements (SFAPI, S3M, Globus Compute, DOE IRI).

The generic plugins (``plugins/generic.py``) own the loop: render -> submit -> resolve ->
bulk poll -> cross-check -> cancel.  A facility client only translates those steps into its
service's requests and parses the answers into ``JobRecord`` / ``SubmitReceipt`` /
``Resolution``.  How the four services fit:

- SFAPI: submit is a POST that returns a *task*; ``resolve`` reads tasks in bulk (``GET
  /tasks``); ``query`` is squeue (``sacct=false``) or sacct (``sacct=true``) for a list of ids;
  ``find_by_tags`` is the same with ``name=``; cancel is an async DELETE per job.
- S3M (slurmrestd data model): submit returns a job id at once; query reads ``/jobs`` (one
  request, filter ids client-side) and ``/job/{id}`` history for final states.
- Globus Compute: submit runs an ``sbatch`` ShellFunction, a task; ``resolve`` reads the batch
  of task results (the sbatch output holds the job id); query/cancel run squeue/sacct/scancel
  ShellFunctions.
- DOE IRI: submit takes an ``Idempotency-Key`` (the tag) and returns a job; query is the bulk
  ``POST /compute/status/{resource}``; cancel is ``DELETE``.

Every method raises only ``harvester_edge.errors`` exceptions.  ``None``-valued answers are
never used for "could not ask": that is an exception with ``transient=True``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from ..edge.jobs import JobRecord, Resolution, SubmitReceipt


@dataclass(frozen=True)
class Health:
    """The facility's own word on the machine.  ``available`` False gates submit and monitor."""

    available: bool
    state: str
    message: str = ""


@dataclass(frozen=True)
class SubmitRequest:
    """Everything a facility needs to start one batch job."""

    script: str
    tag: str
    work_dir: str


class FacilityClient(abc.ABC):
    """A client of one edge service for one credential; shared by all plugin instances.

    Implementations must be thread-safe and do no I/O in their constructor.
    """

    #: short name used in logs and diagnoses ("sfapi", "s3m", ...)
    service: str = "facility"
    #: whether ``read_text`` can fetch files from the facility (pilot summaries)
    supports_files: bool = False
    #: maximum number of ids per bulk query request
    max_query_ids: int = 500

    @abc.abstractmethod
    def health(self) -> Health:
        """Ask the facility whether the machine takes and runs jobs."""

    @abc.abstractmethod
    def submit(self, request: SubmitRequest) -> SubmitReceipt:
        """Start one job.  Never retried blindly: an ambiguous failure raises
        ``EdgeNetworkError(maybe_sent=True)`` and the caller looks the tag up."""

    def resolve(self, handles: Sequence[str]) -> dict[str, Resolution]:
        """Resolve asynchronous submits in bulk; handles absent from the answer are unknown."""
        return {}

    @abc.abstractmethod
    def query(self, job_ids: Sequence[str], *, final: bool) -> dict[str, JobRecord]:
        """One request for many ids: live jobs (``final=False``) or accounting records."""

    @abc.abstractmethod
    def find_by_tags(self, tags: Sequence[str]) -> dict[str, list[JobRecord]]:
        """Jobs carrying these tags as names, live and accounted, grouped by tag."""

    @abc.abstractmethod
    def cancel(self, job_ids: Sequence[str]) -> dict[str, str | None]:
        """Ask to cancel; per id, None when the request was accepted, else the error text."""

    def live_tags(self, prefix: str) -> list[str]:
        """Names starting with ``prefix`` of this credential's live jobs (one request).

        Used once per queue after a restart to seed the level-3 allocation count.
        """
        raise NotImplementedError

    def read_text(self, path: str) -> str | None:
        """A small text file from the facility, or None when it does not exist."""
        return None

    def close(self) -> None:  # noqa: B027 (optional hook: most clients hold nothing)
        """Release connections (used by tests and the CLI)."""
