"""Slurm job states as DOE IRI (PSI/J) job states, for the loopback IRI gateway.

PSI/J has ``new, queued, held, active, completed, failed, canceled``; ``completed`` means exit
status 0 only.  Slurm's finer states are kept in ``status.meta_data.slurm_state`` and named in
``status.message`` (so TIMEOUT stays distinguishable from FAILED), with the raw ``N:S`` exit
code in ``meta_data.slurm_exit_code``.

``exit_code`` is the job's exit status when it ended normally (``3:0`` -> 3); when a signal
ended it (``0:9``), 128 + the signal, the shell's convention, with ``meta_data.signal`` set.
A state this table does not know reads ``queued`` (not final: a client keeps polling) with
the state named in the message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["FINAL", "job_status", "psij_state"]

_QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED"}
_HELD = {"REQUEUE_HOLD", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
_ACTIVE = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING", "SUSPENDED", "STOPPED"}
_FAILED = {
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "TIMEOUT",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
    "REVOKED",
}
#: PSI/J states after which nothing changes.
FINAL = frozenset({"completed", "failed", "canceled"})


def _exit(raw: str | None) -> tuple[int | None, int | None]:
    """``"3:0"`` -> ``(3, 0)``: Slurm's exit status and terminating signal."""
    if not raw or ":" not in raw:
        return None, None
    code, _, sig = raw.partition(":")
    try:
        return int(code), int(sig)
    except ValueError:
        return None, None


def psij_state(slurm_state: str, reason: str = "", exit_raw: str | None = None) -> str:
    """The PSI/J state of a Slurm state (``CANCELLED by 0`` counts as ``CANCELLED``)."""
    base = (slurm_state or "").split(" ", 1)[0].rstrip("+").upper()
    if base == "PENDING" and (reason or "").startswith("JobHeld"):
        return "held"
    if base in _QUEUED:
        return "queued"
    if base in _HELD:
        return "held"
    if base in _ACTIVE:
        return "active"
    if base == "CANCELLED":
        return "canceled"
    if base == "COMPLETED":
        code, sig = _exit(exit_raw)
        return "completed" if not code and not sig else "failed"
    if base in _FAILED:
        return "failed"
    return "queued"


def _epoch(text: str | None) -> float | None:
    """A Slurm timestamp (local time, ``2026-05-01T12:00:00``) as seconds since the epoch."""
    if not text or not text[:1].isdigit():
        return None  # "N/A", "Unknown", "None", ""
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def job_status(row: dict[str, str], source: str, name: str | None = None) -> dict[str, Any]:
    """An IRI ``JobStatus`` from an squeue row (``source="squeue"``) or a job-level sacct row
    (``source="sacct"``) of :class:`~harvester_edge.localsite.slurm.LocalSlurm`."""
    slurm_state = row.get("state", "")
    reason = row.get("reason", "")
    reason = "" if reason == "None" else reason
    exit_raw = row.get("exitcode") if source == "sacct" else None
    state = psij_state(slurm_state, reason, exit_raw)
    base = slurm_state.split(" ", 1)[0]
    code, sig = _exit(exit_raw)
    exit_code: int | None = None
    if code is not None and sig is not None:
        exit_code = 128 + sig if sig else code
    if state == "completed":
        exit_code = 0
    elif state == "canceled" and not code and not sig:
        exit_code = None  # cancelled: 0:0 at job level says nothing about the program
    if source == "squeue":
        when = row.get("start_time") if state == "active" else row.get("submit_time")
    else:
        when = row.get("end") if state in FINAL else row.get("start") or row.get("submit")
    if state in ("queued", "held"):
        detail = f" (reason: {reason})" if reason else ""
        message = f"Slurm state {base}{detail}"
    elif state == "active":
        nodes = row.get("nodelist") or ""
        message = f"Slurm state {base}" + (f" on {nodes}" if nodes else "")
    elif exit_raw:
        message = f"Slurm state {base}, exit code {exit_raw}"
    else:
        message = f"Slurm state {base}"
    if state == "queued" and base not in _QUEUED:
        message += " (not a state this gateway knows; reported as queued)"
    meta: dict[str, Any] = {
        "name": name if name is not None else row.get("name", row.get("jobname", "")),
        "slurm_state": slurm_state,
        "slurm_exit_code": exit_raw,
        "reason": reason or None,
        "partition": row.get("partition") or None,
        "nodelist": row.get("nodelist") or None,
        "source": source,
    }
    if sig:
        meta["signal"] = sig
    return {
        "state": state,
        "time": _epoch(when),
        "message": message,
        "exit_code": exit_code,
        "meta_data": meta,
    }
