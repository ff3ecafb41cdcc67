"""slurmrestd's data model over the local Slurm CLI, for the loopback S3M gateway.

OLCF S3M's compute API is "Slurm indirect": slurmrestd's JSON (data parser v0.0.42 to
v0.0.44) relayed per resource.  This module does the Slurm half of that without slurmrestd
(which 22.05 ships only up to v0.0.38, and which refuses to run as root):

- :func:`plan_submit` checks a ``job/submit`` body as slurmrestd's parser would and turns the
  job description into ``sbatch`` options (``--name=value`` items only; the script goes to
  sbatch on stdin, never through a shell);
- :func:`facts_from_squeue` (22.05 ``squeue --json``) and :func:`facts_from_sacct` (``sacct
  -P`` with ``SLURM_TIME_FORMAT=%s``, which, unlike 22.05's ``sacct --json``, keeps exit
  codes) read a job into :class:`JobFacts`;
- :func:`ctld_job` renders the slurmctld shape of ``GET .../jobs`` (``job_state: [..]``,
  ``state_reason``), :func:`db_job` the slurmdb shape of ``GET .../job/{id}``
  (``state{current, reason}``, ``time{...}``); both carry ``exit_code`` as slurmrestd's
  ``{status: [..], return_code: {set, infinite, number}, signal: {id, name}}``;
- :func:`slurm_error` builds slurmrestd's error items, :data:`SLURM_ERRORS` holds the
  22.05 error texts the gateway can answer with (``slurm_strerror``).
"""

from __future__ import annotations

import os
import pwd
import re
import signal as signals
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Slurm's error texts (22.05 ``slurm_strerror``) for the numbers the gateway answers with.
SLURM_ERRORS: dict[int, str] = {
    -1: "Unspecified error",
    1001: "Communication connection failure",
    1800: "Unable to contact slurm controller (connect failure)",
    1801: "Unable to contact slurm controller (send failure)",
    1802: "Unable to contact slurm controller (receive failure)",
    2000: "Invalid partition name specified",
    2001: "No partition specified or system default partition",
    2002: "Access/permission denied",
    2004: "Requested nodes not in this partition",
    2005: "More processors requested than permitted",
    2006: "Node count specification invalid",
    2008: "Job size specification needs to be provided",
    2009: "Job script not specified",
    2010: "Invalid user id",
    2014: "Requested node configuration is not available",
    2015: "Requested partition configuration not available now",
    2016: "Requested nodes are busy",
    2017: "Invalid job id specified",
    2021: "Job/step already completing or completed",
    2023: "Task distribution specification invalid",
    2024: "Job is pending execution",
    2025: "Task count specification invalid",
    2029: "Invalid feature specification",
    2038: "Job dependency problem",
    2041: "Requested more tasks than available processors",
    2044: "Memory required by task is not available",
    2045: "Invalid account or account/partition combination specified",
    2048: "Invalid license specification",
    2050: "Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)",
    2051: "Requested time limit is invalid (missing or exceeds some limit)",
    2052: "Access denied to requested reservation",
    2053: "Requested reservation is invalid",
    2057: "Invalid wckey specification",
    2066: "Invalid qos specification",
    2068: "Required node not available (down, drained or reserved)",
    2069: "CPU count specification invalid",
    2070: "Required partition not available (inactive or drain)",
    2072: "Invalid generic resource (gres) specification",
    2073: "Job is no longer pending execution",
    2074: "Requested account has breached requested QOS usage threshold",
    2081: "Invalid job array specification",
    2101: "Partition in DOWN state",
    2105: "System submissions disabled",
    2115: "Invalid Trackable RESource (TRES) specification",
    2124: "Invalid time-min specification (exceeds job's time or other limits)",
    2127: "Environment is missing in job",
    5004: "Socket timed out on send/recv operation",
    9000: "Query empty or not RFC7320 compliant",
    9001: "Failure during parsing",
    9002: "Jobs description entry not found, empty or not dictionary or list",
    9003: "Nothing found with query",
}
_ERRNO_BY_TEXT = {text.lower(): number for number, text in SLURM_ERRORS.items()}

ESLURM_REST_INVALID_QUERY = 9000
ESLURM_REST_FAIL_PARSING = 9001
ESLURM_INVALID_JOB_ID = 2017
ESLURM_ALREADY_DONE = 2021

#: HTTP status of a slurmrestd error number (slurmrestd's operations router, 24.x/25.x);
#: every other error is 500.
_HTTP_OF_ERRNO = {
    ESLURM_REST_INVALID_QUERY: 422,
    ESLURM_REST_FAIL_PARSING: 400,
    9002: 400,
    ESLURM_INVALID_JOB_ID: 404,
    1001: 502,
    1800: 502,
    1801: 502,
    1802: 502,
    5004: 504,
}

_INFINITE32 = 0xFFFFFFFF
_NO_VAL32 = 0xFFFFFFFE
_UNSET_TIME = ("", "Unknown", "None", "INVALID")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_VERSION = re.compile(r"v0\.0\.(\d+)\Z")


