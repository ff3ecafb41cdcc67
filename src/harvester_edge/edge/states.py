"""Slurm job states, mapped to Harvester worker statuses with a diagnosis and an error code.

Every facility ends up reporting Slurm's own state (SFAPI and S3M pass squeue/sacct through,
Globus Compute and IRI wrap it), so this is the one place that decides what a state means.
Rules beyond stock Harvester's monitors:
- short codes (``CG``, ``CF``...) are understood, not mapped to failed;
- ``CANCELLED by 123`` is cancelled;
- ``COMPLETED`` with a non-zero exit code is failed, with the exit code in the diagnosis;
- ``NODE_FAIL``, ``BOOT_FAIL``, ``OUT_OF_MEMORY``, ``DEADLINE`` are failed, naming the cause;
- ``TIMEOUT`` and ``PREEMPTED`` stay *finished* as in stock Harvester (a pilot reaching its
  walltime is normal), with the cause in the diagnosis.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from ..harvester import WorkSpec


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
    TIMEOUT = 5657
    PREEMPTED = 5658
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
    ErrorCode.TIMEOUT: r"Slurm job reached its walltime \(TIMEOUT\).*",
    ErrorCode.PREEMPTED: r"Slurm job was preempted \(PREEMPTED\).*",
    ErrorCode.CANCELLED: r"Slurm job cancelled.*",
    ErrorCode.REVOKED: r"Slurm job revoked by a sibling cluster \(REVOKED\).*",
    ErrorCode.JOB_LOST: r"Slurm job .* vanished: .*",
    ErrorCode.SUBMIT_LOST: r"Slurm job never appeared .*",
    ErrorCode.PILOTS_FAILED: r"Slurm job pilots failed: .*",
    ErrorCode.WRONG_JOB: r"Slurm job .* is not this worker's .*",
}


class SlurmState(enum.Enum):
    """Slurm job states: value is (long name, short code)."""

    BOOT_FAIL = ("BOOT_FAIL", "BF")
    CANCELLED = ("CANCELLED", "CA")
    COMPLETED = ("COMPLETED", "CD")
    COMPLETING = ("COMPLETING", "CG")
    CONFIGURING = ("CONFIGURING", "CF")
    DEADLINE = ("DEADLINE", "DL")
    FAILED = ("FAILED", "F")
    NODE_FAIL = ("NODE_FAIL", "NF")
    OUT_OF_MEMORY = ("OUT_OF_MEMORY", "OOM")
    PENDING = ("PENDING", "PD")
    PREEMPTED = ("PREEMPTED", "PR")
    RESV_DEL_HOLD = ("RESV_DEL_HOLD", "RD")
    REQUEUE_FED = ("REQUEUE_FED", "RF")
    REQUEUE_HOLD = ("REQUEUE_HOLD", "RH")
    REQUEUED = ("REQUEUED", "RQ")
    RESIZING = ("RESIZING", "RS")
    REVOKED = ("REVOKED", "RV")
    RUNNING = ("RUNNING", "R")
    SIGNALING = ("SIGNALING", "SI")
    SPECIAL_EXIT = ("SPECIAL_EXIT", "SE")
    STAGE_OUT = ("STAGE_OUT", "SO")
    STOPPED = ("STOPPED", "ST")
    SUSPENDED = ("SUSPENDED", "S")
    TIMEOUT = ("TIMEOUT", "TO")
    #: a state text we cannot read (a new Slurm state, a truncated ``OUT_OF_ME+``): neither
    #: live nor final; the worker keeps its status ("could not check") for that row only
    UNKNOWN = ("UNKNOWN", "?")

    @property
    def long_name(self) -> str:
        return self.value[0]

    @property
    def code(self) -> str:
        return self.value[1]

    @property
    def is_final(self) -> bool:
        return self in _FINAL

    @classmethod
    def parse(cls, text: str) -> SlurmState:
        """Parse a long name, a short code, ``CANCELLED by 123`` or sacct's ``CANCELLED+``.

        Raises ValueError naming the text when it is no Slurm state.
        """
        raw = (text or "").strip().split(" ", 1)[0].upper()
        word = raw.rstrip("+")
        state = _BY_NAME.get(word)
        if state is None and raw.endswith("+") and len(word) >= 3:
            # sacct cut the column (``OUT_OF_ME+``): the one long name it starts
            matches = {s for name, s in _BY_NAME.items() if len(name) > 3 and name.startswith(word)}
            state = matches.pop() if len(matches) == 1 else None
        if state is None:
            raise ValueError(f"unknown Slurm job state {text!r}")
        return state


_BY_NAME: dict[str, SlurmState] = {}
for _s in SlurmState:
    if _s is not SlurmState.UNKNOWN:
        _BY_NAME[_s.long_name] = _s
        _BY_NAME[_s.code] = _s

_FINAL = frozenset(
    {
        SlurmState.BOOT_FAIL, SlurmState.CANCELLED, SlurmState.COMPLETED, SlurmState.DEADLINE,
        SlurmState.FAILED, SlurmState.NODE_FAIL, SlurmState.OUT_OF_MEMORY, SlurmState.PREEMPTED,
        SlurmState.REVOKED, SlurmState.SPECIAL_EXIT, SlurmState.TIMEOUT,
    }
)  # fmt: skip

# Live states -> worker status.  Held/requeued jobs wait in the queue: submitted.
_LIVE = {
    SlurmState.PENDING: WorkSpec.ST_submitted,
    SlurmState.CONFIGURING: WorkSpec.ST_submitted,
    SlurmState.REQUEUED: WorkSpec.ST_submitted,
    SlurmState.REQUEUE_HOLD: WorkSpec.ST_submitted,
    SlurmState.REQUEUE_FED: WorkSpec.ST_submitted,
    SlurmState.RESV_DEL_HOLD: WorkSpec.ST_submitted,
    SlurmState.RUNNING: WorkSpec.ST_running,
    SlurmState.COMPLETING: WorkSpec.ST_running,
    SlurmState.STAGE_OUT: WorkSpec.ST_running,
    SlurmState.SIGNALING: WorkSpec.ST_running,
    SlurmState.RESIZING: WorkSpec.ST_running,
    SlurmState.SUSPENDED: WorkSpec.ST_running,
    SlurmState.STOPPED: WorkSpec.ST_running,
}

# Final failure states with their cause.
_FAILED_CAUSE = {
    SlurmState.FAILED: (ErrorCode.SLURM_FAILED, "Slurm job failed"),
    SlurmState.NODE_FAIL: (ErrorCode.NODE_FAIL, "Slurm job hit a node failure (NODE_FAIL)"),
    SlurmState.BOOT_FAIL: (ErrorCode.BOOT_FAIL, "Slurm job hit a node boot failure (BOOT_FAIL)"),
    SlurmState.OUT_OF_MEMORY: (
        ErrorCode.OUT_OF_MEMORY,
        "Slurm job ran out of memory (OUT_OF_MEMORY)",
    ),
    SlurmState.DEADLINE: (
        ErrorCode.DEADLINE,
        "Slurm job reached its deadline before start (DEADLINE)",
    ),
    SlurmState.REVOKED: (ErrorCode.REVOKED, "Slurm job revoked by a sibling cluster (REVOKED)"),
    SlurmState.SPECIAL_EXIT: (
        ErrorCode.SLURM_FAILED,
        "Slurm job failed: special exit (SPECIAL_EXIT)",
    ),
}

_EXIT = re.compile(r"^\s*(-?\d+)(?::(\d+))?\s*$")


def parse_exit_code(text: str | int | None) -> tuple[int | None, int | None]:
    """``"3:0"`` -> (3, 0): sacct's ``exitcode:signal``.  Bare ints are taken as exit codes."""
    if text is None or text == "":
        return None, None
    if isinstance(text, int):
        return text, 0
    m = _EXIT.match(str(text))
    if not m:
        return None, None
    return int(m.group(1)), int(m.group(2)) if m.group(2) is not None else 0


