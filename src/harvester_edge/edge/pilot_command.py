"""The pilot wrapper's command line and the environment every pilot of a worker shares.

Each word is shell-quoted on its own (``render.shell_word``) and named after the placeholder or
config key it came from, so a refused value (a newline in a queue name) says where it came
from.  Wrapper type and job label follow Harvester's own submitters: config first, else the
worker's pilot type (PT -> PR/ptest, RC -> RC/rc_test2, ALRB -> ALRB/rc_alrb).
"""

from __future__ import annotations

from collections.abc import Iterable

from .batch_config import BatchConfig
from .render import shell_word
from .worker import WorkerInfo

__all__ = ["pilot_environment", "pilot_type", "pilot_words", "quoted_words"]

_ALRB_SETUP_TAIL = "/ATLASLocalRootBase/user/atlasLocalSetup.sh"

# Worker pilot types that imply a wrapper type and a job label (as Harvester's own submitters do).
_PILOT_TYPES = {"PT": ("PR", "ptest"), "RC": ("RC", "rc_test2"), "ALRB": ("ALRB", "rc_alrb")}


def pilot_type(cfg: BatchConfig, worker: WorkerInfo) -> tuple[str, str]:
    """Wrapper ``-i`` type and ``-j`` label from config, else from the worker's pilot type."""
    kind = cfg.pilot_type or worker.pilot_type or "PR"
    wrapper_type, label = _PILOT_TYPES.get(kind, (kind, "managed"))
    return wrapper_type, cfg.pilot_job_label or label


def pilot_words(cfg: BatchConfig, worker: WorkerInfo) -> list[tuple[str, str]]:
    """(placeholder name for errors, word) pairs of the full wrapper command line."""
    wrapper_type, label = pilot_type(cfg, worker)
    words = [("pilotWrapper", cfg.pilot_wrapper)]
    for option, value in (("-s", worker.queue), ("-r", worker.queue), ("-q", worker.queue)):
        words += [("pandaQueueName", option), ("pandaQueueName", value)]
    words += [("pilotJobLabel", "-j"), ("pilotJobLabel", label)]
    words += [("pilotType", "-i"), ("pilotType", wrapper_type)]
    if worker.job_type:
        words.append(("jobType", f"--job-type={worker.job_type}"))
    if worker.resource_type:
        words += [("resourceType", "--resource-type"), ("resourceType", worker.resource_type)]
    if cfg.pilot_version:
        words += [("pilotVersion", "--pilotversion"), ("pilotVersion", cfg.pilot_version)]
    if cfg.pilot_url:
        words += [("pilotUrl", "--piloturl"), ("pilotUrl", cfg.pilot_url)]
    words += [("pilotArgs", arg) for arg in cfg.pilot_args]
    return words


def quoted_words(words: Iterable[tuple[str, str]]) -> str:
    return " ".join(shell_word(name, word) for name, word in words)


def pilot_environment(cfg: BatchConfig, worker: WorkerInfo) -> str:
    """``export`` lines shared by all pilots of the worker (association, runtime, token)."""
    env: list[tuple[str, str, str]] = [
        ("HARVESTER_ID", "harvesterID", worker.harvester_id),
        ("HARVESTER_WORKER_ID", "workerID", str(worker.worker_id)),
        ("PANDA_JSID", "harvesterID", f"harvester-{worker.harvester_id}"),
        ("HARVESTER_QUEUE", "pandaQueueName", worker.queue),
        ("HARVESTER_JOB_NAME", "jobName", worker.job_name),
        ("ATLAS_SW_BASE", "cvmfsRoot", cfg.cvmfs_root),
    ]
    if cfg.pilot_setup.endswith(_ALRB_SETUP_TAIL):
        root = cfg.pilot_setup[: -len("/user/atlasLocalSetup.sh")]
        env.append(("ATLAS_LOCAL_ROOT_BASE", "pilotSetup", root))
    for var, key, value in (
        ("PANDA_AUTH_DIR", "tokenDir", cfg.token_dir),
        ("PANDA_AUTH_TOKEN", "tokenName", cfg.token_name),
        ("PANDA_AUTH_ORIGIN", "tokenOrigin", cfg.token_origin),
    ):
        if value:
            env.append((var, key, value))
    lines = [f"  export {var}={shell_word(key, value)}" for var, key, value in env]
    lines.append('  export HARVESTER_WORK_DIR="$HEDGE_WORK_DIR"')
    return "\n".join(lines)