def http_status_of(errno: int) -> int:
    """The HTTP status slurmrestd answers an error number with."""
    return _HTTP_OF_ERRNO.get(errno, 500)


def slurm_error(errno: int, description: str, source: str) -> dict[str, Any]:
    """One item of slurmrestd's ``errors``: ``{description, error_number, error, source}``."""
    return {
        "description": description,
        "error_number": errno,
        "error": SLURM_ERRORS.get(errno, "Unspecified error"),
        "source": source,
    }


def errno_of_message(message: str) -> tuple[int, str]:
    """``(error number, Slurm's reason)`` of an sbatch/scancel failure message.

    sbatch prints ``sbatch: error: Batch job submission failed: <slurm_strerror>``; scancel
    ``scancel: error: Kill job error on job id N: <slurm_strerror>``.  The reason is looked
    up among Slurm's error texts; -1 when none matches (a client-side sbatch check).
    """
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    reasons = []
    for line in lines:
        text = re.sub(r"^\S+: error: ", "", line)
        text = re.sub(r"^(Batch job submission failed|Kill job error on job id \S+): ", "", text)
        reasons.append(text)
        number = _ERRNO_BY_TEXT.get(text.lower())
        if number is not None:
            return number, text
    return -1, reasons[-1] if reasons else message.strip()


def api_minor(version: str) -> int:
    """44 for ``v0.0.44``; ValueError for anything else."""
    match = _VERSION.match(version)
    if not match:
        raise ValueError(f"not a slurmrestd API version: {version!r}")
    return int(match.group(1))


# ---------------------------------------------------------------------- "no val" structs
def no_val(number: float | None, *, infinite: bool = False) -> dict[str, Any]:
    """slurmrestd's ``{set, infinite, number}``; None = not set."""
    if infinite:
        return {"set": True, "infinite": True, "number": 0}
    if number is None:
        return {"set": False, "infinite": False, "number": 0}
    return {"set": True, "infinite": False, "number": number}


def _raw32(value: Any) -> dict[str, Any]:
    """A 22.05 JSON number (null, INFINITE and NO_VAL included) as a no-val struct."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return no_val(None)
    if value == _INFINITE32:
        return no_val(None, infinite=True)
    if value == _NO_VAL32:
        return no_val(None)
    return no_val(value)


def exit_code_verbose(raw: int | None) -> dict[str, Any]:
    """slurmrestd's ``process_exit_code_verbose`` of a wait status (None = not known yet)."""
    unset = no_val(None)
    if raw is None or raw in (_NO_VAL32, _INFINITE32):
        return {"status": ["PENDING"], "return_code": unset, "signal": {"id": unset, "name": ""}}
    sig = raw & 0x7F
    if sig == 0:
        code = (raw >> 8) & 0xFF
        return {
            "status": ["SUCCESS" if code == 0 else "ERROR"],
            "return_code": no_val(code),
            "signal": {"id": unset, "name": ""},
        }
    status = "CORE_DUMPED" if raw & 0x80 else "SIGNALED"
    return {
        "status": [status],
        "return_code": unset,
        "signal": {"id": no_val(sig), "name": _signal_name(sig)},
    }


def _signal_name(number: int) -> str:
    try:
        return signals.Signals(number).name.removeprefix("SIG")
    except ValueError:
        return ""


def wait_status(text: str) -> int | None:
    """sacct's ``exitcode:signal`` (``3:0``, ``0:15``) as a wait status."""
    match = re.fullmatch(r"\s*(\d+):(\d+)\s*", text or "")
    if not match:
        return None
    code, sig = int(match.group(1)), int(match.group(2))
    return sig if sig else (code & 0xFF) << 8


# ---------------------------------------------------------------------- submit
class SubmitRefused(Exception):
    """A ``job/submit`` body refused before sbatch runs: slurmrestd's error, HTTP status."""

    def __init__(self, errno: int, description: str, source: str, status: int | None = None):
        super().__init__(description)
        self.errno = errno
        self.description = description
        self.source = source
        self.status = status if status is not None else http_status_of(errno)

    def error(self) -> dict[str, Any]:
        return slurm_error(self.errno, self.description, self.source)


@dataclass
class SubmitPlan:
    """What sbatch gets for one ``job/submit`` body."""

    script: str
    options: list[str]
    environment: dict[str, str]
    cwd: str
    account: str = ""
    warnings: list[dict[str, Any]] = field(default_factory=list)


def _parse_error(path: str, what: str) -> SubmitRefused:
    return SubmitRefused(ESLURM_REST_FAIL_PARSING, f"{path}: {what}", "DATA_PARSE")


