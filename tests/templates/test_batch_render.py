"""Rendering without Slurm: config validation, stock compatibility, quoting, shipped templates."""

from __future__ import annotations

import datetime
import math
import re
import subprocess
from pathlib import Path

import pytest

from harvester_edge.edge.batch import (
    BatchConfig,
    WorkerInfo,
    build_context,
    render_batch_script,
    shell_path,
    shipped_template,
)
from harvester_edge.edge.profiles import PROFILES, get_profile
from harvester_edge.edge.render import TemplateValueError, placeholders
from harvester_edge.errors import EdgeConfigError
from harvester_edge.harvester import WorkSpec

NOW = datetime.datetime(2025, 1, 2, 3, 4, tzinfo=datetime.timezone.utc)

STOCK_PLACEHOLDERS = (
    "nCorePerNode nCoreTotal nCoreFactor nNode requestRam requestRamBytes requestRamPerCore "
    "requestRamBytesPerCore requestDisk requestWalltime requestWalltimeMinute requestCputime "
    "requestCputimeMinute accessPoint harvesterID workerID computingSite pandaQueueName "
    "localQueueName logDir logSubDir jobType gtag"
).split()

STOCK_STYLE_TEMPLATE = """#!/bin/bash
#SBATCH -o {accessPoint}/{workerID}.out
#SBATCH -e {accessPoint}/{workerID}.err
#SBATCH -N {nNode}
#SBATCH --time={requestWalltimeMinute}
#SBATCH --ntasks-per-node={nCorePerNode}
#SBATCH --mem={requestRam}
export HARVESTER_ID={harvesterID} HARVESTER_WORKER_ID={workerID}
echo {computingSite} {pandaQueueName} {localQueueName} {jobType} {nCoreTotal} {logSubDir}
echo {requestRamPerCore} {requestDisk} {requestCputimeMinute} {tokenDir} {notAPlaceholder}
for i in {{1..3}}; do echo "${{HOME}} $i"; done
"""


