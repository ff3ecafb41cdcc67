"""Facility profiles: what a node looks like and which ``#SBATCH`` defaults a machine needs.

A profile is pure declaration (STYLE "a facility is mostly declarations"): the batch-script
builder reads node shape (cores, GPUs, how GPUs are made visible), default directives and the
CVMFS fallback from here, and queue config may override each of them.  Facts behind the numbers
are in shared/PILOT_RUNTIME.md.  Perlmutter: 64-core EPYC + 4 A100 per GPU node, 2 x 64 cores
per CPU node, CVMFS mounted, ``--module=cvmfs``, and ATLAS production's ``--signal=SIGTERM@240
--no-requeue`` so pilots get 4 minutes to end cleanly.  Frontier: 56 allocatable cores with the
default ``-S 8``, 8 GCDs seen as 8 GPUs, ``ROCR_VISIBLE_DEVICES``, no CVMFS on compute nodes.

No profile has a default remote work dir: the edge services' file utilities take absolute
paths only (they never expand ``${SCRATCH}``-style references) and a user's scratch path is
not known here, so ``remoteWorkDir`` is required in queue config.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import EdgeConfigError

#: Environment variables that select visible GPUs, by vendor runtime.
GPU_VISIBLE_VARS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")

#: How a node may get CVMFS when it is not mounted natively (``container`` = the profile's runtime).
CVMFS_FALLBACKS = ("none", "cvmfsexec", "shifter", "apptainer", "container")

#: Container runtimes a profile may name as its default.
CONTAINER_RUNTIMES = ("shifter", "apptainer")


@dataclass(frozen=True)
class Profile:
    """Node shape and Slurm defaults of one kind of compute node.

    ``directives`` are default ``#SBATCH --key=value`` pairs (value ``None`` = a bare flag), in
    the order they are written; queue config (account, qos, partition, constraint,
    extraDirectives) overrides them key by key.  ``whole_node`` says the site allocates and
    charges whole nodes, so the script asks for nodes only; otherwise it asks for
    ``--ntasks-per-node=1 --cpus-per-task=<cores>`` so a shared node is not oversubscribed.
    ``remote_work_dir`` is a default for ``remoteWorkDir``: None (required in config), or an
    absolute path with no ``$`` other than Harvester's own placeholders.
    """

    name: str
    description: str
    cores_per_node: int
    gpus_per_node: int = 0
    gpu_visible_var: str | None = None
    directives: tuple[tuple[str, str | None], ...] = ()
    whole_node: bool = False
    cvmfs_fallback: str = "none"
    container_runtime: str = "apptainer"
    container_options: tuple[str, ...] = ()
    remote_work_dir: str | None = None

    def directive(self, key: str) -> str | None:
        """The profile's default value for ``--key`` (None when absent or a bare flag)."""
        return dict(self.directives).get(key)


PROFILES: dict[str, Profile] = {
    "perlmutter-gpu": Profile(
        name="perlmutter-gpu",
        description="NERSC Perlmutter GPU node: 64 cores, 4 NVIDIA A100, CVMFS mounted",
        cores_per_node=64,
        gpus_per_node=4,
        gpu_visible_var="CUDA_VISIBLE_DEVICES",
        directives=(
            ("constraint", "gpu"),
            ("qos", "regular"),
            ("gpus-per-node", "4"),
            ("module", "cvmfs"),
            ("signal", "SIGTERM@240"),
            ("no-requeue", None),
        ),
        whole_node=True,
        cvmfs_fallback="none",
        container_runtime="shifter",
        container_options=("--module=cvmfs",),
    ),
    "perlmutter-cpu": Profile(
        name="perlmutter-cpu",
        description="NERSC Perlmutter CPU node: 2 x 64 cores, CVMFS mounted",
        cores_per_node=128,
        directives=(
            ("constraint", "cpu"),
            ("qos", "regular"),
            ("module", "cvmfs"),
            ("signal", "SIGTERM@240"),
            ("no-requeue", None),
        ),
        whole_node=True,
        cvmfs_fallback="none",
        container_runtime="shifter",
        container_options=("--module=cvmfs",),
    ),
    "frontier-gpu": Profile(
        name="frontier-gpu",
        description="OLCF Frontier-class AMD node: 56 cores (-S 8), 8 MI250X GCDs, no CVMFS",
        cores_per_node=56,
        gpus_per_node=8,
        gpu_visible_var="ROCR_VISIBLE_DEVICES",
        directives=(
            ("partition", "batch"),
            ("gpus-per-node", "8"),
        ),
        whole_node=True,
        cvmfs_fallback="cvmfsexec",
        container_runtime="apptainer",
    ),
    "generic": Profile(
        name="generic",
        description="Any Slurm cluster: no defaults, cores and GPUs from queue config",
        cores_per_node=1,
    ),
}


def get_profile(name: str) -> Profile:
    """Look a profile up by name; an unknown name is a config error naming ``profile``."""
    try:
        return PROFILES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(PROFILES))
        raise EdgeConfigError(f"profile: unknown profile {name!r} (known: {known})") from None