def _text(path: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _parse_error(path, "expected a string")
    if "\0" in value:
        raise _parse_error(path, "NUL character in string")
    return value


def _boolean(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _parse_error(path, "expected true or false")
    return value


def _count(path: str, value: Any) -> int | None:
    """A non-negative whole number, plain or as a no-val struct; None = unset, -1 = infinite."""
    if isinstance(value, dict):
        unknown = set(value) - {"set", "infinite", "number"}
        if unknown:
            raise _parse_error(path, f"unknown no-val field(s) {sorted(unknown)}")
        if value.get("infinite") is True:
            return -1
        if value.get("set") is False:
            return None
        value = value.get("number")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _parse_error(path, "expected a non-negative integer or {set, infinite, number}")
    return value


def _strings(path: str, value: Any) -> list[str]:
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise _parse_error(path, "expected a list of strings")


def _environment(path: str, value: Any) -> dict[str, str]:
    items: list[tuple[str, str]] = []
    if isinstance(value, dict):
        items = [(str(k), _text(f"{path}.{k}", v)) for k, v in value.items()]
    elif isinstance(value, list):
        for n, entry in enumerate(value):
            name, sep, rest = _text(f"{path}[{n}]", entry).partition("=")
            if not sep:
                raise _parse_error(f"{path}[{n}]", "expected NAME=value")
            items.append((name, rest))
    elif value is not None:
        raise _parse_error(path, "expected a list of NAME=value strings")
    for name, _ in items:
        if not _ENV_NAME.match(name):
            raise _parse_error(path, f"invalid environment variable name {name[:40]!r}")
    return dict(items)


#: job_desc_msg string fields passed to sbatch as ``--option=value``.
_STRING_OPTIONS = {
    "name": "job-name",
    "account": "account",
    "partition": "partition",
    "qos": "qos",
    "constraints": "constraint",
    "comment": "comment",
    "reservation": "reservation",
    "licenses": "licenses",
    "wckey": "wckey",
    "dependency": "dependency",
    "standard_output": "output",
    "standard_error": "error",
    "standard_input": "input",
    "array": "array",
    "mail_user": "mail-user",
    "cluster_constraint": "cluster-constraint",
}
#: job_desc_msg count fields passed as ``--option=N``.
_COUNT_OPTIONS = {
    "tasks": "ntasks",
    "tasks_per_node": "ntasks-per-node",
    "cpus_per_task": "cpus-per-task",
    "nice": "nice",
}
#: Fields accepted and handled elsewhere (or meaningless here).
_HANDLED = {
    "script",
    "environment",
    "current_working_directory",
    "minimum_nodes",
    "maximum_nodes",
    "time_limit",
    "time_minimum",
    "memory_per_node",
    "memory_per_cpu",
    "tres_per_node",
    "tres_per_job",
    "requeue",
    "hold",
    "shared",
    "kill_warning_signal",
    "kill_warning_delay",
    "kill_warning_flags",
    "mail_type",
    "begin_time",
}
_SHARED = {
    "none": "--exclusive",
    "user": "--exclusive=user",
    "mcs": "--exclusive=mcs",
    "oversubscribe": "--oversubscribe",
    "topo": "--exclusive=topo",
}


def _time_option(path: str, value: Any, option: str) -> list[str]:
    minutes = None if value is None else _count(path, value)
    if minutes is None:
        return []
    return [f"--{option}=UNLIMITED" if minutes == -1 else f"--{option}={minutes}"]


def _tres(path: str, value: Any, warnings: list[dict[str, Any]], option: str) -> list[str]:
    """``gres/gpu:4,gres/nic:1``: GPUs are dropped (the loopback cluster has none); the rest
    go to sbatch, which refuses gres the cluster does not know, as Slurm would."""
    kept = []
    for item in _strings(path, value):
        name = item.removeprefix("gres/")
        if name.split(":", 1)[0] == "gpu":
            warnings.append(_warning(f"{path}: {item} dropped (the loopback cluster has no GPUs)"))
        else:
            kept.append(name)
    return [f"--{option}={','.join(kept)}"] if kept else []


def _kill_warning(job: Mapping[str, Any], path: str) -> list[str]:
    if "kill_warning_signal" not in job:
        return []
    sig = _text(f"{path}.kill_warning_signal", job["kill_warning_signal"]).upper()
    sig = sig.removeprefix("SIG")
    if not re.fullmatch(r"[A-Z0-9]+", sig):
        raise _parse_error(f"{path}.kill_warning_signal", "expected a signal name or number")
    delay = _count(f"{path}.kill_warning_delay", job.get("kill_warning_delay", 60))
    flags = _strings(f"{path}.kill_warning_flags", job.get("kill_warning_flags", []))
    scope = "B:" if "BATCH_JOB" in flags else "R:" if "RESERVATION_JOB" in flags else ""
    when = f"@{delay}" if delay not in (None, -1) else ""
    return [f"--signal={scope}{sig}{when}"]


def _warning(description: str, source: str = "s3m-loopback") -> dict[str, Any]:
    return {"description": description, "source": source}


def _job_options(
    job: Mapping[str, Any], path: str, default_cwd: str
) -> tuple[list[str], dict[str, str], str, list[dict[str, Any]]]:
    """sbatch options, environment, working directory and warnings of one job description."""
    warnings: list[dict[str, Any]] = []
    options: list[str] = []
    for key, value in job.items():
        if value is None:
            continue
        if key in _STRING_OPTIONS:
            options.append(f"--{_STRING_OPTIONS[key]}={_text(f'{path}.{key}', value)}")
        elif key in _COUNT_OPTIONS:
            number = _count(f"{path}.{key}", value)
            if number is not None and number != -1:
                options.append(f"--{_COUNT_OPTIONS[key]}={number}")
        elif key not in _HANDLED:
            warnings.append(
                _warning(f"{path}.{key}: not supported by the loopback gateway, ignored")
            )
    low = _count(f"{path}.minimum_nodes", job["minimum_nodes"]) if "minimum_nodes" in job else None
    high = _count(f"{path}.maximum_nodes", job["maximum_nodes"]) if "maximum_nodes" in job else None
    if low not in (None, -1) or high not in (None, -1):
        first = low if low not in (None, -1) else 1
        options.append(
            f"--nodes={first}-{high}" if high not in (None, -1, first) else f"--nodes={first}"
        )
    options += _time_option(f"{path}.time_limit", job.get("time_limit"), "time")
    options += _time_option(f"{path}.time_minimum", job.get("time_minimum"), "time-min")
    for key, option in (("memory_per_node", "mem"), ("memory_per_cpu", "mem-per-cpu")):
        mb = _count(f"{path}.{key}", job[key]) if key in job else None
        if mb not in (None, -1):
            options.append(f"--{option}={mb}M")
    if "tres_per_node" in job:
        options += _tres(f"{path}.tres_per_node", job["tres_per_node"], warnings, "gres")
    if "tres_per_job" in job:
        options += _tres(f"{path}.tres_per_job", job["tres_per_job"], warnings, "gpus")
    if "requeue" in job:
        options.append(
            "--requeue" if _boolean(f"{path}.requeue", job["requeue"]) else "--no-requeue"
        )
    if job.get("hold") is not None and _boolean(f"{path}.hold", job["hold"]):
        options.append("--hold")
    for mode in _strings(f"{path}.shared", job.get("shared") or []):
        if mode not in _SHARED:
            raise _parse_error(f"{path}.shared", f"unknown sharing mode {mode[:20]!r}")
        options.append(_SHARED[mode])
    if job.get("mail_type"):
        kinds = [k.upper() for k in _strings(f"{path}.mail_type", job["mail_type"])]
        if not all(re.fullmatch(r"[A-Z_0-9]+", k) for k in kinds):
            raise _parse_error(f"{path}.mail_type", "expected mail type names")
        options.append(f"--mail-type={','.join(kinds)}")
    if job.get("begin_time") is not None:
        begin = _count(f"{path}.begin_time", job["begin_time"])
        if begin not in (None, -1):
            options.append("--begin=" + time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(begin)))
    options += _kill_warning(job, path)
    environment = _environment(f"{path}.environment", job.get("environment"))
    cwd = default_cwd
    if job.get("current_working_directory") is not None:
        cwd = _text(f"{path}.current_working_directory", job["current_working_directory"])
        if not cwd.startswith("/"):
            raise _parse_error(f"{path}.current_working_directory", "expected an absolute path")
    options.append(f"--chdir={cwd}")
    return options, environment, cwd, warnings


def plan_submit(body: Any, version: str, default_cwd: str) -> SubmitPlan:
    """Check a ``job/submit`` body like slurmrestd and plan its sbatch call, or SubmitRefused.

    - exactly one of ``job`` (a dict) and ``jobs`` (a list; v0.0.44 and later here, and
      one component: the loopback gateway runs no heterogeneous jobs);
    - a populated script: the body's ``script`` (wins, as in slurmrestd) or the job's;
    - an environment (Slurm refuses a batch job without one: 2127, HTTP 500);
    - a script starting with ``#!`` (sbatch's own check; HTTP 500 with 2009 here).
    """
    if not isinstance(body, dict) or not body:
        raise SubmitRefused(
            ESLURM_REST_INVALID_QUERY, "unexpected empty query for job", "_job_post"
        )
    has_job, has_jobs = body.get("job") is not None, body.get("jobs") is not None
    if has_job and has_jobs:
        raise SubmitRefused(
            ESLURM_REST_INVALID_QUERY,
            'Specify only one "job" or "jobs" fields but never both',
            "_job_post",
        )
    if not has_job and not has_jobs:
        raise SubmitRefused(
            ESLURM_REST_INVALID_QUERY,
            'Specifing either "job" or "jobs" fields are required to job submission',
            "_job_post",
        )
    if has_jobs:
        if api_minor(version) < 44:
            raise SubmitRefused(
                ESLURM_REST_INVALID_QUERY,
                f'"jobs" needs API v0.0.44 or later on this gateway (got {version}); use "job"',
                "_job_post",
            )
        jobs = body["jobs"]
        if not isinstance(jobs, list) or not jobs or not all(isinstance(j, dict) for j in jobs):
            raise SubmitRefused(9002, '"jobs" must be a list of job descriptions', "_job_post")
        if len(jobs) > 1:
            raise SubmitRefused(
                ESLURM_REST_INVALID_QUERY,
                "heterogeneous jobs (more than one component) are not run by the loopback gateway",
                "_job_post_het_submit",
            )
        job, path = jobs[0], "jobs[0]"
    else:
        job, path = body["job"], "job"
        if not isinstance(job, dict):
            raise SubmitRefused(
                9002, '"job" field must be a dictionary with job properties', "_job_post"
            )
    unknown = set(body) - {"job", "jobs", "script"}
    script = body.get("script")
    if script is None:
        script = job.get("script")
    if script is not None:
        script = _text("script", script)
    if not script:
        raise SubmitRefused(
            ESLURM_REST_INVALID_QUERY,
            'Populated "script" field is required for job submission',
            "_job_post",
        )
    options, environment, cwd, warnings = _job_options(job, path, default_cwd)
    warnings[:0] = [_warning(f"{k}: unknown field, ignored") for k in sorted(unknown)]
    if not environment:
        raise SubmitRefused(2127, "Batch job submission failed", "slurm_submit_batch_job()")
    if not script.startswith("#!"):
        raise SubmitRefused(
            2009,
            "Batch job submission failed: the script must start with #! (sbatch: This does "
            "not look like a batch script)",
            "slurm_submit_batch_job()",
        )
    account = job.get("account") or ""
    return SubmitPlan(script, options, environment, cwd, str(account), warnings)


# ---------------------------------------------------------------------- job records
@dataclass
class JobFacts:
    """One job as both record shapes need it, read from squeue or sacct."""

    job_id: int
    name: str = ""
    state: str = "UNKNOWN"
    reason: str = "None"
    exit_raw: int | None = None
    derived_raw: int | None = None
    account: str = ""
    partition: str = ""
    qos: str = ""
    user_name: str = ""
    user_id: int = 0
    group_name: str = ""
    group_id: int = 0
    nodes: str = ""
    node_count: int | None = None
    cpus: int | None = None
    tasks: int | None = None
    time_limit: int | None = None  # minutes; -1 = infinite
    time_minimum: int | None = None
    submit_time: int = 0
    eligible_time: int = 0
    start_time: int = 0
    end_time: int = 0
    suspend_time: int = 0
    elapsed: int = 0
    cwd: str = ""
    comment: str = ""
    admin_comment: str = ""
    system_comment: str = ""
    cluster: str = ""
    priority: int | None = None
    standard_output: str = ""
    standard_error: str = ""
    standard_input: str = ""
    batch_host: str = ""
    flags: list[str] = field(default_factory=list)
    constraints: str = ""
    tres_req: str = ""
    tres_alloc: str = ""
    requeue: bool = True
    restart_cnt: int = 0
    shared: list[str] = field(default_factory=list)
    command: str = ""
    association_id: int = 0
    dependency: str = ""
    reservation: str = ""
    wckey: str = ""
    licenses: str = ""
    submit_line: str = ""
    kill_request_user: str = ""
    memory_per_node: int | None = None
    memory_per_cpu: int | None = None
    tasks_per_node: int | None = None
    cpus_per_task: int | None = None
    accrue_time: int = 0
    last_sched_evaluation: int = 0


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def _opt_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool) or value in (_INFINITE32, _NO_VAL32):
        return None
    return _int(value, 0)


