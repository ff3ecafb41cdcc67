"""Same worker and config -> identical spec and encoded bytes, whatever the clock says.

Before the job spec, stock's ``logSubDir`` took the current hour, so a worker rendered an hour
later gave another script (and another IRI body: an idempotency-key conflict).  Now the hour
is the worker's own ``creationTime`` (else ``submitTime``, else the epoch).
"""

from __future__ import annotations

import datetime
import time
import types
from pathlib import Path

import pytest

from harvester_edge.edge import placeholders, script, spec, worker
from harvester_edge.edge.batch import BatchConfig, WorkerInfo
from harvester_edge.edge.encoders import canonical_json, psij_job_spec, slurmrestd_job
from harvester_edge.edge.spec import JobSpec, build_job_spec
from harvester_edge.harvester import WorkSpec

BASE = "/pscratch/sd/h/harvester/edge"
REAL_NOW = datetime.datetime(2025, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)

#: a stock-style operator template that uses the hour-dependent placeholder twice
TEMPLATE = "#!/bin/bash\n#SBATCH -N {nNode}\n#SBATCH -e {logSubDir}/err\necho {logSubDir}\n"


class _RealInstances(type):
    """Metaclass: a stand-in datetime class still recognises real datetimes (isinstance)."""

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, REAL_DATETIME)


REAL_DATETIME = datetime.datetime


def shift_clock(monkeypatch: pytest.MonkeyPatch, hours: int) -> None:
    """Every clock the edge modules could read now says REAL_NOW + ``hours``."""
    moved = REAL_NOW + datetime.timedelta(hours=hours)

    class MovedDatetime(datetime.datetime, metaclass=_RealInstances):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> MovedDatetime:  # type: ignore[override]
            return cls.fromtimestamp(moved.timestamp(), tz)

        @classmethod
        def utcnow(cls) -> MovedDatetime:  # type: ignore[override]
            return cls.fromtimestamp(moved.timestamp(), datetime.timezone.utc).replace(tzinfo=None)

    fake = types.SimpleNamespace(
        datetime=MovedDatetime, timezone=datetime.timezone, timedelta=datetime.timedelta
    )
    for module in (placeholders, script, spec, worker):
        if hasattr(module, "datetime"):
            monkeypatch.setattr(module, "datetime", fake)
    monkeypatch.setattr(time, "time", moved.timestamp)


def encodings(job: JobSpec) -> tuple[bytes, ...]:
    return (
        job.script.encode(),
        canonical_json(slurmrestd_job(job)),
        canonical_json(slurmrestd_job(job, "v0.0.44", "jobs")),
        canonical_json(psij_job_spec(job)),
    )


def build(template: Path, creation: object, submit: object) -> JobSpec:
    cfg = BatchConfig.from_config(
        {"remoteWorkDir": BASE, "templateFile": str(template), "logDir": BASE + "/logs"}
    )
    ws = WorkSpec()
    ws.workerID, ws.computingSite, ws.maxWalltime = 42, "Q", 3600
    ws.creationTime, ws.submitTime = creation, submit
    info = WorkerInfo.from_workspec(ws, "hid", "hedge-hid-Q-w42", cfg.worker_dir("hid", 42, "Q"))
    return build_job_spec(cfg, info)


@pytest.mark.parametrize(
    ("creation", "submit", "hour_dir"),
    [
        (datetime.datetime(2025, 5, 6, 1, 2), None, "25-05-06_01"),
        (None, datetime.datetime(2025, 5, 6, 2, 0), "25-05-06_02"),
        (None, None, "70-01-01_00"),  # documented fallback: the Unix epoch
    ],
)
def test_clock_moved_by_hours_gives_identical_spec_and_bytes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    creation: object,
    submit: object,
    hour_dir: str,
) -> None:
    template = tmp_path / "op.sh"
    template.write_text(TEMPLATE)
    first = build(template, creation, submit)
    assert f"echo {BASE}/logs/{hour_dir}\n" in first.script
    assert first.stderr_path == f"{BASE}/logs/{hour_dir}/err"
    for hours in (1, 5, 13, 24 * 40):
        shift_clock(monkeypatch, hours)
        again = build(template, creation, submit)
        assert again == first
        assert encodings(again) == encodings(first)
        monkeypatch.undo()


def test_nothing_reads_the_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    template = tmp_path / "op.sh"
    template.write_text(TEMPLATE)
    expected = build(template, None, None)

    def no_clock(*args: object) -> object:
        raise AssertionError("the job spec read the clock")

    class NoClock(datetime.datetime, metaclass=_RealInstances):
        now = utcnow = today = staticmethod(no_clock)  # type: ignore[assignment]

    fake = types.SimpleNamespace(datetime=NoClock, timezone=datetime.timezone)
    for module in (placeholders, script, spec, worker):
        if hasattr(module, "datetime"):
            monkeypatch.setattr(module, "datetime", fake)
    for name in ("time", "time_ns", "monotonic", "perf_counter"):
        monkeypatch.setattr(time, name, no_clock)
    job = build(template, None, None)
    assert job == expected and encodings(job) == encodings(expected)
    created = datetime.datetime(2025, 5, 6, 1, 2)
    assert build(template, created, None).stderr_path == f"{BASE}/logs/25-05-06_01/err"
