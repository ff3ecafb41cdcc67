"""Slurm batch scripts for pilots: validated config, template context, rendering.

The submitters send one rendered script per worker.  Its template is either ours
(``templates/slurm_pilots.sh`` plus the per-node launcher ``templates/node_launcher.sh``) or an
operator's own stock-style template (``templateFile``): every stock Harvester placeholder is in
the context with stock's formulas, so an existing template renders byte for byte as with stock
``str.format_map`` when its values are plain.  Values are shell-quoted by the renderer; the few
raw blocks (``#SBATCH`` lines, pre-quoted command lines, the launcher) are built here only from
validated parts.  Every placeholder is documented in docs/parallelism/index.md.

Remote paths (``remoteWorkDir``, ``logDir``) are absolute: the facility's file utilities (SFAPI
``utilities/download``, ...) never expand ``${SCRATCH}``-style references, so such a path could
not be read back by the monitor.  Only Harvester's own ``${harvesterID}``, ``${workerID}`` and
``${queueName}`` are allowed in them; they are expanded here, before the script is rendered.
The clock is read in one place only: stock's hourly ``logSubDir`` (``now`` fixes it).
"""

from __future__ import annotations

import datetime
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

from ..config import convert
from ..errors import EdgeConfigError
from .pilot_summary import (
    EXIT_CODES,
    EXIT_CVMFS,
    EXIT_LOST,
    EXIT_SETUP,
    LAUNCHER_FILE,
    NODES_DIR,
    PILOTS_DIR,
    SUMMARY_FILE,
)
from .profiles import CONTAINER_RUNTIMES, CVMFS_FALLBACKS, GPU_VISIBLE_VARS, Profile, get_profile
from .render import CONTROL_CHARS, render, shell_word

__all__ = [
    "BATCH_TEMPLATE",
    "LAUNCHER_TEMPLATE",
    "DEFAULT_PILOT_ARGS",
    "EXIT_CODES",
    "EXIT_CVMFS",
    "EXIT_LOST",
    "EXIT_SETUP",
    "BatchConfig",
    "WorkerInfo",
    "build_context",
    "render_batch_script",
    "shipped_template",
]

BATCH_TEMPLATE = "slurm_pilots.sh"
LAUNCHER_TEMPLATE = "node_launcher.sh"
WRAPPER_IN_REPO = "atlas.cern.ch/repo/sw/PandaPilotWrapper/latest/runpilot2-wrapper.sh"
ALRB_SETUP_IN_REPO = "atlas.cern.ch/repo/ATLASLocalRootBase/user/atlasLocalSetup.sh"
_ALRB_SETUP_TAIL = "/ATLASLocalRootBase/user/atlasLocalSetup.sh"

#: Wrapper/pilot options of ATLAS production pull queues (HTCondor template of
#: harvester_configurations); queue-specific ones (-s -r -q -j -i, versions) are added per worker.
DEFAULT_PILOT_ARGS = (
    "-w", "generic", "--pilot-user", "ATLAS", "--url", "https://pandaserver.cern.ch",
    "--harvester-submit-mode", "PULL", "--allow-same-user=False",
)  # fmt: skip

# Worker pilot types that imply a wrapper type and a job label (as Harvester's own submitters do).
_PILOT_TYPES = {"PT": ("PR", "ptest"), "RC": ("RC", "rc_test2"), "ALRB": ("ALRB", "rc_alrb")}

_DIRECTIVE_VALUE = re.compile(r"[A-Za-z0-9_./:@%+=,~^&|*!()\[\]-]+\Z")
_DIRECTIVE = re.compile(r"--([a-z][a-z0-9-]*)(?:=(.+))?\Z")
_RESERVED_DIRECTIVES = frozenset({"nodes", "job-name", "ntasks", "ntasks-per-node"})
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+@%,=-]*\Z")
_WORKER_PLACEHOLDER = re.compile(r"\$\{(?:harvesterID|workerID|queueName)\}")
#: Example given when a remote path is refused (NERSC's scratch layout).
REMOTE_PATH_EXAMPLE = "/pscratch/sd/<u>/<user>/harvester-edge"


def shipped_template(name: str = BATCH_TEMPLATE) -> str:
    """Text of a template shipped in ``harvester_edge/templates``."""
    return (resources.files("harvester_edge") / "templates" / name).read_text(encoding="utf-8")


