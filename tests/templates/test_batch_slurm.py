"""Acceptance on the real local Slurm cluster (emulated nodes, fake CVMFS tree, stub pilot)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from harvester_edge.edge.batch import BatchConfig, WorkerInfo, render_batch_script
from harvester_edge.edge.pilot_summary import EXIT_CVMFS, SUMMARY_FILE, PilotSummary, parse_summary

from .slurm_helpers import make_fake_cvmfs, read_env, slurm_env, submit, wait_job

pytestmark = pytest.mark.slurm


def config(tmp_path: Path, **changes: object) -> BatchConfig:
    """2 nodes x 2 pilots, 4 cores and 4 (pretend) NVIDIA GPUs per node, fake CVMFS."""
    values: dict[str, object] = {
        "profile": "generic", "nNode": 2, "pilotsPerNode": 2, "nCorePerNode": 4,
        "gpusPerNode": 4, "gpuVisibleVar": "CUDA_VISIBLE_DEVICES",
        "cvmfsRoot": str(tmp_path / "cvmfs"), "cvmfsCheckTimeout": 2,
        "remoteWorkDir": str(tmp_path / "work"),
    }  # fmt: skip
    values.update(changes)
    return BatchConfig.from_config(values)


def worker(tmp_path: Path, **changes: object) -> WorkerInfo:
    values: dict[str, object] = dict(
        harvester_id="hedge-test", worker_id=101, queue="TEST_QUEUE",
        job_name=f"hedge-test-{tmp_path.name[-20:]}", work_dir=str(tmp_path / "work"),
        max_walltime_s=300,
    )  # fmt: skip
    values.update(changes)
    return WorkerInfo(**values)  # type: ignore[arg-type]


def run(
    tmp_path: Path, cfg: BatchConfig, info: WorkerInfo, env: dict[str, str] | None = None
) -> tuple[str, str, int, PilotSummary]:
    """Render, sbatch, wait; returns (job id, state, exit code, parsed summary)."""
    job_id = submit(render_batch_script(cfg, info), tmp_path, env)
    state, code = wait_job(job_id)
    text = (Path(info.work_dir) / SUMMARY_FILE).read_text()
    return job_id, state, code, parse_summary(text)


def pilot_envs(work: Path) -> list[dict[str, str]]:
    return [read_env(p) for p in sorted(work.glob("*/slot*/env.txt"))]


def test_two_nodes_two_pilots_each(tmp_path: Path) -> None:
    make_fake_cvmfs(tmp_path / "cvmfs")
    job_id, state, code, summary = run(
        tmp_path, config(tmp_path), worker(tmp_path), {"JOB_ID": "stale-grid-id"}
    )
    assert (state, code) == ("COMPLETED", 0)
    assert (summary.n_pilots, summary.n_failed, summary.error_code()) == (4, 0, None)
    assert sorted(p.exit_code for p in summary.pilots) == [0, 0, 0, 0]
    envs = pilot_envs(tmp_path / "work")
    assert len(envs) == 4
    assert len({e["HARVESTER_NODE"] for e in envs}) == 2
    assert len({e["HARVESTER_PILOT_DIR"] for e in envs}) == 4
    assert {e["PANDA_HOSTNAME"] for e in envs} == {
        f"{e['HARVESTER_NODE']}-slot{e['HARVESTER_SLOT']}" for e in envs
    }
    assert len({e["GTAG"] for e in envs}) == 4
    assert sorted(e["HARVESTER_PILOT_INDEX"] for e in envs) == ["0", "1", "2", "3"]
    for env in envs:
        assert env["CUDA_VISIBLE_DEVICES"] == {"1": "0,1", "2": "2,3"}[env["HARVESTER_SLOT"]]
        assert env["HARVESTER_CPU_LIST"] == {"1": "0-1", "2": "2-3"}[env["HARVESTER_SLOT"]]
        assert env["HARVESTER_CORES"] == "2"
        assert (env["HARVESTER_ID"], env["HARVESTER_WORKER_ID"]) == ("hedge-test", "101")
        assert env["PANDA_JSID"] == "harvester-hedge-test"
        assert env["HARVESTER_QUEUE"] == "TEST_QUEUE"
        assert (env["SLURM_JOB_ID"], env["SLURM_STEP_ID"]) == (job_id, "0")
        assert "JOB_ID" not in env
        assert Path(env["HARVESTER_PILOT_DIR"]) == Path(env["PWD"])
    args = (tmp_path / "work" / envs[0]["HARVESTER_NODE"] / "slot1" / "args.txt").read_text()
    assert "-q\nTEST_QUEUE\n" in args and "--harvester-submit-mode\nPULL\n" in args
    record = json.loads((tmp_path / "work/pilots" / f"{envs[0]['HARVESTER_NODE']}-slot1.json")
                        .read_text())  # fmt: skip
    assert {"start", "end", "node", "slot", "exit_code"} <= set(record)


def test_one_of_four_pilots_fails(tmp_path: Path) -> None:
    make_fake_cvmfs(tmp_path / "cvmfs")
    _, state, code, summary = run(
        tmp_path, config(tmp_path), worker(tmp_path), {"STUB_EXIT_1_2": "3"}
    )
    assert (state, code) == ("FAILED", 3)
    assert (summary.n_pilots, summary.n_failed, summary.error_code()) == (4, 1, 3)
    first = summary.first_failure
    assert first is not None and (first.node_index, first.slot, first.exit_code) == (1, 2, 3)
    expected = f"4 pilots, 1 failed, first failure: slot 2 on {first.node} exit 3"
    assert summary.diagnosis() == expected


def test_missing_cvmfs_ends_with_the_cvmfs_exit_code(tmp_path: Path) -> None:
    _, state, code, summary = run(tmp_path, config(tmp_path), worker(tmp_path))
    assert (state, code) == ("FAILED", EXIT_CVMFS)
    assert summary.error_code() == EXIT_CVMFS and summary.pilots == []
    assert "CVMFS repository atlas.cern.ch" in str(summary.cvmfs_error)
    assert summary.diagnosis().startswith("CVMFS unavailable (exit 64): ")
    assert not list((tmp_path / "work").glob("*/slot*"))


def test_hanging_cvmfs_file_times_out(tmp_path: Path) -> None:
    make_fake_cvmfs(tmp_path / "cvmfs", setup_fifo=True)
    started = time.monotonic()
    _, state, code, summary = run(tmp_path, config(tmp_path, nNode=1), worker(tmp_path))
    assert (state, code) == ("FAILED", EXIT_CVMFS)
    assert summary.cvmfs_error is not None and "timed out after 2 s" in summary.cvmfs_error
    assert time.monotonic() - started < 30


FAKE_CVMFSEXEC = """#!/bin/bash
echo "$SLURMD_NODENAME $*" >> {tmp}/fallback.log
ln -s {tmp}/cvmfs-source {tmp}/cvmfs 2>/dev/null
while [ "$1" != -- ]; do shift; done; shift
exec "$@"
"""

FAKE_APPTAINER = """#!/bin/bash
echo "$SLURMD_NODENAME $*" >> {tmp}/fallback.log
ln -s {tmp}/cvmfs-source {tmp}/cvmfs 2>/dev/null
while [ "$1" != fake.sif ]; do shift; done; shift
exec "$@"
"""


@pytest.mark.parametrize(
    ("fallback", "fake_script", "expected_call"),
    [
        ("cvmfsexec", FAKE_CVMFSEXEC, " atlas.cern.ch -- /bin/bash "),
        ("container", FAKE_APPTAINER, " exec --bind "),
    ],
)
def test_cvmfs_fallback_runs_once_per_node(
    tmp_path: Path, fallback: str, fake_script: str, expected_call: str
) -> None:
    """Native CVMFS missing: the launcher re-runs itself inside the fallback, once per node."""
    make_fake_cvmfs(tmp_path / "cvmfs-source")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / ("cvmfsexec" if fallback == "cvmfsexec" else "apptainer")
    fake.write_text(fake_script.format(tmp=tmp_path))
    fake.chmod(0o755)
    cfg = config(
        tmp_path, cvmfsFallback=fallback, cvmfsexecPath=str(fake), containerImage="fake.sif"
    )
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    _, state, code, summary = run(tmp_path, cfg, worker(tmp_path), env)
    assert (state, code, summary.n_failed) == ("COMPLETED", 0, 0)
    calls = (tmp_path / "fallback.log").read_text().splitlines()
    assert len(calls) == 2 and all(expected_call in c for c in calls)
    via = "cvmfsexec" if fallback == "cvmfsexec" else "apptainer"
    assert {e["HARVESTER_CVMFS_VIA"] for e in pilot_envs(tmp_path / "work")} == {via}


def test_hostile_values_do_not_execute(tmp_path: Path) -> None:
    make_fake_cvmfs(tmp_path / "cvmfs")
    marker = tmp_path / "pwned"
    hostile = {
        "queue": f"$(touch {marker}1)",
        "job_type": f"`touch {marker}2`",
        "resource_type": f"; touch {marker}3 ;",
        "harvester_id": f"h'\"$(touch {marker}4)",
        # no "$" here: a remote dir with "$" is refused before rendering (test_batch_render)
        "work_dir": str(tmp_path / f"work `touch {marker}5` ;touch {marker}6;\"'"),
    }
    cfg = config(
        tmp_path, nNode=1, pilotArgs=[f"'; touch {marker}7; '", f'"$(touch {marker}8)"'],
        pilotVersion=f"1|touch {marker}9", logBaseURL=f"https://x/$(touch {marker}10)",
    )  # fmt: skip
    info = worker(tmp_path, **hostile)
    _, state, code, summary = run(tmp_path, cfg, info)
    assert (state, code, summary.n_pilots, summary.n_failed) == ("COMPLETED", 0, 2, 0)
    assert not list(tmp_path.glob("pwned*"))
    env = pilot_envs(Path(info.work_dir))[0]
    assert env["HARVESTER_QUEUE"] == hostile["queue"]
    assert env["PANDA_JSID"] == "harvester-" + hostile["harvester_id"]
    args = (Path(env["HARVESTER_PILOT_DIR"]) / "args.txt").read_text().splitlines()
    assert f"--job-type=`touch {marker}2`" in args and hostile["resource_type"] in args
    assert f"'; touch {marker}7; '" in args and f'"$(touch {marker}8)"' in args


def test_cancelled_job_still_writes_records_and_summary(tmp_path: Path) -> None:
    make_fake_cvmfs(tmp_path / "cvmfs")
    info = worker(tmp_path)
    job_id = submit(render_batch_script(config(tmp_path), info), tmp_path, {"STUB_SLEEP": "60"})
    deadline = time.monotonic() + 90  # a loaded 2-core machine starts 4 pilots slowly
    while len(pilot_envs(Path(info.work_dir))) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(pilot_envs(Path(info.work_dir))) == 4, "the pilots never all started"
    subprocess.run(["scancel", job_id], env=slurm_env(), check=True, timeout=30)
    state, _ = wait_job(job_id)
    assert state == "CANCELLED"
    summary_file = Path(info.work_dir) / SUMMARY_FILE
    deadline = time.monotonic() + 30  # the summary is rewritten as late end records come in
    while time.monotonic() < deadline:
        if summary_file.exists():
            summary = parse_summary(summary_file.read_text())
            if summary.n_failed == 4:
                break
        time.sleep(0.2)
    summary = parse_summary(summary_file.read_text())
    assert (summary.n_pilots, summary.n_failed) == (4, 4)
    assert {p.exit_code for p in summary.pilots} == {143}
