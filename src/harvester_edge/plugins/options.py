"""Options every edge plugin family understands (queue-config keys, camelCase like Harvester).

A family's options dataclass extends ``EdgeOptions`` with its endpoint and credential keys.
The ``#:`` comment above a field is its meaning: docs/queue-config.md is generated from
these classes (``python -m harvester_edge.docs_reference``) and tests/docs fails when a field
has none or the page is stale.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import check


@dataclass(frozen=True, kw_only=True)
class EdgeOptions:
    queueName: str = ""
    #: workers per bulk status request (SFAPI takes 500 ids per query; chunks of one call run
    #: ``queryConcurrency`` at a time)
    chunkSize: int = 500
    #: parallel submit requests per submit_workers call
    submitConcurrency: int = 16
    #: seconds to open a connection to the service (every request)
    connectTimeout: float = 5.0
    #: seconds to wait for an answer (every request); a submit that timed out after it was
    #: sent is never sent again blindly: its job is looked up by tag
    readTimeout: float = 30.0
    #: attempts per request for failures that may be retried: an idempotent request on a
    #: network error, 409, 429, 500, 502-504; a submit only on 429 or a connection never opened
    retryAttempts: int = 4
    #: first wait between attempts, doubled each time (at most 15 s); ``Retry-After`` wins
    retryBackoff: float = 0.5
    #: upper bound on the time one logical remote call may take, retries included
    callDeadline: float = 60.0
    #: the facility's status is asked at most once per this many seconds per client
    #: (shared by submitter, monitor and throttler)
    healthCacheSeconds: float = 60.0
    #: a job absent from both squeue and sacct this long is failed as lost
    missingGraceSeconds: float = 600.0
    #: a submit task pending longer is flagged in the diagnosis (the worker stays submitted
    #: while the service says the task is pending)
    taskTimeoutSeconds: float = 600.0
    #: counted from the first lookup by tag: a worker whose job never appears under its tag
    #: is then failed (5662) and its tag watched
    lookupGraceSeconds: float = 900.0
    #: how long kill_workers waits for Slurm to confirm cancellations
    killConfirmSeconds: float = 30.0
    #: level 3: live allocations per queue (0 = no cap)
    maxConcurrentAllocations: int = 0
    #: read the pilots' worker summary from the facility for the diagnosis
    readPilotSummary: bool = True
    #: bulk status requests of one check_workers call run this many at a time
    queryConcurrency: int = 4
    #: tags of workers ended before their job showed up are watched this long (jobs
    #: appearing under them are cancelled)
    orphanWatchSeconds: float = 21600.0
    #: throttler: after a facility submit limit (QOS) refusal, no new workers for this long
    submitLimitHoldSeconds: float = 600.0
    #: throttler: no new workers when the credential expires within this many seconds
    credentialMarginSeconds: float = 3600.0
    #: services whose queries are tasks: a probe unanswered this long is "could not check"
    probeTimeoutSeconds: float = 900.0
    #: sweeper: the messenger's access-point template (put it in the queue's ``common``
    #: block); sweep_worker deletes only real directories strictly inside its fixed part
    accessPoint: str = ""
    #: monitor: when a worker ends, copy the end of its batch job's output file (``#SBATCH
    #: --output``, else ``<submit dir>/<tag>.out``) into its access point and hand it to
    #: Harvester with ``set_log_file("batch_log", path)``: Harvester uploads it to PanDA's
    #: cache and the PanDA monitor links it.  Only where the facility gives file access
    #: (SFAPI, Globus Compute); read in bulk (SFAPI: one ``tail`` per chunk of workers;
    #: Globus Compute: ``tail -c`` in the summaries' probe); false: never read
    fetchBatchLog: bool = True
    #: how many bytes of the batch log's end are kept (1 KiB to 16 MiB)
    batchLogMaxBytes: int = 256 * 1024

    def __post_init__(self) -> None:
        check(self.chunkSize >= 1, "chunkSize", f"must be >= 1, got {self.chunkSize}")
        check(
            1 <= self.submitConcurrency <= 64,
            "submitConcurrency",
            f"must be between 1 and 64, got {self.submitConcurrency}",
        )
        for key in ("connectTimeout", "readTimeout", "callDeadline", "healthCacheSeconds"):
            check(getattr(self, key) > 0, key, f"must be > 0, got {getattr(self, key)}")
        for key in (
            "retryBackoff", "missingGraceSeconds", "taskTimeoutSeconds",
            "lookupGraceSeconds", "killConfirmSeconds", "orphanWatchSeconds",
            "submitLimitHoldSeconds", "credentialMarginSeconds", "probeTimeoutSeconds",
        ):  # fmt: skip
            check(getattr(self, key) >= 0, key, f"must be >= 0, got {getattr(self, key)}")
        check(
            1 <= self.queryConcurrency <= 16,
            "queryConcurrency",
            f"must be between 1 and 16, got {self.queryConcurrency}",
        )
        check(
            1024 <= self.batchLogMaxBytes <= 16 * 1024 * 1024,
            "batchLogMaxBytes",
            f"must be between 1024 and 16777216, got {self.batchLogMaxBytes}",
        )
        check(self.retryAttempts >= 1, "retryAttempts", f"must be >= 1, got {self.retryAttempts}")
        check(
            self.maxConcurrentAllocations >= 0,
            "maxConcurrentAllocations",
            f"must be >= 0, got {self.maxConcurrentAllocations}",
        )
