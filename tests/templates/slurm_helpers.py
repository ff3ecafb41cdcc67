"""Submit rendered scripts to the local test Slurm cluster and build fake CVMFS trees.

Plain ``sbatch``/``sacct`` subprocesses (no shell), short poll loops with a deadline, so a
stuck job fails one test instead of hanging the suite.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from harvester_edge.localsite.fake_cvmfs import (  # noqa: F401 (re-exported for the tests)
    SETUP_IN_REPO,
    STUB_PILOT,
    WRAPPER_IN_REPO,
    make_fake_cvmfs,
)

DEFAULT_SLURM_CONF = "/tmp/hedge-slurm/etc/slurm.conf"
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                "PREEMPTED", "BOOT_FAIL", "DEADLINE")  # fmt: skip


def slurm_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test process's environment with SLURM_CONF set (sbatch exports it to the job)."""
    env = dict(os.environ)
    env.setdefault("SLURM_CONF", DEFAULT_SLURM_CONF)
    env.update(extra or {})
    return env


def slurm_available() -> bool:
    """True when ``sinfo`` answers within a few seconds."""
    try:
        result = subprocess.run(
            ["sinfo", "-h"], env=slurm_env(), capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def submit(script_text: str, directory: Path, env: dict[str, str] | None = None) -> str:
    """Write the script into ``directory`` and sbatch it from there; returns the job id."""
    script = directory / "job.sh"
    script.write_text(script_text)
    result = subprocess.run(
        ["sbatch", "--parsable", str(script)],
        cwd=directory, env=slurm_env(env), capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"sbatch failed: {result.stderr}"
    return result.stdout.strip().split(";")[0]


def wait_job(job_id: str, deadline_s: float = 60.0) -> tuple[str, int]:
    """Poll sacct until the job is final; returns (State, exit code of the job)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        result = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-j", job_id, "--format=JobID,State,ExitCode"],
            env=slurm_env(), capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        for line in result.stdout.splitlines():
            jid, state, code = line.split("|")
            if jid == job_id and state.split()[0] in FINAL_STATES:
                return state.split()[0], int(code.split(":")[0])
        time.sleep(0.5)
    subprocess.run(["scancel", job_id], env=slurm_env(), check=False, timeout=30)
    raise AssertionError(f"job {job_id} not finished after {deadline_s} s")


def read_env(path: Path) -> dict[str, str]:
    """The stub pilot's ``env.txt`` as a dict (values are single-line in these tests)."""
    env = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            env[key] = value
    return env
