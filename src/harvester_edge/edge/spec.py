"""The job spec: one worker's batch job, facility-neutral, built once and deterministic.

Every facility gets the same spec and encodes it in its own wire format (``edge/encoders.py``):
the Slurm batch script (SFAPI, Globus Compute batch mode), slurmrestd job JSON (S3M: the
directives as fields, the script kept for the wrapper), the PSI/J job spec (DOE IRI:
``bash -l`` on our wrapper, resources from the parallelism settings).  One place decides nodes,
walltime, account, partition, QOS, constraint and environment: ``build_job_spec``.  The same
worker and config give an identical spec and identical encoded bytes (IRI's idempotency key
only holds for a byte-identical body).

How it decides: queue config and worker give the template context (``edge/script.py``), the
script is rendered from it exactly as SFAPI has always sent it, and the spec then describes
what that script asks of Slurm: its ``#SBATCH`` header as sbatch reads it
(``edge/sbatch_header.py``).  For our template the header *is* the config's directive list;
for an operator's template it is what the template wrote, and nodes, time, account, partition,
QOS and constraint it leaves out come from config.  So S3M and IRI run the job SFAPI would.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import cast

from ..errors import EdgeConfigError
from .batch_config import BatchConfig
from .directives import directive_pairs
from .render import render
from .sbatch_header import ensure_tag, memory_mb, node_count, read_header, time_minutes
from .script import build_context, read_template
from .worker import WorkerInfo

__all__ = ["JobSpec", "build_job_spec", "ensure_tag"]

#: Header keys that have their own spec field (never repeated in ``directives``).
_OWN_FIELDS = frozenset(
    "job-name nodes time account partition qos constraint output error mem".split()
)


@dataclass(frozen=True)
class JobSpec:
    """One worker's batch job, as every facility must run it (see the module docstring)."""

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
    #: an existing facility directory to start the job in: ``work_dir`` is made by the script
    #: itself, and Slurm fails a job whose output directory is missing before it starts
    submit_dir: str = ""
    #: why the script's ``#SBATCH`` header could not be read as fields (None: it was); the
    #: script still goes to sbatch as it is, the field-based encoders refuse the spec
    header_problem: str | None = None


def build_job_spec(batch: BatchConfig, worker: WorkerInfo) -> JobSpec:
    """The job spec of one worker; its ``script`` is what sbatch gets (SFAPI adds only an
    ``#SBATCH --output`` line naming ``stdout_path`` when the script names no output).

    Values the renderer refuses (a newline in a worker field, a bad ``jobName`` or work dir)
    raise the renderer's errors here.  ``walltime_s`` is in whole minutes (Slurm's unit, 0 =
    none asked); ``stdout_path``/``stderr_path`` are the script's ``-o``/``-e``, else one
    ``<submit_dir>/<tag>.out`` for both (sbatch, too, joins stderr to stdout by default);
    ``memory_mb`` is the script's ``--mem`` (None: not asked, e.g. whole nodes); the job-level
    ``environment`` is empty, as the wrapper exports everything the pilots need.  A header
    that cannot be read (an operator's template sbatch would refuse) does not stop the
    script: the spec then holds config values and ``header_problem``, which the field-based
    encoders refuse.
    """
    ctx = build_context(batch, worker)
    tag = worker.job_name
    script = ensure_tag(render(read_template(batch), ctx), tag)
    n_node = cast(int, ctx["nNode"])
    minutes = cast(int, ctx["requestWalltimeMinute"])
    decided = dict(directive_pairs(batch, n_node, minutes))
    base = JobSpec(
        tag=tag,
        script=script,
        work_dir=worker.work_dir,
        nodes=n_node,
        walltime_s=minutes * 60,
        account=decided.get("account"),
        partition=decided.get("partition"),
        qos=decided.get("qos"),
        constraint=decided.get("constraint"),
        stdout_path=f"{batch.base_dir.rstrip('/')}/{tag}.out",
        stderr_path=f"{batch.base_dir.rstrip('/')}/{tag}.out",
        processes_per_node=batch.pilots_per_node,
        cores_per_process=batch.cores_per_pilot,
        gpus_per_process=batch.gpus_per_pilot,
        submit_dir=batch.base_dir,
    )
    try:
        return _with_header(base, dict(read_header(script)))
    except EdgeConfigError as exc:
        return dataclasses.replace(base, header_problem=str(exc))


def _with_header(spec: JobSpec, header: dict[str, str | None]) -> JobSpec:
    """``spec`` (config's decision) updated with what the script's header asks of Slurm."""
    stdout = header.get("output") or spec.stdout_path
    minutes = time_minutes(header["time"] or "") if "time" in header else spec.walltime_s // 60
    return dataclasses.replace(
        spec,
        nodes=node_count(header["nodes"] or "") if "nodes" in header else spec.nodes,
        walltime_s=(minutes or 0) * 60,
        account=header.get("account") or spec.account,
        partition=header.get("partition") or spec.partition,
        qos=header.get("qos") or spec.qos,
        constraint=header.get("constraint") or spec.constraint,
        directives=tuple((k, v) for k, v in header.items() if k not in _OWN_FIELDS),
        stdout_path=stdout,
        stderr_path=header.get("error") or (stdout if "output" in header else spec.stderr_path),
        memory_mb=memory_mb(header["mem"] or "") if "mem" in header else None,
    )
