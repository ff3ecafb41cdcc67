"""Configs and workers whose submitted scripts are pinned byte for byte in ``golden/``.

The ``golden/*.sh`` files were written by the code *before* the job spec existed: the
submitter's old path, ``ensure_tag(render_batch_script(cfg, worker, now=NOW), tag)``.  The job
spec (``edge/spec.py``) must give exactly those bytes for the same worker, so moving SFAPI onto
it changes no script.  Regenerate only on purpose: ``python tests/templates/golden_cases.py``.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

from harvester_edge.edge.batch import BatchConfig, WorkerInfo
from harvester_edge.edge.tags import job_tag

GOLDEN = Path(__file__).resolve().parent / "golden"
NOW = datetime.datetime(2025, 1, 2, 3, 4, tzinfo=datetime.timezone.utc)
HARVESTER_ID = "CERN_central_A"
BASE = "/pscratch/sd/h/harvester/edge"

#: An operator's stock-style template: short options, its own -o/-e, {logSubDir} (the clock
#: value), a job name that the tag must replace.
OPERATOR_TEMPLATE = """#!/bin/bash
#SBATCH -J some-name
#SBATCH -o {accessPoint}/{workerID}.out
#SBATCH -e {logSubDir}/{workerID}.err
#SBATCH -N {nNode}
#SBATCH --time={requestWalltimeMinute}
#SBATCH --ntasks-per-node={nCorePerNode}
#SBATCH --mem={requestRam}
#SBATCH -A m1234 -q debug
export HARVESTER_ID={harvesterID} HARVESTER_WORKER_ID={workerID}
echo {computingSite} {pandaQueueName} {localQueueName} {jobType} {nCoreTotal} {logSubDir}
for i in {{1..3}}; do echo "${{HOME}} $i"; done
"""

#: No job name at all, with a shebang: the tag line goes right after it.
NO_NAME_TEMPLATE = "#!/bin/bash\n#SBATCH --nodes={nNode}\necho {workerID}\n"
#: No shebang: one is added with the tag line.
NO_SHEBANG_TEMPLATE = "#SBATCH --nodes={nNode}\necho {gtag}\n"

TEMPLATES = {
    "operator.sh": OPERATOR_TEMPLATE,
    "no-name.sh": NO_NAME_TEMPLATE,
    "no-shebang.sh": NO_SHEBANG_TEMPLATE,
}

# name: (queue config, worker fields)
CASES: dict[str, tuple[dict[str, object], dict[str, object]]] = {
    "generic-defaults": ({}, {"worker_id": 1, "queue": "TEST_QUEUE"}),
    "generic-shared-node": (
        {"nCorePerNode": 4, "partition": "debug", "qos": "normal", "account": "acct1",
         "extraDirectives": ["--no-requeue", "--signal=B:TERM@240", "--mem=8G"]},
        {"worker_id": 2, "queue": "TEST_QUEUE", "n_core": 4, "min_ram_mb": 2000,
         "max_walltime_s": 3700, "job_type": "managed", "resource_type": "SCORE"},
    ),
    "perlmutter-gpu-level-2": (
        {"profile": "perlmutter-gpu", "account": "m1234_g", "pilotsPerNode": 4, "nNode": 2,
         "logDir": "/pscratch/sd/h/harvester/logs/${queueName}", "tokenDir": "/tok",
         "tokenName": "panda_token", "tokenOrigin": "atlas", "logBaseURL": "https://logs.example"},
        {"worker_id": 12345, "queue": "NERSC_Perlmutter_GPU", "max_walltime_s": 6 * 3600,
         "job_type": "managed", "resource_type": "SCORE", "pilot_type": "PT"},
    ),
    "perlmutter-cpu-container": (
        {"profile": "perlmutter-cpu", "qos": "debug", "cvmfsFallback": "container",
         "containerImage": "docker:atlas/centos7", "pilotsPerNode": 2, "bindCores": True},
        {"worker_id": 7, "queue": "NERSC_Perlmutter_CPU", "max_walltime_s": 1800,
         "n_core": 128},
    ),
    "frontier-gpu-level-1": (
        {"profile": "frontier-gpu", "account": "abc123", "pilotsPerNode": 8, "nNode": 1,
         "cvmfsexecPath": "/lustre/orion/abc123/proj-shared/cvmfsexec/cvmfsexec",
         "pilotArgs": ["-w", "generic", "it's", "$(odd)"], "pilotVersion": "3.9.2"},
        {"worker_id": 99, "queue": "OLCF_Frontier_GPU", "max_walltime_s": 7200,
         "job_type": "unified", "resource_type": "MCORE"},
    ),
    "operator-template": (
        {"templateFile": "operator.sh", "nCorePerNode": 4, "tokenDir": "/tok"},
        {"worker_id": 42, "queue": "TEST_QUEUE", "n_core": 8, "min_ram_mb": 2000,
         "max_walltime_s": 3700, "max_disk_mb": 10, "job_type": "managed"},
    ),
    "operator-no-name": ({"templateFile": "no-name.sh"}, {"worker_id": 43, "queue": "Q"}),
    "operator-no-shebang": ({"templateFile": "no-shebang.sh"}, {"worker_id": 44, "queue": "Q"}),
}  # fmt: skip


def write_templates(directory: Path) -> None:
    """Write the operator templates the cases name into ``directory``."""
    for name, text in TEMPLATES.items():
        (directory / name).write_text(text)


def case(name: str, templates: Path) -> tuple[BatchConfig, WorkerInfo]:
    """The validated config and the worker (job name = the tag, as the submitter makes it)."""
    values, fields = CASES[name]
    config: dict[str, object] = {"remoteWorkDir": BASE, **values}
    if "templateFile" in config:
        config["templateFile"] = str(templates / str(config["templateFile"]))
    cfg = BatchConfig.from_config(config)
    worker_id, queue = int(str(fields["worker_id"])), str(fields["queue"])
    tag = job_tag(HARVESTER_ID, queue, worker_id)
    worker = WorkerInfo(
        harvester_id=HARVESTER_ID,
        job_name=tag,
        work_dir=cfg.worker_dir(HARVESTER_ID, worker_id, queue),
        **fields,  # type: ignore[arg-type]
    )
    return cfg, worker


def main() -> int:  # pragma: no cover - run by hand, on purpose only
    import tempfile

    from harvester_edge.edge.batch import render_batch_script
    from harvester_edge.edge.spec import ensure_tag

    GOLDEN.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        write_templates(Path(tmp))
        for name in CASES:
            cfg, worker = case(name, Path(tmp))
            script = ensure_tag(render_batch_script(cfg, worker, now=NOW), worker.job_name)
            (GOLDEN / f"{name}.sh").write_text(script)
    return 0


if __name__ == "__main__":
    sys.exit(main())