def facts_from_squeue(job: Mapping[str, Any]) -> JobFacts:
    """A 22.05 ``squeue --json`` job (openapi v0.0.38 shape, raw wait status exit codes)."""
    limit = job.get("time_limit")
    shared = job.get("shared")
    return JobFacts(
        job_id=_int(job.get("job_id")),
        name=str(job.get("name") or ""),
        state=str(job.get("job_state") or "UNKNOWN"),
        reason=str(job.get("state_reason") or "None"),
        exit_raw=_opt_int(job.get("exit_code")),
        derived_raw=_opt_int(job.get("derived_exit_code")),
        account=str(job.get("account") or ""),
        partition=str(job.get("partition") or ""),
        qos=str(job.get("qos") or ""),
        user_name=str(job.get("user_name") or ""),
        user_id=_int(job.get("user_id")),
        group_name=str(job.get("group_name") or ""),
        group_id=_int(job.get("group_id")),
        nodes=str(job.get("nodes") or ""),
        node_count=_opt_int(job.get("node_count")),
        cpus=_opt_int(job.get("cpus")),
        tasks=_opt_int(job.get("tasks")),
        # 22.05 writes INFINITE (no -t on a MaxTime=INFINITE partition) as null
        time_limit=-1 if limit in (None, _INFINITE32) else _int(limit),
        time_minimum=_opt_int(job.get("time_minimum")),
        submit_time=_int(job.get("submit_time")),
        eligible_time=_int(job.get("eligible_time")),
        start_time=_int(job.get("start_time")),
        end_time=_int(job.get("end_time")),
        suspend_time=_int(job.get("suspend_time")),
        cwd=str(job.get("current_working_directory") or ""),
        comment=str(job.get("comment") or ""),
        admin_comment=str(job.get("admin_comment") or ""),
        system_comment=str(job.get("system_comment") or ""),
        cluster=str(job.get("cluster") or ""),
        priority=_opt_int(job.get("priority")),
        standard_output=str(job.get("standard_output") or ""),
        standard_error=str(job.get("standard_error") or ""),
        standard_input=str(job.get("standard_input") or ""),
        batch_host=str(job.get("batch_host") or ""),
        flags=[str(f) for f in job.get("flags") or []],
        constraints=str(job.get("features") or ""),
        tres_req=str(job.get("tres_req_str") or ""),
        tres_alloc=str(job.get("tres_alloc_str") or ""),
        requeue=bool(job.get("requeue", True)),
        restart_cnt=_int(job.get("restart_cnt")),
        shared=[str(shared)] if isinstance(shared, str) and shared else [],
        command=str(job.get("command") or ""),
        association_id=_int(job.get("association_id")),
        dependency=str(job.get("dependency") or ""),
        reservation=str(job.get("resv_name") or ""),
        wckey=str(job.get("wckey") or ""),
        licenses=str(job.get("licenses") or ""),
        memory_per_node=_opt_int(job.get("memory_per_node")),
        memory_per_cpu=_opt_int(job.get("memory_per_cpu")),
        tasks_per_node=_opt_int(job.get("tasks_per_node")),
        cpus_per_task=_opt_int(job.get("cpus_per_task")),
        accrue_time=_int(job.get("accrue_time")),
        last_sched_evaluation=_int(job.get("last_sched_evaluation")),
    )