def shell_path(name: str, value: str) -> str:
    """``value`` as one double-quoted shell word in which nothing expands.

    Every ``$``, backtick, quote or backslash is escaped, so ``$VAR`` and ``$(...)`` stay
    literal: the script must use exactly the path the monitor later reads through the
    facility's file utility.
    """
    if CONTROL_CHARS.search(value):
        raise EdgeConfigError(f"{name}: contains a control character")
    for char in ("\\", '"', "$", "`"):
        value = value.replace(char, "\\" + char)
    return f'"{value}"'


def check_remote_path(key: str, value: str) -> str:
    """``value`` if it is an absolute facility path, else an error naming ``key`` and why.

    Allowed: a leading ``/`` and, besides plain characters, only Harvester's ``${harvesterID}``,
    ``${workerID}``, ``${queueName}`` (expanded before rendering).  Any other ``$`` is an
    environment reference that no edge service would expand.
    """
    if CONTROL_CHARS.search(value):
        raise EdgeConfigError(f"{key}: must not contain control characters (got {value!r})")
    if "$" in _WORKER_PLACEHOLDER.sub("", value):
        raise EdgeConfigError(
            f"{key}: environment references such as ${{SCRATCH}} are not expanded by the edge "
            f"services' file utilities; give the absolute path, e.g. {REMOTE_PATH_EXAMPLE} "
            "(only ${harvesterID}, ${workerID}, ${queueName} may appear; "
            f"got {value!r})"
        )
    if not value.startswith("/"):
        raise EdgeConfigError(
            f"{key}: must be an absolute path on the facility, e.g. {REMOTE_PATH_EXAMPLE} "
            f"(got {value!r})"
        )
    return value


def expand_worker_path(template: str, harvester_id: str, worker_id: int, queue: str = "") -> str:
    """Replace Harvester's ``${harvesterID}``, ``${workerID}``, ``${queueName}`` in a path/URL."""
    return (
        template.replace("${harvesterID}", harvester_id)
        .replace("${workerID}", str(worker_id))
        .replace("${queueName}", queue)
    )


