"""The batch script of one worker: the template context and the rendering.

The script's template is either ours (``templates/slurm_pilots.sh`` plus the per-node launcher
``templates/node_launcher.sh``) or an operator's own stock-style template (``templateFile``).
The context holds every stock Harvester placeholder (``placeholders.py``) plus ours, each
documented in docs/parallelism/index.md.  Values are shell-quoted by the renderer; the few raw
blocks (``#SBATCH`` lines, pre-quoted command lines, the launcher) are built only from
validated parts.  Nothing here reads the clock: the same worker and config give the same bytes.
"""

from __future__ import annotations

import datetime
from importlib import resources
from typing import cast

from ..errors import EdgeConfigError
from .batch_config import WORD, BatchConfig
from .directives import sbatch_directives
from .paths import shell_path
from .pilot_command import pilot_environment, pilot_type, pilot_words, quoted_words
from .pilot_summary import (
    EXIT_CVMFS,
    EXIT_LOST,
    EXIT_SETUP,
    LAUNCHER_FILE,
    NODES_DIR,
    PILOTS_DIR,
    SUMMARY_FILE,
)
from .placeholders import stock_placeholders
from .render import render
from .worker import WorkerInfo

__all__ = [
    "BATCH_TEMPLATE",
    "LAUNCHER_TEMPLATE",
    "build_context",
    "read_template",
    "render_batch_script",
    "shipped_template",
]

BATCH_TEMPLATE = "slurm_pilots.sh"
LAUNCHER_TEMPLATE = "node_launcher.sh"


def shipped_template(name: str = BATCH_TEMPLATE) -> str:
    """Text of a template shipped in ``harvester_edge/templates``."""
    return (resources.files("harvester_edge") / "templates" / name).read_text(encoding="utf-8")


def check_worker(worker: WorkerInfo) -> None:
    """The job name is one plain word and the work dir absolute with no ``$`` (or an error)."""
    if not WORD.match(worker.job_name):
        raise EdgeConfigError(f"jobName: {worker.job_name!r} must be one plain word")
    if not worker.work_dir.startswith("/") or "$" in worker.work_dir:
        raise EdgeConfigError(f"workDir: {worker.work_dir!r} must be an absolute path with no $")


def build_context(
    cfg: BatchConfig, worker: WorkerInfo, now: datetime.datetime | None = None
) -> dict[str, object]:
    """Every placeholder a template may use: the stock ones plus ours (docs/parallelism)."""
    check_worker(worker)
    ctx = stock_placeholders(cfg, worker, now)
    wrapper_type, label = pilot_type(cfg, worker)
    ctx.update(
        jobName=worker.job_name,
        workDir=worker.work_dir,
        workDirShell=shell_path("workDir", worker.work_dir),
        profileName=cfg.profile.name,
        pilotsPerNode=cfg.pilots_per_node,
        coresPerPilot=cfg.cores_per_pilot,
        gpusPerNode=cfg.gpus_per_node,
        gpusPerPilot=cfg.gpus_per_pilot,
        gpuVisibleVar=cfg.gpu_visible_var or "",
        bindCores=int(cfg.bind_cores),
        sbatchDirectives=sbatch_directives(
            cfg, cast(int, ctx["nNode"]), cast(int, ctx["requestWalltimeMinute"])
        ),
        cvmfsRoot=cfg.cvmfs_root,
        cvmfsRepos=" ".join(cfg.cvmfs_repos),
        cvmfsCheckTimeout=cfg.cvmfs_check_timeout,
        cvmfsFallback=cfg.cvmfs_fallback,
        cvmfsexecPath=cfg.cvmfsexec_path,
        containerImage=cfg.container_image,
        containerOptions=quoted_words(("containerOptions", o) for o in cfg.container_options),
        pilotWrapper=cfg.pilot_wrapper,
        pilotSetup=cfg.pilot_setup,
        pilotType=wrapper_type,
        pilotJobLabel=label,
        pilotArgs=quoted_words(("pilotArgs", a) for a in cfg.pilot_args),
        pilotCommand=quoted_words(pilot_words(cfg, worker)),
        pilotEnvironment=pilot_environment(cfg, worker),
        pandaJsid=f"harvester-{worker.harvester_id}",
        exitCvmfs=EXIT_CVMFS,
        exitSetup=EXIT_SETUP,
        exitLost=EXIT_LOST,
        summaryFile=SUMMARY_FILE,
        pilotsDir=PILOTS_DIR,
        nodesDir=NODES_DIR,
        launcherFile=LAUNCHER_FILE,
    )
    ctx["launcherScript"] = render(shipped_template(LAUNCHER_TEMPLATE), ctx)
    return ctx


def read_template(cfg: BatchConfig) -> str:
    """The operator's ``templateFile`` when configured, else the shipped batch template."""
    if not cfg.template_file:
        return shipped_template(BATCH_TEMPLATE)
    try:
        with open(cfg.template_file, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise EdgeConfigError(f"templateFile: cannot read {cfg.template_file!r} ({exc})") from None
    except UnicodeDecodeError:
        raise EdgeConfigError(f"templateFile: {cfg.template_file!r} is not UTF-8 text") from None


def render_batch_script(
    cfg: BatchConfig, worker: WorkerInfo, now: datetime.datetime | None = None
) -> str:
    """The batch script for one worker, ready for ``sbatch`` (or a facility's submit API).

    ``now`` overrides the worker's own time for ``logSubDir`` (docs and tests pin it).
    """
    return render(read_template(cfg), build_context(cfg, worker, now))
