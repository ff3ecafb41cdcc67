"""The Slurm passthrough: Slurm's own words, read once for every service that relays them.

SFAPI relays squeue/sacct rows, S3M relays slurmrestd's two job shapes (slurmctld's
``/jobs`` and slurmdb's ``/job/{id}``), Globus Compute relays squeue/sacct output of a shell
task; the DOE IRI API maps to PSI/J states itself and does not need this.  Here:

- ``SlurmState``: every long name and short code, ``CANCELLED by N``, sacct's truncated
  ``CANCELLED+``/``OUT_OF_ME+``;
- ``job_state``: a Slurm state as the neutral ``JobState`` plus its cause;
- ``record_from_row`` (squeue/sacct rows) and ``record_from_slurmrestd`` (both JSON shapes);
- ``confirm_with_accounting``: live listing first, accounting for the jobs gone from it or
  final there, so a final state comes with its exit code (``confirmed_final``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..edge.jobs import JobRecord, JobState


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
    #: a state text we cannot read (a new Slurm state, an ambiguous truncation)
    UNKNOWN = ("UNKNOWN", "?")

    @property
    def long_name(self) -> str:
        return self.value[0]

    @property
    def code(self) -> str:
        return self.value[1]

    @property
    def is_final(self) -> bool:
        return job_state(self)[0].is_final

    @classmethod
    def parse(cls, text: str) -> SlurmState:
        """Parse a long name, a short code, ``CANCELLED by 123`` or sacct's ``CANCELLED+``
        (a truncation is read when exactly one state starts so).

        Raises ValueError naming the text when it is no Slurm state.
        """
        raw = (text or "").strip().split(" ", 1)[0].upper()
        word = raw.rstrip("+")
        state = _BY_NAME.get(word)
        if state is None and raw.endswith("+") and len(word) >= 3:
            matches = {s for n, s in _BY_NAME.items() if len(n) > 3 and n.startswith(word)}
            state = matches.pop() if len(matches) == 1 else None
        if state is None:
            raise ValueError(f"unknown Slurm job state {text!r}")
        return state


_BY_NAME: dict[str, SlurmState] = {}
for _s in SlurmState:
    if _s is not SlurmState.UNKNOWN:
        _BY_NAME[_s.long_name] = _s
        _BY_NAME[_s.code] = _s

_QUEUED = (SlurmState.PENDING, SlurmState.CONFIGURING, SlurmState.REQUEUED, SlurmState.REQUEUE_FED)
_HELD = (SlurmState.REQUEUE_HOLD, SlurmState.RESV_DEL_HOLD)
_ACTIVE = (
    SlurmState.RUNNING, SlurmState.COMPLETING, SlurmState.STAGE_OUT, SlurmState.SIGNALING,
    SlurmState.RESIZING, SlurmState.SUSPENDED, SlurmState.STOPPED,
)  # fmt: skip
_FAILED_WITH_CAUSE = (
    SlurmState.NODE_FAIL, SlurmState.BOOT_FAIL, SlurmState.OUT_OF_MEMORY, SlurmState.DEADLINE,
    SlurmState.REVOKED, SlurmState.SPECIAL_EXIT, SlurmState.TIMEOUT, SlurmState.PREEMPTED,
)  # fmt: skip


def job_state(state: SlurmState) -> tuple[JobState, str | None]:
    """A Slurm state as the neutral state plus its cause (PSI/J's mapping, keeping Slurm's
    detail: TIMEOUT is FAILED with cause TIMEOUT, which the verdict keeps *finished*)."""
    if state in _QUEUED:
        return JobState.QUEUED, None
    if state in _HELD:
        return JobState.HELD, None
    if state in _ACTIVE:
        return JobState.ACTIVE, None
    if state is SlurmState.COMPLETED:
        return JobState.COMPLETED, None
    if state is SlurmState.CANCELLED:
        return JobState.CANCELED, None
    if state is SlurmState.FAILED:
        return JobState.FAILED, None
    if state in _FAILED_WITH_CAUSE:
        return JobState.FAILED, state.long_name
    return JobState.UNKNOWN, None


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


def slurm_record(
    job_id: str,
    state_text: str,
    *,
    name: str = "",
    exit_code: int | None = None,
    signal: int | None = None,
    reason: str = "",
    nodes: str = "",
    accounting: bool = False,
) -> JobRecord:
    """A record from Slurm's words; an unreadable state is UNKNOWN for this job only."""
    try:
        slurm = SlurmState.parse(state_text)
    except ValueError:
        slurm = SlurmState.UNKNOWN
    state, cause = job_state(slurm)
    return JobRecord(
        job_id=job_id,
        state=state,
        name=name,
        cause=cause,
        # a live job has no exit code yet (slurmctld reports 0 for it): only final ones do
        exit_code=exit_code if state.is_final else None,
        signal=signal if state.is_final else None,
        native=state_text.strip() or slurm.long_name,
        reason=reason if reason not in ("None", "(null)") else "",
        nodes=nodes if nodes not in ("None", "(null)") else "",
        confirmed_final=accounting and state.is_final,
    )