#: ``sacct --format`` fields read by :func:`facts_from_sacct`.
SACCT_FIELDS: tuple[str, ...] = (
    "JobIDRaw",
    "JobName",
    "State",
    "ExitCode",
    "DerivedExitCode",
    "Submit",
    "Eligible",
    "Start",
    "End",
    "ElapsedRaw",
    "Suspended",
    "TimelimitRaw",
    "NNodes",
    "NCPUS",
    "NodeList",
    "Reason",
    "User",
    "UID",
    "Group",
    "GID",
    "Account",
    "QOS",
    "Partition",
    "WorkDir",
    "Comment",
    "AdminComment",
    "SystemComment",
    "Cluster",
    "Priority",
    "Constraints",
    "AllocTRES",
    "ReqTRES",
    "Flags",
    "Reservation",
    "WCKey",
    "SubmitLine",
    "AssocID",
)


def _epoch_of(text: str) -> int:
    return 0 if text in _UNSET_TIME else _int(text)


def _duration(text: str) -> int:
    """``[D-]HH:MM:SS`` (sacct's Suspended) as seconds."""
    days, _, clock = text.rpartition("-")
    parts = [_int(p) for p in clock.split(":")]
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds + _int(days) * 86400 if days else seconds


def _user_of(uid: str) -> str:
    try:
        return pwd.getpwuid(int(uid)).pw_name
    except (KeyError, ValueError):
        return uid


