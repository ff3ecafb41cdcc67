"""Wire formats of a job spec: the Slurm script, slurmrestd job JSON, the PSI/J job spec.

Each encoder is a pure function of the spec (no clock, no config, no I/O), so the same spec
always gives the same body, and :func:`canonical_json` gives the same bytes: IRI v2's
``Idempotency-Key`` only answers "same job" for the same body.

- :func:`slurm_script` — the script itself (SFAPI, Globus Compute batch mode): sbatch reads its
  ``#SBATCH`` lines.
- :func:`slurmrestd_job` — S3M's "Slurm indirect" body (slurmrestd ``job_desc_msg``, v0.0.40
  and later: ``time_limit`` and the other counters are ``{number, set, infinite}`` structs).
  slurmrestd never reads ``#SBATCH`` lines, so every directive it has a field for is carried
  as that field; the few it has none for (NERSC's ``--module``, ...) stay in the script only
  and are listed by :func:`slurmrestd_unmapped` so a client can say so.
- :func:`psij_job_spec` — DOE IRI's PSI/J-style JobSpec.  It has no script field and forbids
  unknown fields: the script goes inline as ``bash -l -c <script>`` (IRI starts the
  executable in a non-login shell; ``-l`` gives the login environment sbatch users expect),
  only fields of the IRI v1/v2 JobSpec are sent, and a field with no value is left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from ..errors import EdgeConfigError
from .sbatch_header import memory_mb, time_minutes
from .spec import JobSpec

__all__ = [
    "canonical_json",
    "psij_job_spec",
    "slurm_script",
    "slurmrestd_job",
    "slurmrestd_unmapped",
]

#: The environment slurmrestd gets when the spec has none (it refuses a job without one).
DEFAULT_REST_ENVIRONMENT = ("PATH=/usr/bin:/bin",)
_API_VERSION = re.compile(r"v0\.0\.(\d+)\Z")
_SIGNAL = re.compile(r"(?:([RB]):)?([A-Za-z0-9]+)(?:@(\d+))?\Z")


def slurm_script(spec: JobSpec) -> str:
    """The batch script for sbatch (SFAPI, Globus Compute batch mode): the spec's own."""
    return spec.script


def canonical_json(obj: Any) -> bytes:
    """``obj`` as JSON with sorted keys and no spaces, UTF-8: the same value, the same bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _no_val(number: int) -> dict[str, Any]:
    """slurmrestd's "no val" struct for a set, finite number."""
    return {"number": number, "set": True, "infinite": False}


def _gres(value: str | None) -> str:
    """``gpu:4`` / ``gpu:a100:4,nic:1`` as slurmrestd TRES: ``gres/gpu:4,...``."""
    return ",".join(f"gres/{item}" for item in (value or "").split(",") if item)


def _signal(value: str | None) -> dict[str, Any]:
    """``--signal=[{R|B}:]<sig>[@<time>]`` as slurmrestd's kill_warning fields (sbatch: 60 s)."""
    match = _SIGNAL.match(value or "")
    if not match:
        raise EdgeConfigError(f"#SBATCH --signal={value!r} is not [R:|B:]<signal>[@<seconds>]")
    scope, signal, delay = match.groups()
    fields: dict[str, Any] = {
        "kill_warning_signal": signal,
        "kill_warning_delay": _no_val(int(delay) if delay else 60),
    }
    if scope:
        fields["kill_warning_flags"] = ["BATCH_JOB" if scope == "B" else "RESERVATION_JOB"]
    return fields


def _integer(field: str) -> Callable[[str | None], dict[str, Any]]:
    def convert(value: str | None) -> dict[str, Any]:
        if not (value or "").isdigit():
            raise EdgeConfigError(f"#SBATCH value {value!r} for {field} is not a whole number")
        return {field: int(value or "0")}

    return convert


def _text(field: str) -> Callable[[str | None], dict[str, Any]]:
    return lambda value: {field: value or ""}


def _memory_per_cpu(value: str | None) -> dict[str, Any]:
    mb = memory_mb(value or "")
    return {"memory_per_cpu": _no_val(mb)} if mb else {}


def _time_minimum(value: str | None) -> dict[str, Any]:
    minutes = time_minutes(value or "")
    return {"time_minimum": _no_val(minutes)} if minutes else {}


#: ``#SBATCH`` keys slurmrestd has a field for, and how each becomes that field.
_REST_FIELDS: dict[str, Callable[[str | None], dict[str, Any]]] = {
    "gpus-per-node": lambda v: {"tres_per_node": _gres(f"gpu:{v}")},
    "gpus": lambda v: {"tres_per_job": _gres(f"gpu:{v}")},
    "gres": lambda v: {"tres_per_node": _gres(v)},
    "signal": _signal,
    "requeue": lambda v: {"requeue": True},
    "no-requeue": lambda v: {"requeue": False},
    "cpus-per-task": _integer("cpus_per_task"),
    "ntasks-per-node": _integer("tasks_per_node"),
    "ntasks": _integer("tasks"),
    "mem-per-cpu": _memory_per_cpu,
    "time-min": _time_minimum,
    "exclusive": lambda v: {"shared": ["none" if v in (None, "exclusive") else v]},
    "chdir": _text("current_working_directory"),
    "reservation": _text("reservation"),
    "comment": _text("comment"),
    "licenses": _text("licenses"),
    "wckey": _text("wckey"),
}