@dataclass(frozen=True)
class Verdict:
    """What a Slurm record means for the worker."""

    #: a WorkSpec status, or None: "could not check" (a state we cannot read)
    status: str | None
    diagnosis: str = ""
    error_code: int | None = None

    @property
    def is_final(self) -> bool:
        return self.status in (
            WorkSpec.ST_finished, WorkSpec.ST_failed, WorkSpec.ST_cancelled, WorkSpec.ST_missed,
        )  # fmt: skip


def judge(
    state: SlurmState,
    exit_code: int | None = None,
    signal: int | None = None,
    reason: str = "",
    state_text: str = "",
) -> Verdict:
    """Map a Slurm state (+ exit code, signal, reason) to a worker status and diagnosis.

    ``state_text`` is the scheduler's own text, e.g. ``CANCELLED by 1234`` (who cancelled).
    """
    why = f" (reason: {reason})" if reason and reason not in ("None", "none") else ""
    if state is SlurmState.UNKNOWN:
        return Verdict(None, f"unrecognised Slurm state {state_text!r}; keeping the status")
    if state in _LIVE:
        return Verdict(_LIVE[state], f"{state.long_name}{why}" if why else "")
    exit_text = "" if exit_code is None else f", exit code {exit_code}"
    if signal:
        exit_text += f", signal {signal}"
    if state in (SlurmState.COMPLETED, SlurmState.FAILED) and exit_code:
        verb = "completed" if state is SlurmState.COMPLETED else "failed"
        return Verdict(
            WorkSpec.ST_failed,
            f"Slurm job {verb} with non-zero exit code {exit_code}{why}",
            ErrorCode.NONZERO_EXIT,
        )
    if state is SlurmState.COMPLETED:
        return Verdict(WorkSpec.ST_finished)
    if state is SlurmState.CANCELLED:
        by = state_text.split(" by ", 1)[1].strip() if " by " in state_text else ""
        who = f" by uid {by}" if by else ""
        return Verdict(WorkSpec.ST_cancelled, f"Slurm job cancelled{who}{why}", ErrorCode.CANCELLED)
    if state is SlurmState.TIMEOUT:
        return Verdict(WorkSpec.ST_finished, "Slurm job reached its walltime (TIMEOUT)")
    if state is SlurmState.PREEMPTED:
        return Verdict(WorkSpec.ST_finished, "Slurm job was preempted (PREEMPTED)")
    code, cause = _FAILED_CAUSE[state]
    return Verdict(WorkSpec.ST_failed, f"{cause}{exit_text}{why}", code)


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
