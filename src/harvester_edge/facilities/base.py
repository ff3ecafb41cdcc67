"""The one interface every edge service implements (SFAPI, S3M, Globus Compute, DOE IRI).

The generic plugins (``plugins/submitter.py``, ``monitor.py``, ``sweeper.py``) own the loop:
build the job spec -> submit -> resolve -> bulk poll -> cancel.  A client translates those
steps into its service's requests and parses the answers into ``JobRecord`` /
``SubmitReceipt`` / ``Resolution`` / ``CancelOutcome``; it declares ``Capabilities``, and the
plugins read only those.  How the four services fit:

- SFAPI: a Slurm script, answered by a task (``async_submit``); poll is squeue + sacct rows;
  cancel one ``scancel`` command per chunk; files by a ``cat`` command.
- S3M: slurmrestd JSON, a job id at once; poll ``/jobs`` + ``/job/{id}`` history; DELETE per
  job; no files.
- Globus Compute: sbatch in a shell task (``async_submit``); poll, lookup and cancel are shell
  tasks read on the next cycle (``deferred_queries``); files through a task.
- DOE IRI: a PSI/J spec with an ``Idempotency-Key`` (``idempotent_submit``); poll the bulk
  ``POST /compute/status``; DELETE per job; no files.

Every method raises only ``harvester_edge.errors`` exceptions.  ``None``-valued answers are
never used for "could not ask": that is an exception with ``transient=True``.
"""

from __future__ import annotations