class _Reader:
    """Reads one plugin-config mapping; every error message starts with the key."""

    def __init__(self, cfg: Mapping[str, object]):
        self.cfg = cfg

    def _fail(self, key: str, message: str) -> EdgeConfigError:
        return EdgeConfigError(f"{key}: {message} (got {self.cfg.get(key)!r})")

    def _typed(self, key: str, kind: Any, what: str) -> Any:
        """The value converted by the package-wide rules (config.convert), or None if unset."""
        value = self.cfg.get(key)
        if value is None:
            return None
        try:
            return convert(key, value, kind)
        except EdgeConfigError:
            raise self._fail(key, f"must be {what}") from None

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self._typed(key, str, "a string")
        if value is None:
            return default
        if CONTROL_CHARS.search(value):
            raise self._fail(key, "must not contain control characters")
        return value

    def integer(self, key: str, default: int | None, minimum: int = 0) -> int | None:
        value = self._typed(key, int, "an integer")
        if value is None:
            return default
        if value < minimum:
            raise self._fail(key, f"must be >= {minimum}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self._typed(key, bool, "true or false")
        return default if value is None else bool(value)

    def strings(self, key: str, default: Iterable[str]) -> tuple[str, ...]:
        value = self._typed(key, list[str], "a list of strings")
        if value is None:
            return tuple(default)
        if any(CONTROL_CHARS.search(v) for v in value):
            raise self._fail(key, "items must not contain control characters")
        return tuple(value)

    def choice(self, key: str, choices: Iterable[str], default: str | None) -> str | None:
        value = self.text(key, default)
        allowed = tuple(choices)
        if value is not None and value not in allowed:
            raise self._fail(key, f"must be one of {', '.join(allowed)}")
        return value

    def directive_value(self, key: str) -> str | None:
        value = self.text(key)
        if value is not None and not _DIRECTIVE_VALUE.match(value):
            raise self._fail(key, "has characters not allowed in an #SBATCH value")
        return value

    def path(self, key: str, default: str) -> str:
        value = self.text(key, default)
        assert value is not None
        if value and not value.startswith("/"):
            raise self._fail(key, "must be an absolute path")
        return value

    def word(self, key: str, default: str | None = None) -> str | None:
        value = self.text(key, default)
        if value is not None and not _WORD.match(value):
            raise self._fail(key, "must be one word of letters, digits and ._:+@%,=-")
        return value


def _parse_directives(values: tuple[str, ...]) -> tuple[tuple[str, str | None], ...]:
    """``--key=value`` / ``--flag`` strings from ``extraDirectives``, each checked."""
    parsed = []
    for item in values:
        match = _DIRECTIVE.match(item)
        if not match or (match.group(2) is not None and not _DIRECTIVE_VALUE.match(match.group(2))):
            raise EdgeConfigError(
                f"extraDirectives: {item!r} is not --key=value with a plain value (no spaces, "
                "quotes or $)"
            )
        if match.group(1) in _RESERVED_DIRECTIVES:
            raise EdgeConfigError(
                f"extraDirectives: --{match.group(1)} is set by the script (use nNode)"
            )
        parsed.append((match.group(1), match.group(2)))
    return tuple(parsed)


@dataclass(frozen=True)
class BatchConfig:
    """Validated batch-script settings of one queue (see :meth:`from_config` for the keys)."""

    profile: Profile
    remote_work_dir: str
    template_file: str | None = None
    pilots_per_node: int = 1
    n_node: int | None = None
    n_core_per_node: int = 1
    gpus_per_node: int = 0
    gpu_visible_var: str | None = None
    account: str | None = None
    qos: str | None = None
    partition: str | None = None
    constraint: str | None = None
    extra_directives: tuple[tuple[str, str | None], ...] = ()
    cvmfs_root: str = "/cvmfs"
    cvmfs_repos: tuple[str, ...] = ("atlas.cern.ch",)
    cvmfs_check_timeout: int = 60
    cvmfs_fallback: str = "none"
    cvmfsexec_path: str = ""
    container_image: str = ""
    container_options: tuple[str, ...] = ()
    pilot_wrapper: str = "/cvmfs/" + WRAPPER_IN_REPO
    pilot_setup: str = "/cvmfs/" + ALRB_SETUP_IN_REPO
    pilot_args: tuple[str, ...] = DEFAULT_PILOT_ARGS
    pilot_type: str | None = None
    pilot_job_label: str | None = None
    pilot_url: str | None = None
    pilot_version: str | None = None
    local_queue_name: str = "grid"
    log_base_url: str | None = None
    log_dir: str | None = None
    token_dir: str | None = None
    token_name: str | None = None
    token_origin: str | None = None
    submit_mode: str | None = None
    n_core_factor: int = 1
    bind_cores: bool = False

    @classmethod
    def from_config(cls, cfg: Mapping[str, object]) -> BatchConfig:
        """Validate a queue's plugin section (camelCase keys); unknown keys are ignored.

        Harvester copies the queue's ``common`` block into every plugin section, so keys meant
        for other plugins are normal here.  Errors name the offending key.
        """
        read = _Reader(cfg)
        profile = get_profile(str(read.text("profile", "generic")))
        cvmfs_root = read.path("cvmfsRoot", "/cvmfs").rstrip("/") or "/"
        repos = read.strings("cvmfsRepos", ("atlas.cern.ch",))
        if not all(_REPO.match(r) for r in repos):
            raise EdgeConfigError(f"cvmfsRepos: not a repository name in {list(repos)!r}")
        n_core = read.integer("nCorePerNode", profile.cores_per_node, 1)
        gpus = read.integer("gpusPerNode", profile.gpus_per_node, 0)
        config = cls(
            profile=profile,
            template_file=read.text("templateFile"),
            pilots_per_node=read.integer("pilotsPerNode", 1, 1) or 1,
            n_node=read.integer("nNode", None, 1),
            n_core_per_node=n_core or 1,
            gpus_per_node=gpus or 0,
            gpu_visible_var=read.choice("gpuVisibleVar", GPU_VISIBLE_VARS, profile.gpu_visible_var),
            account=read.directive_value("account"),
            qos=read.directive_value("qos"),
            partition=read.directive_value("partition"),
            constraint=read.directive_value("constraint"),
            extra_directives=_parse_directives(read.strings("extraDirectives", ())),
            remote_work_dir=_remote_dir(read, profile),
            cvmfs_root=cvmfs_root,
            cvmfs_repos=repos,
            cvmfs_check_timeout=read.integer("cvmfsCheckTimeout", 60, 1) or 60,
            cvmfs_fallback=_fallback(read, profile),
            cvmfsexec_path=read.path("cvmfsexecPath", ""),
            container_image=read.text("containerImage", "") or "",
            container_options=read.strings("containerOptions", profile.container_options),
            pilot_wrapper=read.path("pilotWrapper", f"{cvmfs_root}/{WRAPPER_IN_REPO}"),
            pilot_setup=read.path("pilotSetup", _default_setup(cvmfs_root, repos)),
            pilot_args=read.strings("pilotArgs", DEFAULT_PILOT_ARGS),
            pilot_type=read.word("pilotType"),
            pilot_job_label=read.word("pilotJobLabel"),
            pilot_url=read.text("pilotUrl"),
            pilot_version=read.text("pilotVersion"),
            local_queue_name=read.text("localQueueName", "grid") or "grid",
            log_base_url=read.text("logBaseURL"),
            log_dir=read.text("logDir") or None,
            token_dir=read.text("tokenDir"),
            token_name=read.text("tokenName"),
            token_origin=read.text("tokenOrigin"),
            submit_mode=read.text("submitMode"),
            n_core_factor=read.integer("nCoreFactor", 1, 1) or 1,
            bind_cores=read.flag("bindCores", False),
        )
        config.check()
        return config

    def check(self) -> None:
        """Cross-key rules: absolute remote paths, the pilots fit the node, fallbacks' tools."""
        check_remote_path("remoteWorkDir", self.remote_work_dir)
        if self.log_dir is not None:
            check_remote_path("logDir", self.log_dir)
        if self.n_core_per_node < self.pilots_per_node:
            raise EdgeConfigError(
                f"pilotsPerNode: {self.pilots_per_node} pilots do not fit "
                f"{self.n_core_per_node} cores per node (nCorePerNode)"
            )
        if self.gpus_per_node and self.pilots_per_node > self.gpus_per_node:
            raise EdgeConfigError(
                f"pilotsPerNode: {self.pilots_per_node} pilots but only {self.gpus_per_node} "
                "GPUs per node (set gpusPerNode to 0 for CPU-only pilots)"
            )
        if self.gpus_per_node and not self.gpu_visible_var:
            raise EdgeConfigError(
                f"gpuVisibleVar: needed when gpusPerNode > 0 on profile {self.profile.name}"
            )
        if self.cvmfs_fallback == "cvmfsexec" and not self.cvmfsexec_path:
            raise EdgeConfigError("cvmfsexecPath: required when cvmfsFallback is cvmfsexec")
        if self.cvmfs_fallback in CONTAINER_RUNTIMES and not self.container_image:
            fallback = self.cvmfs_fallback
            raise EdgeConfigError(f"containerImage: required when cvmfsFallback is {fallback}")

    @property
    def cores_per_pilot(self) -> int:
        return self.n_core_per_node // self.pilots_per_node

    @property
    def gpus_per_pilot(self) -> int:
        return self.gpus_per_node // self.pilots_per_node

    def worker_dir(self, harvester_id: str, worker_id: int, queue: str = "") -> str:
        """The worker's remote dir: ``remoteWorkDir`` expanded, or ``<it>/<harvesterID>/<id>``."""
        base = self.remote_work_dir
        if "${workerID}" not in base:
            base = base.rstrip("/") + "/${harvesterID}/${workerID}"
        return expand_worker_path(base, harvester_id, worker_id, queue)


def _remote_dir(read: _Reader, profile: Profile) -> str:
    """``remoteWorkDir`` from config, else the profile's default; required when it has none."""
    value = read.text("remoteWorkDir") or profile.remote_work_dir
    if not value:
        raise EdgeConfigError(
            f"remoteWorkDir: required (profile {profile.name} has no default): give the "
            f"absolute facility-side base dir of the workers, e.g. {REMOTE_PATH_EXAMPLE}"
        )
    return check_remote_path("remoteWorkDir", value)


def _fallback(read: _Reader, profile: Profile) -> str:
    value = read.choice("cvmfsFallback", CVMFS_FALLBACKS, profile.cvmfs_fallback) or "none"
    return profile.container_runtime if value == "container" else value


def _default_setup(cvmfs_root: str, repos: tuple[str, ...]) -> str:
    return f"{cvmfs_root}/{ALRB_SETUP_IN_REPO}" if "atlas.cern.ch" in repos else ""


@dataclass(frozen=True, kw_only=True)
class WorkerInfo:
    """What the script needs to know about one Harvester worker (decoupled from WorkSpec)."""

    harvester_id: str
    worker_id: int
    queue: str
    job_name: str
    n_core: int = 0
    min_ram_mb: int = 0
    max_walltime_s: int = 0
    max_disk_mb: int = 0
    job_type: str = ""
    resource_type: str = ""
    pilot_type: str = ""
    work_dir: str

    @classmethod
    def from_workspec(cls, ws: Any, harvester_id: str, job_name: str, work_dir: str) -> WorkerInfo:
        """Copy the WorkSpec columns the script uses; None columns become 0 or ''.

        Harvester's ResourceTypeMapper computes memory and disk as floats (2000.0, 1843.2):
        memory and disk are rounded up to whole MB and the walltime up to whole seconds;
        ``nCore`` must be a whole number (8.0 is 8).  A bool, a negative, NaN or infinite value
        (or not a number at all) is an :class:`EdgeConfigError` naming the worker field.
        """
        return cls(
            harvester_id=harvester_id,
            worker_id=int(ws.workerID),
            queue=str(getattr(ws, "computingSite", None) or getattr(ws, "queueName", "") or ""),
            job_name=job_name,
            n_core=_worker_number(ws, "nCore", whole=True),
            min_ram_mb=_worker_number(ws, "minRamCount"),
            max_walltime_s=_worker_number(ws, "maxWalltime"),
            max_disk_mb=_worker_number(ws, "maxDiskCount"),
            job_type=str(ws.jobType or ""),
            resource_type=str(ws.resourceType or ""),
            pilot_type=str(ws.pilotType or ""),
            work_dir=work_dir,
        )


def _worker_number(ws: Any, field: str, whole: bool = False) -> int:
    """A numeric WorkSpec column as a non-negative int (rounded up); None is 0."""
    value = getattr(ws, field, None)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EdgeConfigError(f"{field}: worker field must be a number (got {value!r})")
    if not math.isfinite(value) or value < 0:
        raise EdgeConfigError(f"{field}: worker field must be finite and >= 0 (got {value!r})")
    if whole and value != math.floor(value):
        raise EdgeConfigError(f"{field}: worker field must be a whole number (got {value!r})")
    return math.ceil(value)


def stock_placeholders(
    cfg: BatchConfig, worker: WorkerInfo, now: datetime.datetime | None = None
) -> dict[str, object]:
    """Stock ``slurm_submitter.make_placeholder_map`` values, with its formulas.

    One deviation: a configured ``nNode`` is used as it is (level 2), and with no worker
    ``nCore`` the total is ``nCorePerNode * nNode``; without ``nNode`` everything is stock.
    """
    per_node = cfg.n_core_per_node
    total = worker.n_core or per_node * (cfg.n_node or 1)
    n_node = cfg.n_node or math.ceil(total / per_node)
    ram = max(worker.min_ram_mb, total) if worker.min_ram_mb else total
    walltime = worker.max_walltime_s or 0
    cputime = walltime * total
    log_dir = worker.work_dir
    if cfg.log_dir:
        log_dir = expand_worker_path(
            cfg.log_dir, worker.harvester_id, worker.worker_id, worker.queue
        )
    when = now or datetime.datetime.now(datetime.timezone.utc)
    values: dict[str, object] = {
        "nCorePerNode": per_node,
        "nCoreTotal": total * cfg.n_core_factor,
        "nCoreFactor": cfg.n_core_factor,
        "nNode": n_node,
        "requestRam": ram * cfg.n_core_factor,
        "requestRamBytes": ram * 2**20 * cfg.n_core_factor,
        "requestRamPerCore": math.ceil(ram * n_node / total),
        "requestRamBytesPerCore": math.ceil(ram * 2**20 * n_node / total),
        "requestDisk": worker.max_disk_mb * 1024 if worker.max_disk_mb else 1,
        "requestWalltime": walltime,
        "requestWalltimeMinute": math.ceil(walltime / 60),
        "requestCputime": cputime,
        "requestCputimeMinute": math.ceil(cputime / 60),
        "accessPoint": worker.work_dir,
        "harvesterID": worker.harvester_id,
        "workerID": worker.worker_id,
        "computingSite": worker.queue,
        "pandaQueueName": worker.queue,
        "localQueueName": cfg.local_queue_name,
        "logDir": log_dir,
        "logSubDir": os.path.join(log_dir, when.strftime("%y-%m-%d_%H")),
        "jobType": worker.job_type,
        "gtag": _gtag(cfg, worker),
    }
    optional = {
        "tokenDir": cfg.token_dir,
        "tokenName": cfg.token_name,
        "tokenOrigin": cfg.token_origin,
        "submitMode": cfg.submit_mode,
    }
    values.update({k: v for k, v in optional.items() if v is not None})
    return values


def _gtag(cfg: BatchConfig, worker: WorkerInfo) -> str:
    """Base of each pilot's GTAG (``<base>/<node>/slot<k>``): the log URL, else the job name."""
    if cfg.log_base_url:
        url = cfg.log_base_url
        if "${workerID}" not in url:
            url = url.rstrip("/") + "/${harvesterID}/${workerID}"
        return expand_worker_path(url, worker.harvester_id, worker.worker_id, worker.queue)
    return worker.job_name


def sbatch_directives(cfg: BatchConfig, n_node: int, walltime_minutes: int) -> str:
    """The ``#SBATCH`` block: nodes, CPUs (shared-node sites), time, profile/config/extras."""
    lines = [f"--nodes={n_node}"]
    if not cfg.profile.whole_node:
        lines += ["--ntasks-per-node=1", f"--cpus-per-task={cfg.n_core_per_node}"]
    if walltime_minutes > 0:
        lines.append(f"--time={walltime_minutes}")
    merged: dict[str, str | None] = dict(cfg.profile.directives)
    if "gpus-per-node" in merged:
        merged["gpus-per-node"] = str(cfg.gpus_per_node)
        if not cfg.gpus_per_node:
            del merged["gpus-per-node"]
    for key in ("account", "qos", "partition", "constraint"):
        value = getattr(cfg, key)
        if value is not None:
            merged[key] = value
    merged.update(dict(cfg.extra_directives))
    lines += [f"--{k}" if v is None else f"--{k}={v}" for k, v in merged.items()]
    return "\n".join(f"#SBATCH {line}" for line in lines)


def _pilot_type(cfg: BatchConfig, worker: WorkerInfo) -> tuple[str, str]:
    """Wrapper ``-i`` type and ``-j`` label from config, else from the worker's pilot type."""
    kind = cfg.pilot_type or worker.pilot_type or "PR"
    wrapper_type, label = _PILOT_TYPES.get(kind, (kind, "managed"))
    return wrapper_type, cfg.pilot_job_label or label


def pilot_words(cfg: BatchConfig, worker: WorkerInfo) -> list[tuple[str, str]]:
    """(placeholder name for errors, word) pairs of the full wrapper command line."""
    wrapper_type, label = _pilot_type(cfg, worker)
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


def _quoted(words: Iterable[tuple[str, str]]) -> str:
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


def _check_worker(worker: WorkerInfo) -> None:
    if not _WORD.match(worker.job_name):
        raise EdgeConfigError(f"jobName: {worker.job_name!r} must be one plain word")
    if not worker.work_dir.startswith("/") or "$" in worker.work_dir:
        raise EdgeConfigError(f"workDir: {worker.work_dir!r} must be an absolute path with no $")


def build_context(
    cfg: BatchConfig, worker: WorkerInfo, now: datetime.datetime | None = None
) -> dict[str, object]:
    """Every placeholder a template may use: the stock ones plus ours (docs/parallelism)."""
    _check_worker(worker)
    ctx = stock_placeholders(cfg, worker, now)
    wrapper_type, label = _pilot_type(cfg, worker)
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
        containerOptions=_quoted(("containerOptions", o) for o in cfg.container_options),
        pilotWrapper=cfg.pilot_wrapper,
        pilotSetup=cfg.pilot_setup,
        pilotType=wrapper_type,
        pilotJobLabel=label,
        pilotArgs=_quoted(("pilotArgs", a) for a in cfg.pilot_args),
        pilotCommand=_quoted(pilot_words(cfg, worker)),
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
    """The batch script for one worker, ready for ``sbatch`` (or a facility's submit API)."""
    return render(read_template(cfg), build_context(cfg, worker, now))
