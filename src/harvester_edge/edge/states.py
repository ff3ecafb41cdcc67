"""Job records mapped to Harvester worker statuses with a diagnosis and an error code.

Every client reports a facility-neutral ``JobRecord`` (``edge/jobs.py``; the Slurm
vocabulary is read in ``facilities/passthrough.py``, PSI/J states by the IRI client), and
``verdict_of`` is the one place that decides what a record means for Harvester.  Also here:
the error codes in Harvester's categories and the submit-limit words of sbatch.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from ..harvester import WorkSpec
from .jobs import JobRecord, JobState


class ErrorCode(enum.IntEnum):
    """Harvester ``errorCode`` values set by harvester-edge, in the categories of Harvester's
    ``harvestercore/worker_errors.py`` (docs/errors.md lists each with its message pattern).

    - 2064: the stock "wrapper got cvmfs repos issue" (pilot-wrapper category);
    - 5601: the stock "submission command failed (exit code = N) ..." (Slurm block);
    - 5650-5698: this package's own block inside the Slurm section (5.6) of the batch-system
      category; every diagnosis of that block starts with "Slurm " and so also matches the
      stock Slurm catch-all 5699 "Slurm .*".
    """

    CVMFS = 2064
    SUBMIT_REJECTED = 5601
    NONZERO_EXIT = 5651
    SLURM_FAILED = 5652
    NODE_FAIL = 5653
    BOOT_FAIL = 5654
    OUT_OF_MEMORY = 5655
    DEADLINE = 5656
    CANCELLED = 5659
    REVOKED = 5660
    JOB_LOST = 5661
    SUBMIT_LOST = 5662
    PILOTS_FAILED = 5663
    WRONG_JOB = 5664


#: The stock message pattern each code's diagnosis matches (docs/errors.md; tests check it).
ERROR_PATTERNS: dict[int, str] = {
    ErrorCode.CVMFS: r"wrapper got cvmfs repos issue",
    ErrorCode.SUBMIT_REJECTED: r"submission command failed \(exit code = .*\).*",
    ErrorCode.NONZERO_EXIT: r"Slurm job (completed|failed) with non-zero exit code .*",
    ErrorCode.SLURM_FAILED: r"Slurm job failed.*",
    ErrorCode.NODE_FAIL: r"Slurm job hit a node failure \(NODE_FAIL\).*",
    ErrorCode.BOOT_FAIL: r"Slurm job hit a node boot failure \(BOOT_FAIL\).*",
    ErrorCode.OUT_OF_MEMORY: r"Slurm job ran out of memory \(OUT_OF_MEMORY\).*",
    ErrorCode.DEADLINE: r"Slurm job reached its deadline before start \(DEADLINE\).*",
    ErrorCode.CANCELLED: r"Slurm job cancelled.*",
    ErrorCode.REVOKED: r"Slurm job revoked by a sibling cluster \(REVOKED\).*",
    ErrorCode.JOB_LOST: r"Slurm job .* vanished: .*",
    ErrorCode.SUBMIT_LOST: r"Slurm job never appeared .*",
    ErrorCode.PILOTS_FAILED: r"Slurm job pilots failed: .*",
    ErrorCode.WRONG_JOB: r"Slurm job .* is not this worker's .*",
}


@dataclass(frozen=True)
class Verdict:
    """What a job record means for the worker."""

    #: a WorkSpec status, or None: "could not check" (a state we cannot read)
    status: str | None
    diagnosis: str = ""
    error_code: int | None = None

    @property
    def is_final(self) -> bool:
        return self.status in (
            WorkSpec.ST_finished, WorkSpec.ST_failed, WorkSpec.ST_cancelled, WorkSpec.ST_missed,
        )  # fmt: skip


# Final failure causes (Slurm's words, passed through by SFAPI, S3M, Globus Compute and the
# IRI API where the facility gives them) with their error code.
_FAILED_CAUSE = {
    "NODE_FAIL": (ErrorCode.NODE_FAIL, "Slurm job hit a node failure (NODE_FAIL)"),
    "BOOT_FAIL": (ErrorCode.BOOT_FAIL, "Slurm job hit a node boot failure (BOOT_FAIL)"),
    "OUT_OF_MEMORY": (ErrorCode.OUT_OF_MEMORY, "Slurm job ran out of memory (OUT_OF_MEMORY)"),
    "DEADLINE": (ErrorCode.DEADLINE, "Slurm job reached its deadline before start (DEADLINE)"),
    "REVOKED": (ErrorCode.REVOKED, "Slurm job revoked by a sibling cluster (REVOKED)"),
    "SPECIAL_EXIT": (ErrorCode.SLURM_FAILED, "Slurm job failed: special exit (SPECIAL_EXIT)"),
}
# Causes that stay *finished*, as in stock Harvester (a pilot reaching its walltime is normal).
_FINISHED_CAUSE = {
    "TIMEOUT": "Slurm job reached its walltime (TIMEOUT)",
    "PREEMPTED": "Slurm job was preempted (PREEMPTED)",
}
_LIVE = {
    JobState.QUEUED: WorkSpec.ST_submitted,
    JobState.HELD: WorkSpec.ST_submitted,
    JobState.ACTIVE: WorkSpec.ST_running,
}


def verdict_of(record: JobRecord) -> Verdict:
    """The one mapping from a job record to a worker status, diagnosis and error code.

    Rules beyond stock Harvester's monitors: a state we cannot read is "could not check";
    COMPLETED with a non-zero exit code is failed; NODE_FAIL, BOOT_FAIL, OUT_OF_MEMORY,
    DEADLINE, REVOKED are failed naming the cause; TIMEOUT and PREEMPTED stay finished with the
    cause in the diagnosis; "CANCELLED by 123" is cancelled, saying who.
    """
    state, native = record.state, record.native_status
    reason = record.reason
    why = f" (reason: {reason})" if reason and reason not in ("None", "none") else ""
    if state is JobState.UNKNOWN:
        return Verdict(None, f"unrecognised job state {native!r}; keeping the status")
    if state in _LIVE:
        return Verdict(_LIVE[state], f"{native}{why}" if why else "")
    exit_code, signal = record.exit_code, record.signal
    exit_text = "" if exit_code is None else f", exit code {exit_code}"
    if signal:
        exit_text += f", signal {signal}"
    if record.cause in _FINISHED_CAUSE:
        return Verdict(WorkSpec.ST_finished, _FINISHED_CAUSE[record.cause])
    if state is JobState.CANCELED:
        by = native.split(" by ", 1)[1].strip() if " by " in native else ""
        who = f" by uid {by}" if by else ""
        return Verdict(WorkSpec.ST_cancelled, f"Slurm job cancelled{who}{why}", ErrorCode.CANCELLED)
    if record.cause in _FAILED_CAUSE:
        code, cause = _FAILED_CAUSE[record.cause]
        return Verdict(WorkSpec.ST_failed, f"{cause}{exit_text}{why}", code)
    if exit_code:
        verb = "completed" if state is JobState.COMPLETED else "failed"
        return Verdict(
            WorkSpec.ST_failed,
            f"Slurm job {verb} with non-zero exit code {exit_code}{why}",
            ErrorCode.NONZERO_EXIT,
        )
    if state is JobState.COMPLETED:
        return Verdict(WorkSpec.ST_finished)
    return Verdict(WorkSpec.ST_failed, f"Slurm job failed{exit_text}{why}", ErrorCode.SLURM_FAILED)


# sbatch's words when a submit limit (QOS or association) refuses a job: not a failure of the
# job, a "not now" -- Harvester should try again later.
_SUBMIT_LIMIT = re.compile(
    r"QOSMaxSubmitJob|AssocMaxSubmitJob|MaxSubmitJobs|QOSMax\w*Limit|AssocGrp\w*Limit"
    r"|job submit limit|Job violates accounting/QOS policy",
    re.IGNORECASE,
)


def is_submit_limit(message: str) -> bool:
    """True when a submit refusal is a QOS/association submit limit (retry later)."""
    return bool(_SUBMIT_LIMIT.search(message or ""))
