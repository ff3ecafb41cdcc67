"""The job spec: one worker's batch job, facility-neutral, built once and deterministic.

Every facility gets the same spec and encodes it in its own wire format (``edge/encoders.py``):
the Slurm batch script (SFAPI, Globus Compute batch mode), slurmrestd job JSON (S3M: the
directives as fields, the script kept for the wrapper), the PSI/J job spec (DOE IRI:
``bash -l`` on our wrapper, resources from the parallelism settings).  One place decides nodes,
walltime, account, partition, QOS, constraint and environment: ``build_job_spec``.  The same
worker and config give an identical spec and identical encoded bytes (IRI's idempotency key
only holds for a byte-identical body).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JobSpec:
    #: the job name: the worker's tag (how a job is found again after an ambiguous submit)
    tag: str
    #: the Slurm batch script (our wrapper or the operator's template), ``#SBATCH`` lines
    #: included, job name set to the tag
    script: str
    #: absolute facility-side directory of the worker
    work_dir: str
    nodes: int
    walltime_s: int
    account: str | None = None
    partition: str | None = None
    qos: str | None = None
    constraint: str | None = None
    #: every other ``#SBATCH`` key/value of the script (``None``: a bare flag)
    directives: tuple[tuple[str, str | None], ...] = ()
    #: environment for the job, sorted by name
    environment: tuple[tuple[str, str], ...] = ()
    stdout_path: str = ""
    stderr_path: str = ""
    #: level 1: pilots per node, each with its cores and GPUs
    processes_per_node: int = 1
    cores_per_process: int = 1
    gpus_per_process: int = 0
    memory_mb: int | None = None


def build_job_spec(batch: Any, worker: Any) -> JobSpec:
    """(Replaced on merge by the full builder.)"""
    from .batch import render_batch_script

    script = ensure_tag(render_batch_script(batch, worker), worker.job_name)
    return JobSpec(
        tag=worker.job_name, script=script, work_dir=worker.work_dir, nodes=1, walltime_s=0
    )


_JOB_NAME = re.compile(r"^#SBATCH\s+(?:--job-name[= ]|-J\s*)", re.MULTILINE)


def ensure_tag(script: str, tag: str) -> str:
    if _JOB_NAME.search(script):
        return re.sub(
            r"^#SBATCH\s+(?:--job-name[= ]|-J\s*)\S+.*$",
            f"#SBATCH --job-name={tag}",
            script,
            flags=re.MULTILINE,
        )
    lines = script.split("\n", 1)
    if lines[0].startswith("#!"):
        return f"{lines[0]}\n#SBATCH --job-name={tag}\n{lines[1] if len(lines) > 1 else ''}"
    return f"#!/bin/bash\n#SBATCH --job-name={tag}\n{script}"