import abc
import datetime
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from ..edge.jobs import JobRecord, Resolution, SubmitReceipt
from ..edge.spec import JobSpec

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` in consecutive pieces of at most ``size``: one bulk request each."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def iso_epoch(value: object) -> float | None:
    """An ISO 8601 time from a service (``2024-11-08T14:45:38Z``, an offset, or naive = UTC)
    as epoch seconds; None for anything else (outage windows, token expiries)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


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
class Capabilities:
    """What a service can do; the generic plugins branch on these, never on its name."""

    #: submit answers a handle (a task) resolved later, not a job id (SFAPI, Globus Compute)
    async_submit: bool = False
    #: the service dedupes submits by an idempotency key (the tag) over a byte-identical
    #: body (IRI v2): a submit whose answer was lost may simply be sent again
    idempotent_submit: bool = False
    #: poll/find/cancel are themselves tasks, answered on a later cycle (Globus Compute)
    deferred_queries: bool = False
    #: the service cancels a job itself (else cancel runs scancel through a task)
    server_cancel: bool = True
    #: small files can be read back from the facility (pilot summaries)
    files: bool = False
    #: ids or tags per bulk request
    max_ids_per_query: int = 500
    #: the service announces planned outages (maintenance windows) with their times; Globus
    #: Compute only says whether the endpoint is online
    outages: bool = True
    #: the credential's facts carry when it stops working (an S3M project token's planned
    #: expiration); a Globus confidential client renews its tokens and never expires
    credential_expiry: bool = True
    #: the pilot runs as the service's task (Globus Compute task mode): its job is the
    #: endpoint's block, named by the endpoint, not by the worker's tag; the pilot itself
    #: records the block's job id and its own return code, which the client reads
    pilot_is_task: bool = False


@dataclass(frozen=True)
class CancelOutcome:
    """One job's answer to a cancel request."""

    kind: str
    text: str = ""

    ACCEPTED: ClassVar[str] = "accepted"
    ALREADY_FINAL: ClassVar[str] = "already_final"
    REFUSED: ClassVar[str] = "refused"

    @classmethod
    def accepted(cls) -> CancelOutcome:
        return cls(cls.ACCEPTED)

    @classmethod
    def already_final(cls, text: str = "") -> CancelOutcome:
        return cls(cls.ALREADY_FINAL, text)

    @classmethod
    def refused(cls, text: str) -> CancelOutcome:
        return cls(cls.REFUSED, text)


@dataclass(frozen=True)
class Deferred:
    """A probe started now (a status, lookup or cancel task) whose answer comes on a later
    cycle.  Plugins never block on it; the client keeps it and answers the same question
    once it has finished.  ``started`` is epoch seconds: a probe older than the plugin's
    ``probeTimeoutSeconds`` makes the question "could not check"."""

    probe: str
    started: float


class FacilityClient(abc.ABC):
    """A client of one edge service for one credential; shared by all plugin instances.

    Implementations must be thread-safe and do no I/O in their constructor.  Every method
    raises only ``harvester_edge.errors`` exceptions.
    """

    #: short name used in logs and diagnoses ("sfapi", "s3m", ...)
    service: ClassVar[str] = "facility"
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: the sharing key (set by ``registry.shared_client``); caches keyed on it
    cache_key: Hashable = None

    @abc.abstractmethod
    def health(self) -> Health:
        """Ask the facility whether the machine takes and runs jobs."""

    def credential(self) -> CredentialFacts:
        """The credential's facts for the throttler and the credential manager (no I/O)."""
        return CredentialFacts(kind="none")

    @abc.abstractmethod
    def submit(self, spec: JobSpec) -> SubmitReceipt:
        """Start one job, encoded from ``spec`` in the service's wire format.  Never retried
        blindly: an ambiguous failure raises ``EdgeNetworkError(maybe_sent=True)`` or an
        ``EdgeAPIError`` with a 5xx status, and the caller looks the tag up (or, with
        ``idempotent_submit``, sends the same body with the same key again)."""

    def submit_body(self, spec: JobSpec) -> str | dict[str, Any]:
        """What ``submit`` sends for ``spec`` (no I/O): the Slurm script here; a service with
        its own wire format returns that body (``harvester-edge check --render`` shows it).
        Raises EdgeConfigError when the spec cannot be put in the service's format."""
        return spec.script

    def resolve(self, handles: Sequence[str]) -> dict[str, Resolution]:
        """Resolve asynchronous submits in bulk; handles absent from the answer are unknown."""
        return {}

    @abc.abstractmethod
    def poll(self, job_ids: Sequence[str]) -> dict[str, JobRecord] | Deferred:
        """Many jobs at once, final states confirmed where the service has accounting or
        history (``JobRecord.confirmed_final``).  Ids absent from the answer were seen
        nowhere."""

    @abc.abstractmethod
    def find(self, tags: Sequence[str]) -> dict[str, list[JobRecord]] | Deferred:
        """Jobs carrying these tags as names, live and ended, grouped by tag."""

    @abc.abstractmethod
    def cancel(self, job_ids: Sequence[str]) -> dict[str, CancelOutcome] | Deferred:
        """Ask to cancel; one outcome per id."""

    def live_tags(self, prefix: str) -> list[str]:
        """Names starting with ``prefix`` of this credential's live jobs (one request).

        Used once per queue after a restart to seed the level-3 allocation count.
        """
        raise NotImplementedError

    def missing_dirs(self, paths: Sequence[str]) -> list[str]:
        """Those of ``paths`` that are not directories on the facility (``check --online``:
        the batch log and the pilots' work dirs go under them, and Slurm fails a job whose
        output directory is missing).  NotImplementedError: the service has no file access."""
        raise NotImplementedError

    def read_texts(self, paths: Sequence[str]) -> dict[str, str | None]:
        """Many small files in as few requests as the service allows: path -> text, or None
        when the file does not exist.  Paths absent from the answer could not be read now.
        Only called when ``capabilities.files``."""
        return {}

    def read_tails(self, paths: Sequence[str], max_bytes: int) -> dict[str, str | None]:
        """The last ``max_bytes`` bytes of many (log) files: path -> text, None when the file
        does not exist; absent: could not read now.  Only called when ``capabilities.files``.
        Here: ``read_texts`` cut to size; a service that can cut on its side does so."""
        from .tails import tail_of

        texts = self.read_texts(paths)
        return {p: None if t is None else tail_of(t, max_bytes) for p, t in texts.items()}

    def read_texts_and_tails(
        self, paths: Sequence[str], tail_paths: Sequence[str], max_bytes: int
    ) -> tuple[dict[str, str | None], dict[str, str | None]]:
        """The summaries and batch-log ends of the same finished workers, asked together:
        a service whose reads are deferred probes answers both with ONE probe (the
        monitor holds the final status until it is read).  Here: the two reads."""
        texts = self.read_texts(paths) if paths else {}
        return texts, (self.read_tails(tail_paths, max_bytes) if tail_paths else {})

    def close(self) -> None:  # noqa: B027 (optional hook: most clients hold nothing)
        """Release connections (used by tests and the CLI)."""