def facts_from_sacct(row: Mapping[str, str]) -> JobFacts:
    """A job-level ``sacct -P`` row with :data:`SACCT_FIELDS` (times as UNIX seconds)."""
    state_text = row.get("State", "") or "UNKNOWN"
    word, _, rest = state_text.partition(" ")
    kill_user = ""
    if word == "CANCELLED" and rest.startswith("by "):
        kill_user = _user_of(rest[3:].strip())
    limit = row.get("TimelimitRaw", "")
    return JobFacts(
        job_id=_int(row.get("JobIDRaw", "").split("_")[0].split("+")[0]),
        name=row.get("JobName", ""),
        state=word,
        reason=row.get("Reason", "") or "None",
        exit_raw=wait_status(row.get("ExitCode", "")),
        derived_raw=wait_status(row.get("DerivedExitCode", "")),
        account=row.get("Account", ""),
        partition=row.get("Partition", ""),
        qos=row.get("QOS", ""),
        user_name=row.get("User", ""),
        user_id=_int(row.get("UID")),
        group_name=row.get("Group", ""),
        group_id=_int(row.get("GID")),
        nodes="" if row.get("NodeList") in ("None assigned", None) else row.get("NodeList", ""),
        node_count=_opt_int(row.get("NNodes")),
        cpus=_opt_int(row.get("NCPUS")),
        time_limit=-1 if limit in ("UNLIMITED", "Partition_Limit", "") else _int(limit),
        submit_time=_epoch_of(row.get("Submit", "")),
        eligible_time=_epoch_of(row.get("Eligible", "")),
        start_time=_epoch_of(row.get("Start", "")),
        end_time=_epoch_of(row.get("End", "")),
        suspend_time=_duration(row.get("Suspended", "") or "0"),
        elapsed=_int(row.get("ElapsedRaw")),
        cwd=row.get("WorkDir", ""),
        comment=row.get("Comment", ""),
        admin_comment=row.get("AdminComment", ""),
        system_comment=row.get("SystemComment", ""),
        cluster=row.get("Cluster", ""),
        priority=_opt_int(row.get("Priority")),
        flags=[f for f in (row.get("Flags") or "").split(",") if f],
        constraints=row.get("Constraints", ""),
        tres_req=row.get("ReqTRES", ""),
        tres_alloc=row.get("AllocTRES", ""),
        reservation=row.get("Reservation", ""),
        wckey=row.get("WCKey", ""),
        submit_line=row.get("SubmitLine", ""),
        kill_request_user=kill_user,
        association_id=_int(row.get("AssocID")),
    )


