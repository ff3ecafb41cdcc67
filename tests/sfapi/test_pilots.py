"""Issue 4 through the SFAPI family: the shipped template on the real cluster, the pilots'
summary read back through SFAPI's download utility, and the level-3 allocation cap."""

from __future__ import annotations

import time

import pytest

from harvester_edge.edge.states import ErrorCode
from harvester_edge.edge.tags import queue_prefix
from harvester_edge.harvester import harvester_id

from ..templates.slurm_helpers import make_fake_cvmfs
from .conftest import Site, all_final, run_until

pytestmark = pytest.mark.slurm


def shipped(site: Site, cvmfs: str, **changes: object) -> dict[str, object]:
    """The shipped template: 2 nodes x 2 pilots, 4 pretend GPUs per node, fake CVMFS."""
    conf: dict[str, object] = {
        "templateFile": None, "profile": "generic", "nNode": 2, "pilotsPerNode": 2,
        "nCorePerNode": 4, "gpusPerNode": 4, "gpuVisibleVar": "CUDA_VISIBLE_DEVICES",
        "cvmfsRoot": cvmfs, "cvmfsCheckTimeout": 2,
    }  # fmt: skip
    conf.update(changes)
    return conf


def test_one_of_four_pilots_failing_is_in_the_worker_diagnosis(
    site: Site, tmp_path, monkeypatch
) -> None:
    make_fake_cvmfs(tmp_path / "cvmfs")
    monkeypatch.setenv("STUB_EXIT_1_2", "3")  # sbatch passes the gateway's environment on
    submitter, monitor, _ = site.plugins(**shipped(site, str(tmp_path / "cvmfs")))
    ws = site.worker()
    assert submitter.submit_workers([ws])[0][0] is True
    run_until(monitor, [ws], all_final)
    assert ws.status == "failed" and ws.errorCode == ErrorCode.PILOTS_FAILED
    assert "4 pilots, 1 failed, first failure: slot 2" in ws.errorDiag and "exit 3" in ws.errorDiag
    pilots = ws.workAttributes["edgePilots"]
    assert (pilots["n"], pilots["failed"], pilots["code"]) == (4, 1, ErrorCode.PILOTS_FAILED)


def test_all_pilots_fine_reports_the_count(site: Site, tmp_path) -> None:
    make_fake_cvmfs(tmp_path / "cvmfs")
    submitter, monitor, _ = site.plugins(**shipped(site, str(tmp_path / "cvmfs")))
    ws = site.worker()
    assert submitter.submit_workers([ws])[0][0] is True
    answers: list[list[str | None]] = []
    run_until(monitor, [ws], all_final, seen=answers)
    pilots = ws.workAttributes["edgePilots"]
    assert ws.status == "finished" and (pilots["n"], pilots["failed"], pilots["code"]) == (
        4,
        0,
        None,
    )


def test_missing_cvmfs_fails_the_worker_saying_cvmfs(site: Site, tmp_path) -> None:
    submitter, monitor, _ = site.plugins(**shipped(site, str(tmp_path / "no-cvmfs")))
    ws = site.worker()
    assert submitter.submit_workers([ws])[0][0] is True
    run_until(monitor, [ws], all_final)
    assert ws.status == "failed" and ws.nativeExitCode == 64
    assert ws.errorCode == ErrorCode.CVMFS and "CVMFS" in ws.errorDiag


def test_max_concurrent_allocations_is_never_exceeded(site: Site, tmp_path) -> None:
    queue = "TEST_L3"
    submitter, monitor, _ = site.plugins(
        queueName=queue, siteName=queue, maxConcurrentAllocations=2
    )
    prefix = queue_prefix(harvester_id(), queue)

    def live() -> int:
        return sum(1 for r in site.slurm.squeue(user="root") if r["name"].startswith(prefix))

    def new_worker() -> object:
        ws = site.worker("sleep 4")
        ws.computingSite = queue
        return ws

    waiting = [new_worker() for _ in range(3)]
    first = submitter.submit_workers(waiting)
    # the cap admits exactly two of three in one call, whatever the timing
    assert [r[0] for r in first] == [True, True, None], first
    assert "maxConcurrentAllocations=2 reached" in first[2][1]
    tracked: list = [ws for ws, r in zip(waiting, first, strict=True) if r[0] is True]
    waiting = [new_worker()]
    peak = 0
    deadline = time.monotonic() + 120
    while (waiting or not all_final(tracked)) and time.monotonic() < deadline:
        if waiting:
            results = submitter.submit_workers(waiting)
            capped = [ws for ws, r in zip(waiting, results, strict=True) if r[0] is None]
            assert all("maxConcurrentAllocations" in r[1] for r in results if r[0] is None)
            tracked += [ws for ws, r in zip(waiting, results, strict=True) if r[0] is True]
            # Harvester makes a new worker for each missed one
            waiting = [new_worker() for _ in capped]
        if tracked:
            run_until(monitor, tracked, lambda ws: True, timeout=5)
        peak = max(peak, live())
        assert peak <= 2
        time.sleep(0.5)
    assert len(tracked) == 3 and all(ws.status == "finished" for ws in tracked)
    assert 1 <= peak <= 2
