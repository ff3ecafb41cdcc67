"""One queue's batch-job settings, validated once from its plugin section into ``BatchConfig``.

Harvester passes a queue's plugin section (camelCase keys, its ``common`` block copied in);
``BatchConfig.from_config`` converts and checks every key the batch job uses and ignores the
rest, so a malformed section fails when the plugin is built, never mid-cycle.  Every error
names the key.  No I/O happens here (``templateFile`` is read at render time).  Node shape and
Slurm defaults come from the facility profile (``edge/profiles.py``), overridable key by key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..config import convert
from ..errors import EdgeConfigError
from .directives import DIRECTIVE_VALUE, Directives, parse_extra_directives
from .paths import REMOTE_PATH_EXAMPLE, check_remote_path, existing_base, expand_worker_path
from .profiles import CONTAINER_RUNTIMES, CVMFS_FALLBACKS, GPU_VISIBLE_VARS, Profile, get_profile
from .render import CONTROL_CHARS

__all__ = [
    "ALRB_SETUP_IN_REPO",
    "DEFAULT_PILOT_ARGS",
    "WORD",
    "WRAPPER_IN_REPO",
    "BatchConfig",
]

WRAPPER_IN_REPO = "atlas.cern.ch/repo/sw/PandaPilotWrapper/latest/runpilot2-wrapper.sh"
ALRB_SETUP_IN_REPO = "atlas.cern.ch/repo/ATLASLocalRootBase/user/atlasLocalSetup.sh"

#: Wrapper/pilot options of ATLAS production pull queues (HTCondor template of
#: harvester_configurations); queue-specific ones (-s -r -q -j -i, versions) are added per worker.
DEFAULT_PILOT_ARGS = (
    "-w", "generic", "--pilot-user", "ATLAS", "--url", "https://pandaserver.cern.ch",
    "--harvester-submit-mode", "PULL", "--allow-same-user=False",
)  # fmt: skip

_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
#: One plain word (job names, pilot types and labels).
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+@%,=-]*\Z")


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
        if value is not None and not DIRECTIVE_VALUE.match(value):
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
        if value is not None and not WORD.match(value):
            raise self._fail(key, "must be one word of letters, digits and ._:+@%,=-")
        return value


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
    extra_directives: Directives = ()
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
    #: the allocation's walltime in seconds; None: the worker's ``maxWalltime`` (which stock
    #: Harvester's worker maker takes from CRIC's ``maxtime``, 1 s when the queue has none)
    walltime_s: int | None = None

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
            extra_directives=parse_extra_directives(read.strings("extraDirectives", ())),
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
            walltime_s=read.integer("walltimeSeconds", None, 60),
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

    @property
    def base_dir(self) -> str:
        """The part of ``remoteWorkDir`` that exists before a worker's job runs (paths.py)."""
        return existing_base(self.remote_work_dir)


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