_TRES_IDS = {"cpu": 1, "mem": 2, "energy": 3, "node": 4, "billing": 5, "fs/disk": 6}
_SIZE = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def _tres_list(text: str) -> list[dict[str, Any]]:
    """``cpu=1,mem=4000M,node=1`` as slurmdb's ``[{type, name, id, count}]`` (mem in MB)."""
    out = []
    for item in (text or "").split(","):
        key, sep, value = item.partition("=")
        if not sep:
            continue
        kind, _, name = key.partition("/")
        if kind not in ("gres", "license", "bb", "fs"):
            kind, name = key, ""
        unit = value[-1:].upper()
        count = _int(value[:-1]) * _SIZE[unit] if unit in _SIZE else _int(value)
        out.append({"type": kind, "name": name, "id": _TRES_IDS.get(key, 0), "count": int(count)})
    return out


def _expand(pattern: str, facts: JobFacts) -> str:
    """sbatch's filename pattern with the common replacements (%j %x %u %%)."""
    if not pattern:
        return ""
    out = (
        pattern.replace("%%", "\0")
        .replace("%j", str(facts.job_id))
        .replace("%A", str(facts.job_id))
    )
    out = out.replace("%x", facts.name).replace("%u", facts.user_name).replace("\0", "%")
    if not out.startswith("/") and facts.cwd:
        out = os.path.join(facts.cwd, out)
    return out


def _time_limit(minutes: int | None) -> dict[str, Any]:
    return no_val(None, infinite=True) if minutes == -1 else no_val(minutes)


def ctld_job(facts: JobFacts) -> dict[str, Any]:
    """The slurmctld job record (``GET .../jobs``; data parser v0.0.42 to v0.0.44)."""
    f = facts
    held = f.priority == 0 and f.reason.startswith("JobHeld")
    return {
        "account": f.account,
        "accrue_time": no_val(f.accrue_time),
        "admin_comment": f.admin_comment,
        "allocating_node": "",
        "array_job_id": no_val(0),
        "array_task_id": no_val(None),
        "array_max_tasks": no_val(0),
        "array_task_string": "",
        "association_id": f.association_id,
        "batch_features": "",
        "batch_flag": True,
        "batch_host": f.batch_host,
        "flags": list(f.flags),
        "burst_buffer": "",
        "burst_buffer_state": "",
        "cluster": f.cluster,
        "cluster_features": "",
        "command": f.command,
        "comment": f.comment,
        "container": "",
        "container_id": "",
        "contiguous": False,
        "core_spec": 0,
        "thread_spec": 0,
        "cores_per_socket": no_val(None),
        "billable_tres": no_val(None),
        "cpus_per_task": no_val(f.cpus_per_task),
        "cpu_frequency_minimum": no_val(None),
        "cpu_frequency_maximum": no_val(None),
        "cpu_frequency_governor": no_val(None),
        "cpus_per_tres": "",
        "cron": "",
        "deadline": no_val(0),
        "delay_boot": no_val(0),
        "dependency": f.dependency,
        "derived_exit_code": exit_code_verbose(f.derived_raw),
        "eligible_time": no_val(f.eligible_time),
        "end_time": no_val(f.end_time),
        "excluded_nodes": "",
        "exit_code": exit_code_verbose(f.exit_raw),
        "extra": "",
        "failed_node": "",
        "features": f.constraints,
        "federation_origin": "",
        "federation_siblings_active": "",
        "federation_siblings_viable": "",
        "gres_detail": [],
        "group_id": f.group_id,
        "group_name": f.group_name,
        "het_job_id": no_val(0),
        "het_job_id_set": "",
        "het_job_offset": no_val(0),
        "job_id": f.job_id,
        "job_resources": {
            "select_type": [],
            "nodes": {
                "count": f.node_count or 0,
                "select_type": [],
                "list": f.nodes,
                "whole": False,
                "allocation": [],
            },
            "cpus": f.cpus or 0,
            "threads_per_core": no_val(None),
        },
        "job_size_str": [],
        "job_state": [f.state],
        "last_sched_evaluation": no_val(f.last_sched_evaluation),
        "licenses": f.licenses,
        "mail_type": [],
        "mail_user": "",
        "max_cpus": no_val(0),
        "max_nodes": no_val(0),
        "mcs_label": "",
        "memory_per_tres": "",
        "name": f.name,
        "network": "",
        "nodes": f.nodes,
        "nice": 0,
        "tasks_per_core": no_val(None),
        "tasks_per_tres": no_val(None),
        "tasks_per_node": no_val(f.tasks_per_node),
        "tasks_per_socket": no_val(None),
        "tasks_per_board": no_val(0),
        "cpus": no_val(f.cpus),
        "node_count": no_val(f.node_count),
        "tasks": no_val(f.tasks),
        "partition": f.partition,
        "prefer": "",
        "memory_per_cpu": no_val(f.memory_per_cpu),
        "memory_per_node": no_val(f.memory_per_node),
        "minimum_cpus_per_node": no_val(None),
        "minimum_tmp_disk_per_node": no_val(0),
        "power": {"flags": []},
        "preempt_time": no_val(0),
        "preemptable_time": no_val(0),
        "pre_sus_time": no_val(0),
        "hold": held,
        "priority": no_val(f.priority),
        "priority_by_partition": [],
        "profile": ["NOT_SET"],
        "qos": f.qos,
        "reboot": False,
        "required_nodes": "",
        "minimum_switches": 0,
        "requeue": f.requeue,
        "resize_time": no_val(0),
        "restart_cnt": f.restart_cnt,
        "resv_name": f.reservation,
        "scheduled_nodes": "",
        "selinux_context": "",
        "shared": list(f.shared),
        "sockets_per_board": 0,
        "sockets_per_node": no_val(None),
        "start_time": no_val(f.start_time),
        "state_description": "",
        "state_reason": f.reason,
        "standard_input": f.standard_input,
        "standard_output": f.standard_output,
        "standard_error": f.standard_error,
        "stdin_expanded": _expand(f.standard_input, f),
        "stdout_expanded": _expand(f.standard_output, f),
        "stderr_expanded": _expand(f.standard_error, f),
        "submit_time": no_val(f.submit_time),
        "suspend_time": no_val(f.suspend_time),
        "system_comment": f.system_comment,
        "time_limit": _time_limit(f.time_limit),
        "time_minimum": no_val(f.time_minimum),
        "threads_per_core": no_val(None),
        "tres_bind": "",
        "tres_freq": "",
        "tres_per_job": "",
        "tres_per_node": "",
        "tres_per_socket": "",
        "tres_per_task": "",
        "tres_req_str": f.tres_req,
        "tres_alloc_str": f.tres_alloc,
        "user_id": f.user_id,
        "user_name": f.user_name,
        "maximum_switch_wait_time": 0,
        "wckey": f.wckey,
        "current_working_directory": f.cwd,
    }


