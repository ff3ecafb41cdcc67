"""The one interface every edge service implements (SFAPI, S3M, Globus Compute, DOE IRI).

The generic plugins (``plugins/submitter.py``, ``monitor.py``, ``sweeper.py``) own the loop:
render -> submit -> resolve -> bulk poll -> cross-check -> cancel.  A facility client only
translates those steps into its service's requests and parses the answers into ``JobRecord``
/ ``SubmitReceipt`` / ``Resolution``.  How the four services fit:

- SFAPI: submit is a POST that returns a *task*; ``resolve`` reads tasks (one by one for a
  few, else the list); ``query`` is squeue (``sacct=false``) or sacct (``sacct=true``) for a
  list of ids; ``find_by_tags`` is the same with ``name=``; cancel is one ``scancel`` of a chunk
  of ids through the command utility (DELETE per job where that is refused); ``read_texts`` is
  one ``cat`` of a chunk of files.
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
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from ..edge.jobs import JobRecord, Resolution, SubmitReceipt


@dataclass(frozen=True)
class Outage:
    """A planned outage (maintenance window) the facility announced; epoch seconds, UTC.

    ``end`` None means open-ended.  Used by the throttler (an outage starting within the next
    walltime stops new workers) and by the monitor (during one, workers keep their status)."""

    start: float
    end: float | None
    text: str

    def covers(self, t: float) -> bool:
        return self.start <= t and (self.end is None or t < self.end)

    def until_text(self) -> str:
        if self.end is None:
            return "until further notice"
        return "until " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.end))


@dataclass(frozen=True)
class Health:
    """The facility's own word on the machine.  ``available`` False gates submit and monitor.

    ``planned`` is the outage under way when the machine is down for announced maintenance
    (the monitor then answers each worker's last status instead of "could not check");
    ``outages`` are the announced ones still to come or under way (the throttler's horizon)."""

    available: bool
    state: str
    message: str = ""
    planned: Outage | None = None
    outages: tuple[Outage, ...] = ()


@dataclass(frozen=True)
class CredentialFacts:
    """What the plugins may know about a client's credential: never the secret itself.

    ``problem`` says why the credential cannot be used right now (unreadable key file, refused
    by the facility moments ago); ``expires_at`` (epoch seconds) is when it stops working,
    when the facility or the credential tells.  Read without network I/O."""

    kind: str
    identity: str = ""
    expires_at: float | None = None
    problem: str | None = None


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
    #: the sharing key (set by ``registry.shared_client``); caches keyed on it
    cache_key: Hashable = None

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

    def read_texts(self, paths: Sequence[str]) -> dict[str, str | None]:
        """Many small files in as few requests as the service allows: path -> text, or None
        when the file does not exist.  Paths absent from the answer could not be read now.
        The default reads one by one; clients with a bulk channel override it."""
        return {path: self.read_text(path) for path in paths}

    def credential(self) -> CredentialFacts:
        """The credential's facts for the throttler and the credential manager (no I/O)."""
        return CredentialFacts(kind="none")

    def close(self) -> None:  # noqa: B027 (optional hook: most clients hold nothing)
        """Release connections (used by tests and the CLI)."""