class SafeDict(dict):  # type: ignore[type-arg]
    """Stock Harvester's core_utils.SafeDict: unknown names stay as they are."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def worker(tmp_path: Path, **changes: object) -> WorkerInfo:
    values: dict[str, object] = dict(
        harvester_id="hedge-test", worker_id=42, queue="TEST_QUEUE", job_name="hedge-test-42",
        work_dir=str(tmp_path / "work"), n_core=8, min_ram_mb=2000, max_walltime_s=3700,
        max_disk_mb=10, job_type="managed", resource_type="SCORE",
    )  # fmt: skip
    values.update(changes)
    return WorkerInfo(**values)  # type: ignore[arg-type]


def test_stock_style_template_renders_like_stock_format_map(tmp_path: Path) -> None:
    template = tmp_path / "operator.sh"
    template.write_text(STOCK_STYLE_TEMPLATE)
    cfg = BatchConfig.from_config(
        {"templateFile": str(template), "nCorePerNode": 4, "tokenDir": "/tok"}
    )
    info = worker(tmp_path)
    rendered = render_batch_script(cfg, info, now=NOW)
    context = build_context(cfg, info, now=NOW)
    assert rendered == STOCK_STYLE_TEMPLATE.format_map(SafeDict(context))
    assert f"#SBATCH -o {tmp_path}/work/42.out\n" in rendered
    assert "#SBATCH -N 2\n#SBATCH --time=62\n#SBATCH --ntasks-per-node=4\n" in rendered
    assert "{notAPlaceholder}" in rendered and 'for i in {1..3}; do echo "${HOME} $i"' in rendered


def test_stock_placeholders_use_stock_formulas(tmp_path: Path) -> None:
    cfg = BatchConfig.from_config({"nCorePerNode": 4, "nCoreFactor": 2, "logDir": "/logs"})
    ctx = build_context(cfg, worker(tmp_path), now=NOW)
    assert set(STOCK_PLACEHOLDERS) <= set(ctx)
    n_node = math.ceil(8 / 4)
    expected = {
        "nCorePerNode": 4, "nCoreTotal": 16, "nCoreFactor": 2, "nNode": n_node,
        "requestRam": 4000, "requestRamBytes": 2000 * 2**20 * 2,
        "requestRamPerCore": math.ceil(2000 * n_node / 8),
        "requestRamBytesPerCore": math.ceil(2000 * 2**20 * n_node / 8),
        "requestDisk": 10 * 1024, "requestWalltime": 3700, "requestWalltimeMinute": 62,
        "requestCputime": 3700 * 8, "requestCputimeMinute": math.ceil(3700 * 8 / 60),
        "accessPoint": str(tmp_path / "work"), "harvesterID": "hedge-test", "workerID": 42,
        "computingSite": "TEST_QUEUE", "pandaQueueName": "TEST_QUEUE", "localQueueName": "grid",
        "logDir": "/logs", "logSubDir": "/logs/25-01-02_03", "jobType": "managed",
    }  # fmt: skip
    assert {k: ctx[k] for k in expected} == expected
    assert "tokenDir" not in ctx  # stock leaves unconfigured token placeholders alone


def test_configured_nnode_is_used_for_level_2(tmp_path: Path) -> None:
    cfg = BatchConfig.from_config({"nCorePerNode": 4, "nNode": 3, "pilotsPerNode": 2})
    ctx = build_context(cfg, worker(tmp_path, n_core=0), now=NOW)
    assert (ctx["nNode"], ctx["nCoreTotal"], ctx["coresPerPilot"]) == (3, 12, 2)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_shipped_template_has_no_unknown_placeholders_and_parses(
    tmp_path: Path, profile: str
) -> None:
    config: dict[str, object] = {"profile": profile, "account": "m1234", "pilotsPerNode": 1}
    if profile == "frontier-gpu":
        config["cvmfsexecPath"] = "/opt/cvmfsexec/cvmfsexec"
    cfg = BatchConfig.from_config(config)
    ctx = build_context(cfg, worker(tmp_path), now=NOW)
    for name in ("slurm_pilots.sh", "node_launcher.sh"):
        assert placeholders(shipped_template(name)) <= set(ctx), name
    script = render_batch_script(cfg, worker(tmp_path), now=NOW)
    assert "#SBATCH --job-name=hedge-test-42\n" in script
    assert not re.search(r"\{[A-Za-z_][A-Za-z0-9_]*(!raw)?\}", script)
    path = tmp_path / "job.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    launcher = tmp_path / "launcher.sh"
    launcher.write_text(str(ctx["launcherScript"]))
    subprocess.run(["bash", "-n", str(launcher)], check=True)


def test_profiles_directives_and_gpu_variables(tmp_path: Path) -> None:
    pm = BatchConfig.from_config(
        {"profile": "perlmutter-gpu", "account": "m1234_g", "pilotsPerNode": 4, "nNode": 2}
    )
    directives = str(build_context(pm, worker(tmp_path), now=NOW)["sbatchDirectives"])
    assert directives.splitlines() == [
        "#SBATCH --nodes=2", "#SBATCH --time=62", "#SBATCH --constraint=gpu",
        "#SBATCH --qos=regular", "#SBATCH --gpus-per-node=4", "#SBATCH --module=cvmfs",
        "#SBATCH --signal=SIGTERM@240", "#SBATCH --no-requeue", "#SBATCH --account=m1234_g",
    ]  # fmt: skip
    assert (pm.gpu_visible_var, pm.gpus_per_pilot, pm.cores_per_pilot) == (
        "CUDA_VISIBLE_DEVICES", 1, 16,
    )  # fmt: skip
    fr = BatchConfig.from_config(
        {"profile": "frontier-gpu", "pilotsPerNode": 8, "cvmfsexecPath": "/x/cvmfsexec"}
    )
    assert (fr.gpu_visible_var, fr.gpus_per_pilot, fr.cvmfs_fallback) == (
        "ROCR_VISIBLE_DEVICES", 1, "cvmfsexec",
    )  # fmt: skip
    cpu = BatchConfig.from_config({"profile": "perlmutter-cpu", "qos": "debug"})
    assert "#SBATCH --qos=debug" in str(build_context(cpu, worker(tmp_path))["sbatchDirectives"])
    assert get_profile("generic").gpu_visible_var is None


def test_extra_directives_override_and_generic_asks_for_cpus(tmp_path: Path) -> None:
    cfg = BatchConfig.from_config(
        {"nCorePerNode": 4, "partition": "debug",
         "extraDirectives": ["--partition=other", "--no-requeue", "--signal=B:TERM@240"]}
    )  # fmt: skip
    lines = str(build_context(cfg, worker(tmp_path))["sbatchDirectives"]).splitlines()
    assert "#SBATCH --cpus-per-task=4" in lines and "#SBATCH --ntasks-per-node=1" in lines
    assert "#SBATCH --partition=other" in lines and "#SBATCH --partition=debug" not in lines
    assert lines[-2:] == ["#SBATCH --no-requeue", "#SBATCH --signal=B:TERM@240"]


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"profile": "cray"}, "profile"),
        ({"pilotsPerNode": "many"}, "pilotsPerNode"),
        ({"pilotsPerNode": 0}, "pilotsPerNode"),
        ({"nCorePerNode": 2, "pilotsPerNode": 4}, "pilotsPerNode"),
        ({"profile": "perlmutter-gpu", "pilotsPerNode": 8}, "pilotsPerNode"),
        ({"gpusPerNode": 2, "nCorePerNode": 2}, "gpuVisibleVar"),
        ({"nNode": True}, "nNode"),
        ({"account": "m1234; rm -rf /"}, "account"),
        ({"constraint": "gpu\n#SBATCH --x"}, "constraint"),
        ({"extraDirectives": ["--comment=$(id)"]}, "extraDirectives"),
        ({"extraDirectives": ["-C gpu"]}, "extraDirectives"),
        ({"extraDirectives": ["--nodes=4"]}, "extraDirectives"),
        ({"extraDirectives": "--qos=debug"}, "extraDirectives"),
        ({"cvmfsRepos": ["atlas.cern.ch", "../etc"]}, "cvmfsRepos"),
        ({"cvmfsRoot": "cvmfs"}, "cvmfsRoot"),
        ({"cvmfsCheckTimeout": 0}, "cvmfsCheckTimeout"),
        ({"cvmfsFallback": "magic"}, "cvmfsFallback"),
        ({"cvmfsFallback": "cvmfsexec"}, "cvmfsexecPath"),
        ({"cvmfsFallback": "apptainer"}, "containerImage"),
        ({"pilotArgs": ["-w", 3]}, "pilotArgs"),
        ({"pilotArgs": ["a\nb"]}, "pilotArgs"),
        ({"pilotWrapper": "runpilot2-wrapper.sh"}, "pilotWrapper"),
        ({"pilotType": "P R"}, "pilotType"),
        ({"remoteWorkDir": "relative/dir"}, "remoteWorkDir"),
        ({"gpuVisibleVar": "LD_PRELOAD"}, "gpuVisibleVar"),
        ({"bindCores": "perhaps"}, "bindCores"),
        ({"tokenName": 5}, "tokenName"),
    ],
)
def test_bad_config_names_the_key(config: dict[str, object], key: str) -> None:
    with pytest.raises(EdgeConfigError, match=rf"^{key}\b"):
        BatchConfig.from_config(config)


def test_unknown_keys_are_ignored_and_defaults_apply() -> None:
    cfg = BatchConfig.from_config({"module": "x", "name": "y", "queueName": "Q", "foo": [1]})
    assert cfg.profile.name == "generic" and cfg.pilots_per_node == 1
    assert cfg.pilot_wrapper == (
        "/cvmfs/atlas.cern.ch/repo/sw/PandaPilotWrapper/latest/runpilot2-wrapper.sh"
    )
    assert cfg.worker_dir("h1", 7) == "${HOME}/harvester-edge/h1/7"
    custom = BatchConfig.from_config({"remoteWorkDir": "$SCRATCH/w/${workerID}"})
    assert custom.worker_dir("h1", 7) == "$SCRATCH/w/7"


def test_missing_template_file_names_the_key(tmp_path: Path) -> None:
    cfg = BatchConfig.from_config({"templateFile": str(tmp_path / "nope.sh")})
    with pytest.raises(EdgeConfigError, match="^templateFile"):
        render_batch_script(cfg, worker(tmp_path))


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"queue": "Q\nrm -rf /"}, "pandaQueueName"),
        ({"harvester_id": "h\r1"}, "harvesterID"),
        ({"job_type": "managed\n#SBATCH -A other"}, "jobType"),
    ],
)
def test_newlines_are_refused_naming_the_placeholder(
    tmp_path: Path, changes: dict[str, object], name: str
) -> None:
    with pytest.raises(TemplateValueError, match=name):
        render_batch_script(BatchConfig.from_config({}), worker(tmp_path, **changes))


def test_job_name_must_be_a_plain_word(tmp_path: Path) -> None:
    with pytest.raises(EdgeConfigError, match="^jobName"):
        render_batch_script(BatchConfig.from_config({}), worker(tmp_path, job_name="a b;c"))


def test_hostile_values_are_quoted_in_the_rendered_script(tmp_path: Path) -> None:
    info = worker(tmp_path, queue="$(touch /tmp/pwned)", resource_type="; rm -rf ~")
    cfg = BatchConfig.from_config({"pilotArgs": ["`id`", "it's"]})
    script = render_batch_script(cfg, info)
    assert "HEDGE_QUEUE='$(touch /tmp/pwned)'" in script
    assert "--resource-type '; rm -rf ~'" in script
    assert "'`id`' 'it'\"'\"'s'" in script


def test_shell_path_expands_only_environment_references() -> None:
    assert shell_path("d", "${SCRATCH}/a b/$USER") == '"${SCRATCH}/a b/${USER}"'
    assert shell_path("d", '/x/$(id)/`id`/"q"') == '"/x/\\$(id)/\\`id\\`/\\"q\\""'
    with pytest.raises(EdgeConfigError):
        shell_path("d", "/x\n/y")


def test_worker_info_from_workspec() -> None:
    ws = WorkSpec()
    ws.workerID, ws.computingSite, ws.nCore, ws.maxWalltime = 9, "Q", 4, 600
    ws.jobType, ws.resourceType, ws.pilotType = "managed", "MCORE", "PT"
    info = WorkerInfo.from_workspec(ws, "hid", "hedge-hid-9", "/w/9")
    assert (info.worker_id, info.queue, info.n_core, info.min_ram_mb) == (9, "Q", 4, 0)
    ctx = build_context(BatchConfig.from_config({"nCorePerNode": 4}), info)
    assert (ctx["pilotType"], ctx["pilotJobLabel"]) == ("PR", "ptest")
    assert "--job-type=managed --resource-type MCORE" in str(ctx["pilotCommand"])