def db_job(facts: JobFacts) -> dict[str, Any]:
    """The slurmdb job record (``GET .../job/{id}``; data parser v0.0.42 to v0.0.44)."""
    f = facts
    now = int(time.time())
    if f.elapsed:
        elapsed = f.elapsed
    elif f.start_time:
        elapsed = max(0, (f.end_time or now) - f.start_time)
    else:
        elapsed = 0
    zero = {"seconds": 0, "microseconds": 0}
    return {
        "account": f.account,
        "comment": {"administrator": f.admin_comment, "job": f.comment, "system": f.system_comment},
        "allocation_nodes": f.node_count or 0,
        "array": {
            "job_id": 0,
            "limits": {"max": {"running": {"tasks": 0}}},
            "task_id": no_val(None),
            "task": "",
        },
        "association": {
            "account": f.account,
            "cluster": f.cluster,
            "partition": "",
            "user": f.user_name,
            "id": f.association_id,
        },
        "block": "",
        "cluster": f.cluster,
        "constraints": f.constraints,
        "container": "",
        "derived_exit_code": exit_code_verbose(f.derived_raw),
        "time": {
            "elapsed": elapsed,
            "eligible": f.eligible_time,
            "end": f.end_time,
            "planned": no_val(
                max(0, (f.start_time or now) - f.submit_time) if f.submit_time else None
            ),
            "start": f.start_time,
            "submission": f.submit_time,
            "suspended": f.suspend_time,
            "system": dict(zero),
            "limit": _time_limit(f.time_limit),
            "total": dict(zero),
            "user": dict(zero),
        },
        "exit_code": exit_code_verbose(f.exit_raw),
        "extra": "",
        "failed_node": "",
        "flags": list(f.flags),
        "group": f.group_name,
        "het": {"job_id": 0, "job_offset": no_val(None)},
        "job_id": f.job_id,
        "name": f.name,
        "licenses": f.licenses,
        "mcs": {"label": ""},
        "nodes": f.nodes or "None assigned",
        "partition": f.partition,
        "hold": f.priority == 0 and f.reason.startswith("JobHeld"),
        "priority": no_val(f.priority),
        "qos": f.qos,
        "qosreq": f.qos,
        "required": {
            "CPUs": f.cpus or 0,
            "memory_per_cpu": no_val(f.memory_per_cpu),
            "memory_per_node": no_val(f.memory_per_node),
        },
        "kill_request_user": f.kill_request_user,
        "restart_cnt": f.restart_cnt,
        "reservation": {"id": 0, "name": f.reservation, "requested": ""},
        "script": "",
        "segment_size": 0,
        "stdin_expanded": _expand(f.standard_input, f),
        "stdout_expanded": _expand(f.standard_output, f),
        "stderr_expanded": _expand(f.standard_error, f),
        "stdout": f.standard_output,
        "stderr": f.standard_error,
        "stdin": f.standard_input,
        "state": {"current": [f.state], "reason": f.reason},
        "steps": [],
        "submit_line": f.submit_line,
        "tres": {"allocated": _tres_list(f.tres_alloc), "requested": _tres_list(f.tres_req)},
        "used_gres": "",
        "user": f.user_name,
        "wckey": {"wckey": f.wckey, "flags": []},
        "working_directory": f.cwd,
    }