def slurmrestd_unmapped(spec: JobSpec) -> tuple[str, ...]:
    """Directives slurmrestd has no field for: they reach Slurm only if the script runs sbatch."""
    return tuple(key for key, _ in spec.directives if key not in _REST_FIELDS)


def _fields_of(spec: JobSpec) -> JobSpec:
    """``spec`` if its directives could be read as fields, else an error saying why."""
    if spec.header_problem:
        raise EdgeConfigError(
            f"job {spec.tag}: the script's #SBATCH header cannot be sent as fields: "
            f"{spec.header_problem}"
        )
    return spec


def _rest_description(spec: JobSpec) -> dict[str, Any]:
    _fields_of(spec)
    environment = [f"{name}={value}" for name, value in spec.environment]
    job: dict[str, Any] = {
        "name": spec.tag,
        "account": spec.account,
        "partition": spec.partition,
        "qos": spec.qos,
        "constraints": spec.constraint,
        "minimum_nodes": spec.nodes,
        "maximum_nodes": spec.nodes,
        "tasks": spec.nodes,  # the batch script is one task per node; srun starts the pilots
        "time_limit": _no_val(spec.walltime_s // 60) if spec.walltime_s else None,
        "current_working_directory": spec.submit_dir or spec.work_dir,
        "environment": environment or list(DEFAULT_REST_ENVIRONMENT),
        "standard_output": spec.stdout_path or None,
        "standard_error": spec.stderr_path or None,
        "memory_per_node": _no_val(spec.memory_mb) if spec.memory_mb else None,
    }
    keys = {key for key, _ in spec.directives}
    for key, value in spec.directives:
        convert = _REST_FIELDS.get(key)
        if convert is None:  # see slurmrestd_unmapped: the script still has it
            continue
        for field, converted in convert(value).items():
            if field.startswith("tres_per_") and field in job:  # --gres and --gpus-per-node
                converted = f"{job[field]},{converted}"
            job[field] = converted
    if "tasks_per_node" in job and "ntasks" not in keys:  # as sbatch: -N 2 --ntasks-per-node=4
        job["tasks"] = spec.nodes * job["tasks_per_node"]
    return {key: value for key, value in job.items() if value is not None}


def slurmrestd_job(
    spec: JobSpec, api_version: str = "v0.0.43", form: str = "job"
) -> dict[str, Any]:
    """slurmrestd's ``job/submit`` body: ``{"job": {..., "script"}}``, or with ``form="jobs"``
    (v0.0.44 and later) ``{"script", "jobs": [{...}]}``; never both ``job`` and ``jobs``."""
    match = _API_VERSION.match(api_version)
    if not match or int(match.group(1)) < 40:
        raise EdgeConfigError(
            f"slurmrestd API version {api_version!r}: v0.0.40 or later is needed "
            "(time_limit as a {number, set, infinite} struct)"
        )
    if form == "job":
        return {"job": {**_rest_description(spec), "script": spec.script}}
    if form == "jobs":
        if int(match.group(1)) < 44:
            raise EdgeConfigError(
                f"slurmrestd form 'jobs' needs API v0.0.44 or later (got {api_version}); "
                "use form 'job'"
            )
        return {"script": spec.script, "jobs": [_rest_description(spec)]}
    raise EdgeConfigError(f"slurmrestd form must be 'job' or 'jobs' (got {form!r})")


#: Directives the PSI/J spec already carries in ``resources`` (not repeated as custom ones).
_PSIJ_RESOURCES = frozenset({"ntasks-per-node", "cpus-per-task", "gpus-per-node"})


def psij_job_spec(spec: JobSpec) -> dict[str, Any]:
    """IRI's PSI/J-style JobSpec (v1 and v2 fields only; keys without a value left out).

    ``custom_attributes`` carries QOS, constraint and the script's other ``key=value``
    directives (each facility decides what it honours); bare flags (``--no-requeue``) have no
    string value there and stay in the script only, like resources already in ``resources``.
    """
    _fields_of(spec)
    resources: dict[str, Any] = {
        "node_count": spec.nodes,
        "processes_per_node": spec.processes_per_node,
        "cpu_cores_per_process": spec.cores_per_process,
        "gpu_cores_per_process": spec.gpus_per_process or None,  # the spec's minimum is 1
        "exclusive_node_use": True,
        "memory": spec.memory_mb * 2**20 if spec.memory_mb else None,
    }
    custom = {"qos": spec.qos, "constraint": spec.constraint}
    custom.update(
        (key, value)
        for key, value in spec.directives
        if key not in _PSIJ_RESOURCES and value is not None  # a bare flag has no string value
    )
    attributes: dict[str, Any] = {
        "duration": spec.walltime_s or None,
        "queue_name": spec.partition,
        "account": spec.account,
        "custom_attributes": {k: v for k, v in custom.items() if v is not None},
    }
    body: dict[str, Any] = {
        "name": spec.tag,
        "executable": "bash",
        "arguments": ["-l", "-c", spec.script],
        "directory": spec.submit_dir or spec.work_dir,
        "stdout_path": spec.stdout_path or None,
        "stderr_path": spec.stderr_path or None,
        "environment": dict(spec.environment),
        "resources": {k: v for k, v in resources.items() if v is not None},
        "attributes": {k: v for k, v in attributes.items() if v is not None},
    }
    return {k: v for k, v in body.items() if v is not None}