def record_from_row(
    row: Mapping[str, Any], *, accounting: bool, id_key: str = "jobid", name_key: str = "name"
) -> JobRecord:
    """A record from an squeue/sacct-style row (SFAPI's rows, a shell task's parsed output).

    Raises ValueError when the row has no id.  Live rows carry no exit code (squeue has none).
    """
    job_id = str(row.get(id_key) or "").strip()
    if not job_id:
        raise ValueError(f"job row without '{id_key}'")
    exit_code, signal = parse_exit_code(row.get("exitcode")) if accounting else (None, None)
    return slurm_record(
        job_id.split(".", 1)[0],
        str(row.get("state") or row.get("st") or ""),
        name=str(row.get(name_key) or row.get("jobname") or ""),
        exit_code=exit_code,
        signal=signal,
        reason=str(row.get("reason") or ""),
        nodes=str(row.get("nodelist") or row.get("nodes") or ""),
        accounting=accounting,
    )


def _number(value: Any) -> int | None:
    """slurmrestd's "no val" numbers: ``{"set": true, "number": 3}``, or a plain int."""
    if isinstance(value, dict):
        return (
            int(value["number"]) if value.get("set") and value.get("number") is not None else None
        )
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _exit_of(value: Any) -> tuple[int | None, int | None]:
    """slurmrestd's exit code: ``{"status": [...], "return_code": {...}, "signal": {...}}``
    (v0.0.39+) or the raw wait status as an int (older)."""
    if isinstance(value, dict):
        code = _number(value.get("return_code"))
        sig = value.get("signal")
        signal = _number(sig.get("id")) if isinstance(sig, dict) else _number(sig)
        return code, signal
    if isinstance(value, int) and not isinstance(value, bool):
        return value >> 8, value & 0x7F
    return None, None


def record_from_slurmrestd(job: Mapping[str, Any]) -> JobRecord:
    """A record from either slurmrestd job shape.

    - slurmctld (``GET .../jobs``): ``job_state: ["RUNNING"]``, ``state_reason``,
      ``exit_code{status, return_code{set, number}}``, ``nodes``;
    - slurmdb (``GET .../job/{id}``, history): ``state{current: [...], reason}``,
      ``exit_code`` likewise, ``nodes``: accounting, so a final state there is confirmed.
    Raises ValueError when the job has no id.
    """
    job_id = str(job.get("job_id") or "").strip()
    if not job_id:
        raise ValueError("slurmrestd job without 'job_id'")
    state = job.get("state")
    if isinstance(state, dict):  # slurmdb shape
        current, reason, accounting = state.get("current"), state.get("reason"), True
    else:
        current, reason, accounting = job.get("job_state"), job.get("state_reason"), False
    words = [str(w) for w in (current if isinstance(current, list) else [current]) if w]
    exit_code, signal = _exit_of(job.get("exit_code"))
    return slurm_record(
        job_id,
        words[0] if words else "",
        name=str(job.get("name") or ""),
        exit_code=exit_code,
        signal=signal,
        reason=str(reason or ""),
        nodes=str(job.get("nodes") or ""),
        accounting=accounting,
    )


Query = Callable[[Sequence[str]], Mapping[str, JobRecord]]


def confirm_with_accounting(
    job_ids: Sequence[str], live: Query, accounting: Query
) -> dict[str, JobRecord]:
    """One live request for all ids, one accounting request for those gone from it or final
    there; per id the accounting record when it has one, else the live one.  Ids absent from
    the answer were seen nowhere (the monitor's missing-job grace decides)."""
    if not job_ids:
        return {}
    seen = dict(live(job_ids))
    gone = [j for j in job_ids if j not in seen or seen[j].state.is_final]
    if gone:
        seen.update(accounting(gone))
    return {j: seen[j] for j in job_ids if j in seen}
