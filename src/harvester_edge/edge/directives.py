"""``#SBATCH`` directives decided by queue config: nodes, CPUs, time, profile defaults, extras.

One ordered list of ``(key, value)`` pairs (value ``None`` = a bare flag) is the decision;
:func:`sbatch_directives` writes it as the script's ``#SBATCH`` block and the job spec carries
the same pairs to services that take directives as fields (slurmrestd, IRI).  Extra directives
from config are checked here once: ``--key=value`` with a plain value (no spaces, quotes or
``$``), never a key the script sets itself.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..errors import EdgeConfigError

if TYPE_CHECKING:
    from .batch_config import BatchConfig

__all__ = [
    "DIRECTIVE_VALUE",
    "RESERVED_DIRECTIVES",
    "Directives",
    "directive_pairs",
    "parse_extra_directives",
    "sbatch_directives",
]

#: ``(key, value)`` pairs in the order they are written; value ``None`` is a bare flag.
Directives = tuple[tuple[str, str | None], ...]

#: Characters allowed in a directive value from config (nothing a shell or sbatch would read).
DIRECTIVE_VALUE = re.compile(r"[A-Za-z0-9_./:@%+=,~^&|*!()\[\]-]+\Z")
_DIRECTIVE = re.compile(r"--([a-z][a-z0-9-]*)(?:=(.+))?\Z")
RESERVED_DIRECTIVES = frozenset({"nodes", "job-name", "ntasks", "ntasks-per-node"})


def parse_extra_directives(values: tuple[str, ...]) -> Directives:
    """``--key=value`` / ``--flag`` strings from ``extraDirectives``, each checked."""
    parsed = []
    for item in values:
        match = _DIRECTIVE.match(item)
        if not match or (match.group(2) is not None and not DIRECTIVE_VALUE.match(match.group(2))):
            raise EdgeConfigError(
                f"extraDirectives: {item!r} is not --key=value with a plain value (no spaces, "
                "quotes or $)"
            )
        if match.group(1) in RESERVED_DIRECTIVES:
            raise EdgeConfigError(
                f"extraDirectives: --{match.group(1)} is set by the script (use nNode)"
            )
        parsed.append((match.group(1), match.group(2)))
    return tuple(parsed)


def directive_pairs(cfg: BatchConfig, n_node: int, walltime_minutes: int) -> Directives:
    """Nodes, CPUs (shared-node sites), time, then profile defaults overridden by config."""
    pairs: list[tuple[str, str | None]] = [("nodes", str(n_node))]
    if not cfg.profile.whole_node:
        pairs += [("ntasks-per-node", "1"), ("cpus-per-task", str(cfg.n_core_per_node))]
    if walltime_minutes > 0:
        pairs.append(("time", str(walltime_minutes)))
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
    return tuple(pairs) + tuple(merged.items())


def sbatch_directives(cfg: BatchConfig, n_node: int, walltime_minutes: int) -> str:
    """The ``#SBATCH`` block: nodes, CPUs (shared-node sites), time, profile/config/extras."""
    pairs = directive_pairs(cfg, n_node, walltime_minutes)
    return "\n".join(f"#SBATCH --{k}" if v is None else f"#SBATCH --{k}={v}" for k, v in pairs)
