"""The facility-neutral view of one batch job, as every facility client returns it."""

from __future__ import annotations

from dataclasses import dataclass, field

from .states import SlurmState, Verdict, judge, parse_exit_code


@dataclass(frozen=True)
class JobRecord:
    """One job as the scheduler reports it.

    ``source`` says who reported it: ``queue`` (squeue: live jobs, no exit code) or
    ``accounting`` (sacct: final states with exit code).  A final state seen only in the
    queue is confirmed from accounting before it is reported, so the exit code is known.
    """

    job_id: str
    state: SlurmState
    source: str
    name: str = ""
    state_text: str = ""
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""
    nodes: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def native_status(self) -> str:
        return self.state_text or self.state.long_name

    def verdict(self) -> Verdict:
        return judge(self.state, self.exit_code, self.signal, self.reason, self.state_text)


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
    duplicates.  Non-numeric ids (federated ``123+0``, array ``123_4``) sort by their text."""
    return sorted(
        records, key=lambda r: (0, int(r.job_id), "") if r.job_id.isdigit() else (1, 0, r.job_id)
    )


def record_from_row(
    row: dict[str, object], *, source: str, id_key: str = "jobid", name_key: str = "name"
) -> JobRecord:
    """Build a record from an squeue/sacct-style row (SFAPI rows, our gateway's rows).

    Raises ValueError when the row has no id.  A state text we cannot read becomes
    ``SlurmState.UNKNOWN`` for this row only: one odd row never blanks a whole chunk.
    """
    job_id = str(row.get(id_key) or "").strip()
    if not job_id:
        raise ValueError(f"job row without '{id_key}'")
    state_text = str(row.get("state") or row.get("st") or "").strip()
    try:
        state = SlurmState.parse(state_text)
    except ValueError:
        state = SlurmState.UNKNOWN
    exit_code, signal = parse_exit_code(row.get("exitcode"))  # type: ignore[arg-type]
    return JobRecord(
        job_id=job_id.split(".", 1)[0],
        state=state,
        source=source,
        name=str(row.get(name_key) or row.get("jobname") or ""),
        state_text=state_text,
        exit_code=exit_code,
        signal=signal,
        reason=str(row.get("reason") or ""),
        nodes=str(row.get("nodelist") or row.get("nodes") or ""),
    )
