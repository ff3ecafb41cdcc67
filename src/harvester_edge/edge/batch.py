"""Slurm batch scripts for pilots: the names other code imports, from the modules that hold them.

The batch job is built in short steps, one module each: queue config (``batch_config``), the
worker (``worker``), facility paths (``paths``), stock placeholders (``placeholders``),
``#SBATCH`` directives (``directives``), the pilot command line and environment
(``pilot_command``), the template context and rendering (``script``).  This module keeps the
names the plugins, the CLI, the local site, the docs generator and the tests have always
imported from ``harvester_edge.edge.batch``; the job spec every facility encodes is built from
the same pieces in ``edge/spec.py``.
"""

from __future__ import annotations

from .batch_config import ALRB_SETUP_IN_REPO, DEFAULT_PILOT_ARGS, WRAPPER_IN_REPO, BatchConfig
from .directives import directive_pairs, sbatch_directives
from .paths import REMOTE_PATH_EXAMPLE, check_remote_path, expand_worker_path, shell_path
from .pilot_command import pilot_environment, pilot_words
from .pilot_summary import EXIT_CODES, EXIT_CVMFS, EXIT_LOST, EXIT_SETUP
from .placeholders import stock_placeholders
from .script import (
    BATCH_TEMPLATE,
    LAUNCHER_TEMPLATE,
    build_context,
    read_template,
    render_batch_script,
    shipped_template,
)
from .worker import LOG_TIME_FALLBACK, WorkerInfo

__all__ = [
    "ALRB_SETUP_IN_REPO",
    "BATCH_TEMPLATE",
    "DEFAULT_PILOT_ARGS",
    "EXIT_CODES",
    "EXIT_CVMFS",
    "EXIT_LOST",
    "EXIT_SETUP",
    "LAUNCHER_TEMPLATE",
    "LOG_TIME_FALLBACK",
    "REMOTE_PATH_EXAMPLE",
    "WRAPPER_IN_REPO",
    "BatchConfig",
    "WorkerInfo",
    "build_context",
    "check_remote_path",
    "directive_pairs",
    "expand_worker_path",
    "pilot_environment",
    "pilot_words",
    "read_template",
    "render_batch_script",
    "sbatch_directives",
    "shell_path",
    "shipped_template",
    "stock_placeholders",
]
