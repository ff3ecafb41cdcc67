"""What the batch job needs to know about one Harvester worker, decoupled from ``WorkSpec``.

``WorkerInfo`` is a frozen copy of the few WorkSpec columns the script and the job spec use,
checked and rounded once.  It also carries the worker's own time (``created``): stock
Harvester's hourly ``logSubDir`` is taken from it, never from the clock, so the same worker
and config always give the same script, job spec and encoded bytes (IRI's idempotent submit
depends on that).  ``created`` is the WorkSpec's ``creationTime``, else its ``submitTime``;
a worker with neither uses :data:`LOG_TIME_FALLBACK`, the Unix epoch, a fixed value that
shows plainly in paths (``70-01-01_00``).
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Any

from ..errors import EdgeConfigError

__all__ = ["LOG_TIME_FALLBACK", "WorkerInfo", "worker_time"]

#: The time of a worker that has neither ``creationTime`` nor ``submitTime``: the Unix epoch.
LOG_TIME_FALLBACK = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


@dataclass(frozen=True, kw_only=True)
class WorkerInfo:
    """What the script needs to know about one Harvester worker (decoupled from WorkSpec)."""

    harvester_id: str
    worker_id: int
    queue: str
    job_name: str
    n_core: int = 0
    min_ram_mb: int = 0
    max_walltime_s: int = 0
    max_disk_mb: int = 0
    job_type: str = ""
    resource_type: str = ""
    pilot_type: str = ""
    work_dir: str
    #: the worker's own time (``creationTime``, else ``submitTime``); see :func:`worker_time`
    created: datetime.datetime | None = None

    @classmethod
    def from_workspec(cls, ws: Any, harvester_id: str, job_name: str, work_dir: str) -> WorkerInfo:
        """Copy the WorkSpec columns the script uses; None columns become 0 or ''.

        ``created`` is ``creationTime`` when it is a datetime, else ``submitTime``, else None
        (then :data:`LOG_TIME_FALLBACK` applies): never the clock.

        Harvester's ResourceTypeMapper computes memory and disk as floats (2000.0, 1843.2):
        memory and disk are rounded up to whole MB and the walltime up to whole seconds;
        ``nCore`` must be a whole number (8.0 is 8).  A bool, a negative, NaN or infinite value
        (or not a number at all) is an :class:`EdgeConfigError` naming the worker field.
        """
        return cls(
            harvester_id=harvester_id,
            worker_id=int(ws.workerID),
            queue=str(getattr(ws, "computingSite", None) or getattr(ws, "queueName", "") or ""),
            job_name=job_name,
            n_core=_worker_number(ws, "nCore", whole=True),
            min_ram_mb=_worker_number(ws, "minRamCount"),
            max_walltime_s=_worker_number(ws, "maxWalltime"),
            max_disk_mb=_worker_number(ws, "maxDiskCount"),
            job_type=str(ws.jobType or ""),
            resource_type=str(ws.resourceType or ""),
            pilot_type=str(ws.pilotType or ""),
            work_dir=work_dir,
            created=_worker_datetime(ws),
        )


def worker_time(worker: WorkerInfo, now: datetime.datetime | None = None) -> datetime.datetime:
    """The worker's time in UTC: ``now`` when given, else ``created``, else the epoch.

    Naive datetimes are UTC (Harvester stores naive UTC); aware ones are converted to UTC.
    """
    when = now or worker.created or LOG_TIME_FALLBACK
    if when.tzinfo is None:
        return when.replace(tzinfo=datetime.timezone.utc)
    return when.astimezone(datetime.timezone.utc)


def _worker_datetime(ws: Any) -> datetime.datetime | None:
    """``creationTime``, else ``submitTime``, whichever first is a datetime; else None."""
    for field in ("creationTime", "submitTime"):
        value = getattr(ws, field, None)
        if isinstance(value, datetime.datetime):
            return value
    return None


def _worker_number(ws: Any, field: str, whole: bool = False) -> int:
    """A numeric WorkSpec column as a non-negative int (rounded up); None is 0."""
    value = getattr(ws, field, None)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EdgeConfigError(f"{field}: worker field must be a number (got {value!r})")
    if not math.isfinite(value) or value < 0:
        raise EdgeConfigError(f"{field}: worker field must be finite and >= 0 (got {value!r})")
    if whole and value != math.floor(value):
        raise EdgeConfigError(f"{field}: worker field must be a whole number (got {value!r})")
    return math.ceil(value)
