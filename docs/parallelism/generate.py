"""Refresh the rendered scripts in docs/parallelism/*.md from the code.

Each page marks a rendered block with ``<!-- rendered: EXAMPLE PART -->`` followed by a fenced
``bash`` block; this script re-renders EXAMPLE (see :data:`EXAMPLES`) and replaces the block, so
the docs show exactly what the shipped templates produce.  ``tests/templates`` checks that the
pages are up to date.  Usage: ``python docs/parallelism/generate.py [--check]``.
"""

from __future__ import annotations

import datetime
import re
import sys
from itertools import takewhile
from pathlib import Path

from harvester_edge.edge.batch import BatchConfig, WorkerInfo, render_batch_script

HERE = Path(__file__).resolve().parent
PAGES = ("index.md", "level-1.md", "level-2.md", "level-3.md")
NOW = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
HARVESTER_ID = "CERN_central_A"

# Remote dirs are absolute (the facilities' file utilities do not expand ${SCRATCH}).
PERLMUTTER = {
    "profile": "perlmutter-gpu",
    "account": "m1234_g",
    "pilotsPerNode": 4,
    "remoteWorkDir": "/pscratch/sd/h/harvester/edge",
}
FRONTIER = {
    "profile": "frontier-gpu",
    "account": "abc123",
    "pilotsPerNode": 8,
    "remoteWorkDir": "/lustre/orion/abc123/scratch/harvester/edge",
    "cvmfsexecPath": "/lustre/orion/abc123/proj-shared/cvmfsexec/cvmfsexec",
}

# name: (queue config, PanDA queue, walltime in s)
EXAMPLES: dict[str, tuple[dict[str, object], str, int]] = {
    "perlmutter-gpu-level-1": ({**PERLMUTTER, "nNode": 1}, "NERSC_Perlmutter_GPU", 6 * 3600),
    "frontier-gpu-level-1": ({**FRONTIER, "nNode": 1}, "OLCF_Frontier_GPU", 2 * 3600),
    "perlmutter-gpu-level-2": ({**PERLMUTTER, "nNode": 4}, "NERSC_Perlmutter_GPU", 6 * 3600),
    "frontier-gpu-level-2": ({**FRONTIER, "nNode": 4}, "OLCF_Frontier_GPU", 2 * 3600),
}

BLOCK = re.compile(
    r"(?P<head><!-- rendered: (?P<name>[\w-]+) (?P<part>full|header) -->\n```bash\n)"
    r"(?P<body>.*?)(?P<tail>^```$)",
    re.S | re.M,
)


def example_script(name: str) -> str:
    """The batch script of one documented example, rendered by the shipped code."""
    config, queue, walltime = EXAMPLES[name]
    cfg = BatchConfig.from_config(config)
    worker_id = 12345
    worker = WorkerInfo(
        harvester_id=HARVESTER_ID,
        worker_id=worker_id,
        queue=queue,
        job_name=f"hedge-{HARVESTER_ID}-{worker_id}",
        max_walltime_s=walltime,
        resource_type="SCORE",
        job_type="managed",
        work_dir=cfg.worker_dir(HARVESTER_ID, worker_id, queue),
    )
    return render_batch_script(cfg, worker, now=NOW)


def part(name: str, which: str) -> str:
    """``full`` script, or its ``header`` (the shebang and the ``#SBATCH`` lines)."""
    script = example_script(name)
    if which == "header":
        lines = script.splitlines(keepends=True)
        script = "".join(takewhile(lambda line: line.startswith(("#!", "#SBATCH")), lines))
    return script


def refresh(text: str) -> str:
    """``text`` with every marked block replaced by the current rendering."""

    def fill(match: re.Match[str]) -> str:
        return match.group("head") + part(match.group("name"), match.group("part")) + "```"

    return BLOCK.sub(fill, text)


def stale_pages() -> list[str]:
    """Pages whose rendered blocks differ from what the code renders now."""
    return [p for p in PAGES if refresh((HERE / p).read_text()) != (HERE / p).read_text()]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        stale = stale_pages()
        print("stale: " + ", ".join(stale) if stale else "docs up to date")
        return 1 if stale else 0
    for page in PAGES:
        path = HERE / page
        path.write_text(refresh(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
