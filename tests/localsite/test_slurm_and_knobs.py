"""LocalSlurm's input validation and Slurm-22.05 handling, and Knobs validation."""

from __future__ import annotations

import threading
import time

import pytest

from harvester_edge.localsite.faults import Knobs
from harvester_edge.localsite.slurm import LocalSlurm, validate_jobids, validate_names


@pytest.mark.parametrize(
    "bad",
    [
        "1;rm -rf /",
        "-1",
        "12 13",
        "",
        "--all",
        "1_",
        "_2",
        "1+",
        "1_[1-3]",
        "1_2-3",
        "1.0",
        "1,2",
        "1_2_3",
        "1+2+3",
        "1_2+3",
        "1\n2",
        "1+-1",
        "x1",
    ],
)
def test_jobids_must_be_job_ids(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_jobids([bad])


def test_array_and_het_job_ids_are_job_ids() -> None:
    assert validate_jobids(["12", 13, " 14_2 ", "15+1", "99_0", "7+0"]) == [
        "12",
        "13",
        "14_2",
        "15+1",
        "99_0",
        "7+0",
    ]


@pytest.mark.parametrize("bad", ["a,b", "x y", "--name=y", "$(id)", ""])
def test_names_from_safe_charset(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_names([bad])


def test_empty_id_list_never_widens_the_query() -> None:
    slurm = LocalSlurm("/nonexistent/slurm.conf")
    assert slurm.squeue(jobids=[]) == [] and slurm.sacct(jobids=[]) == []


@pytest.mark.slurm
def test_local_slurm_roundtrip(slurm: LocalSlurm, tmp_path: object) -> None:
    jobid, error = slurm.sbatch("#!/bin/bash\n#SBATCH --mem=100000000\nexit 0\n", "/tmp")
    assert jobid is None and error and "Memory specification" in error

    jobid, error = slurm.sbatch(
        "#!/bin/bash\n#SBATCH -J hxunit\n#SBATCH -o /dev/null\nexit 0\n", "/tmp"
    )
    assert error is None and jobid and jobid.isdigit()
    assert slurm.squeue(jobids=["999999999"]) == []  # "Invalid job id specified" = no rows
    # 22.05 accounting first records a fast job as "allocation" and fills in the real
    # JobName a few seconds later (so sacct --name misses it meanwhile): wait for both.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = slurm.sacct(jobids=[jobid])
        if rows and rows[0]["state"] == "COMPLETED" and rows[0]["jobname"] == "hxunit":
            break
        time.sleep(0.3)
    assert rows[0]["exitcode"] == "0:0" and rows[0]["jobname"] == "hxunit"
    assert all(isinstance(v, str) for v in rows[0].values())
    assert slurm.scancel(["999999999"])  # 22.05 exits 0 here; the message still counts


def test_knobs_validate_and_wake() -> None:
    knobs = Knobs()
    with pytest.raises(ValueError):
        knobs.error_rate = 2
    with pytest.raises(ValueError):
        knobs.update(latency=1, machine_status="down")
    assert knobs.latency == 0  # update() is all-or-nothing
    knobs.update(hang="true", latency="0.5")
    assert knobs.hang is True and knobs.latency == 0.5

    # The waiters poll only every 60 s, so they return in time only if they are woken.
    stop = threading.Event()
    released: list[bool] = []
    waiter = start_waiter(knobs, stop, released)
    assert released == []  # really blocked while hung
    start = time.monotonic()
    knobs.hang = False  # the assignment itself must wake the waiter
    waiter.join(5)
    assert released == [True] and time.monotonic() - start < 5

    knobs.hang = True
    waiter = start_waiter(knobs, stop, released)
    stop.set()  # setting the event alone wakes nobody ...
    time.sleep(0.2)
    assert waiter.is_alive() and released == [True]
    knobs.wake()  # ... wake() does
    waiter.join(5)
    assert released == [True, False]


def start_waiter(knobs: Knobs, stop: threading.Event, released: list[bool]) -> threading.Thread:
    """Start a thread in ``wait_while_hung`` and return once it waits on the condition."""
    waiter = threading.Thread(
        target=lambda: released.append(knobs.wait_while_hung(stop, poll=60)), daemon=True
    )
    waiter.start()
    deadline = time.monotonic() + 5
    # Condition._waiters (CPython): one entry per thread inside wait().
    while not knobs._cond._waiters:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "waiter never started waiting"
        time.sleep(0.01)
    return waiter


def test_resource_status_takes_either_gateways_words() -> None:
    """``resource_status`` is shared by the S3M and IRI gateways: each reads the other's
    words in its own; anything else is refused."""
    knobs = Knobs(resource_status={"odo": "UNAVAILABLE", "frontier": "degraded"})
    assert knobs.iri_status("odo") == "down" and knobs.iri_status("x", "frontier") == "degraded"
    assert knobs.s3m_status("odo") == "UNAVAILABLE" and knobs.s3m_status("frontier") == "DEGRADED"
    assert knobs.s3m_status("other") is None and knobs.iri_status("other") == "up"
    for bad in ({"odo": "UP"}, {"odo": "on"}, {"odo": "operational"}):
        with pytest.raises(ValueError, match="resource_status"):
            knobs.resource_status = bad
    with pytest.raises(ValueError, match="resource_status"):
        Knobs(resource_status={"odo": "broken"})


def test_seed_reseeds_every_generator_and_drops_filter_by_path_when_given() -> None:
    knobs = Knobs(seed=7, error_rate=0.5, error_after_submit=0.5, drop_rate=0.5)
    knobs.drop_after_submit = 0.5

    def draws() -> list[object]:
        return [
            (knobs.draw_error("/a", "/a", False), knobs.draw_after_submit(),
             knobs.draw_drop(), knobs.draw_drop_after_submit())
            for _ in range(20)
        ]  # fmt: skip

    first = draws()
    knobs.seed = 7
    assert draws() == first
    # With a path (the IRI gateway) only what error_paths selects is drawn for; without
    # one (the S3M gateway) every request is.
    knobs.update(drop_rate=1.0, error_paths=["/compute"])
    assert knobs.draw_drop("/api/v1/status/resources", "/status/resources") is False
    assert knobs.draw_drop("/api/v1/compute/job/x", "/compute/job/x") is True
    assert knobs.draw_drop() is True
