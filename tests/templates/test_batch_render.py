"""Rendering without Slurm: config validation, stock compatibility, quoting, shipped templates."""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
import subprocess
import types
from pathlib import Path
from typing import Any

import pytest

from harvester_edge._quiet import quiet_imports
from harvester_edge.edge.batch import (
    BatchConfig,
    WorkerInfo,
    build_context,
    render_batch_script,
    shell_path,
    shipped_template,
)
from harvester_edge.edge.profiles import PROFILES, get_profile
from harvester_edge.edge.render import TemplateValueError
from harvester_edge.errors import EdgeConfigError
from harvester_edge.harvester import WorkSpec

NOW = datetime.datetime(2025, 1, 2, 3, 4, tzinfo=datetime.timezone.utc)
#: Remote dirs must be absolute (no profile has a default); every config here gives this one.
REMOTE = "/pscratch/sd/h/harvester/edge"

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


def batch(values: dict[str, object] | None = None) -> BatchConfig:
    """``BatchConfig.from_config`` with the required absolute ``remoteWorkDir`` added."""
    return BatchConfig.from_config({"remoteWorkDir": REMOTE, **(values or {})})


def worker(tmp_path: Path, **changes: object) -> WorkerInfo:
    values: dict[str, object] = dict(
        harvester_id="hedge-test", worker_id=42, queue="TEST_QUEUE", job_name="hedge-test-42",
        work_dir=str(tmp_path / "work"), n_core=8, min_ram_mb=2000, max_walltime_s=3700,
        max_disk_mb=10, job_type="managed", resource_type="SCORE",
    )  # fmt: skip
    values.update(changes)
    return WorkerInfo(**values)  # type: ignore[arg-type]


def template_names(template: str) -> set[str]:
    """Placeholder names a template refers to (``{{``/``}}`` are literal braces)."""
    fields = re.finditer(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)(?:!raw)?\}", template)
    return {m.group(1) for m in fields if m.group(1)}


def sfapi_submitter_class() -> type[Any]:
    """The SFAPI submitter, imported without authlib's import-time notice (see _quiet)."""
    with quiet_imports():
        from harvester_edge.plugins.sfapi import SFAPISubmitter
    return SFAPISubmitter


def test_stock_style_template_renders_like_stock_format_map(tmp_path: Path) -> None:
    template = tmp_path / "operator.sh"
    template.write_text(STOCK_STYLE_TEMPLATE)
    cfg = batch({"templateFile": str(template), "nCorePerNode": 4, "tokenDir": "/tok"})
    info = worker(tmp_path)
    rendered = render_batch_script(cfg, info, now=NOW)
    context = build_context(cfg, info, now=NOW)
    assert rendered == STOCK_STYLE_TEMPLATE.format_map(SafeDict(context))
    assert f"#SBATCH -o {tmp_path}/work/42.out\n" in rendered
    assert "#SBATCH -N 2\n#SBATCH --time=62\n#SBATCH --ntasks-per-node=4\n" in rendered
    assert "{notAPlaceholder}" in rendered and 'for i in {1..3}; do echo "${HOME} $i"' in rendered


def test_stock_placeholders_use_stock_formulas(tmp_path: Path) -> None:
    cfg = batch({"nCorePerNode": 4, "nCoreFactor": 2, "logDir": "/logs"})
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
    cfg = batch({"nCorePerNode": 4, "nNode": 3, "pilotsPerNode": 2})
    ctx = build_context(cfg, worker(tmp_path, n_core=0), now=NOW)
    assert (ctx["nNode"], ctx["nCoreTotal"], ctx["coresPerPilot"]) == (3, 12, 2)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_shipped_template_has_no_unknown_placeholders_and_parses(
    tmp_path: Path, profile: str
) -> None:
    config: dict[str, object] = {"profile": profile, "account": "m1234", "pilotsPerNode": 1}
    if profile == "frontier-gpu":
        config["cvmfsexecPath"] = "/opt/cvmfsexec/cvmfsexec"
    cfg = batch(config)
    ctx = build_context(cfg, worker(tmp_path), now=NOW)
    for name in ("slurm_pilots.sh", "node_launcher.sh"):
        assert template_names(shipped_template(name)) <= set(ctx), name
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
    pm = batch({"profile": "perlmutter-gpu", "account": "m1234_g", "pilotsPerNode": 4, "nNode": 2})
    directives = str(build_context(pm, worker(tmp_path), now=NOW)["sbatchDirectives"])
    assert directives.splitlines() == [
        "#SBATCH --nodes=2", "#SBATCH --time=62", "#SBATCH --constraint=gpu",
        "#SBATCH --qos=regular", "#SBATCH --gpus-per-node=4", "#SBATCH --module=cvmfs",
        "#SBATCH --signal=SIGTERM@240", "#SBATCH --no-requeue", "#SBATCH --account=m1234_g",
    ]  # fmt: skip
    assert (pm.gpu_visible_var, pm.gpus_per_pilot, pm.cores_per_pilot) == (
        "CUDA_VISIBLE_DEVICES", 1, 16,
    )  # fmt: skip
    fr = batch({"profile": "frontier-gpu", "pilotsPerNode": 8, "cvmfsexecPath": "/x/cvmfsexec"})
    assert (fr.gpu_visible_var, fr.gpus_per_pilot, fr.cvmfs_fallback) == (
        "ROCR_VISIBLE_DEVICES", 1, "cvmfsexec",
    )  # fmt: skip
    cpu = batch({"profile": "perlmutter-cpu", "qos": "debug"})
    assert "#SBATCH --qos=debug" in str(build_context(cpu, worker(tmp_path))["sbatchDirectives"])
    assert get_profile("generic").gpu_visible_var is None


def test_extra_directives_override_and_generic_asks_for_cpus(tmp_path: Path) -> None:
    cfg = batch(
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
        batch(config)


def test_unknown_keys_are_ignored_and_defaults_apply() -> None:
    cfg = batch({"module": "x", "name": "y", "queueName": "Q", "foo": [1]})
    assert cfg.profile.name == "generic" and cfg.pilots_per_node == 1
    assert cfg.pilot_wrapper == (
        "/cvmfs/atlas.cern.ch/repo/sw/PandaPilotWrapper/latest/runpilot2-wrapper.sh"
    )
    assert cfg.worker_dir("h1", 7) == f"{REMOTE}/h1/7"
    custom = batch({"remoteWorkDir": "/pscratch/sd/h/harvester/${queueName}/w/${workerID}"})
    assert custom.worker_dir("h1", 7, "Q") == "/pscratch/sd/h/harvester/Q/w/7"


# --- item 17: remote paths are absolute; ${SCRATCH}-style references are refused -------------

ENV_REFERENCE = "not expanded by the edge services' file utilities; give the absolute path"


@pytest.mark.parametrize("key", ["remoteWorkDir", "logDir"])
@pytest.mark.parametrize(
    "value",
    [
        "${SCRATCH}/harvester-edge",
        "$SCRATCH/harvester-edge",
        "/pscratch/sd/h/${USER}/edge",
        "/pscratch/sd/h/$USER/edge",
        "/pscratch/edge/${workerId}",  # not one of Harvester's placeholders (case matters)
        "/pscratch/edge/$(whoami)",
        "/pscratch/edge/$",
    ],
)
def test_environment_references_in_remote_paths_are_refused(key: str, value: str) -> None:
    with pytest.raises(EdgeConfigError, match=rf"^{key}: environment references such as") as err:
        batch({key: value})
    assert ENV_REFERENCE in str(err.value)
    assert "/pscratch/sd/<u>/<user>/harvester-edge" in str(err.value)


@pytest.mark.parametrize("key", ["remoteWorkDir", "logDir"])
@pytest.mark.parametrize("value", ["relative/dir", "~/harvester-edge", "pscratch/sd/h/edge"])
def test_relative_remote_paths_are_refused(key: str, value: str) -> None:
    with pytest.raises(EdgeConfigError, match=rf"^{key}: must be an absolute path"):
        batch({key: value})


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_remote_work_dir_is_required_naming_the_profile(profile: str) -> None:
    config: dict[str, object] = {"profile": profile, "cvmfsexecPath": "/opt/cvmfsexec"}
    for missing in ({}, {"remoteWorkDir": ""}, {"remoteWorkDir": None}):
        with pytest.raises(EdgeConfigError, match=rf"^remoteWorkDir: required \(profile {profile}"):
            BatchConfig.from_config({**config, **missing})
    assert PROFILES[profile].remote_work_dir is None  # no ${...} defaults


def test_harvester_placeholders_expand_in_stock_paths(tmp_path: Path) -> None:
    """{accessPoint}/{logDir}/{logSubDir} of an operator's template are plain absolute paths."""
    template = tmp_path / "operator.sh"
    template.write_text(
        "#SBATCH -o {accessPoint}/{workerID}.out\n#SBATCH -e {logSubDir}/{workerID}.err\n"
        "cd {accessPoint} && echo {logDir}\n"
    )
    cfg = batch(
        {"templateFile": str(template), "remoteWorkDir": "/pscratch/sd/h/harvester/${queueName}",
         "logDir": "/pscratch/sd/h/harvester/logs/${harvesterID}/${queueName}"}
    )  # fmt: skip
    info = worker(tmp_path, work_dir=cfg.worker_dir("hedge-test", 42, "TEST_QUEUE"))
    assert render_batch_script(cfg, info, now=NOW) == (
        "#SBATCH -o /pscratch/sd/h/harvester/TEST_QUEUE/hedge-test/42/42.out\n"
        "#SBATCH -e /pscratch/sd/h/harvester/logs/hedge-test/TEST_QUEUE/25-01-02_03/42.err\n"
        "cd /pscratch/sd/h/harvester/TEST_QUEUE/hedge-test/42 && "
        "echo /pscratch/sd/h/harvester/logs/hedge-test/TEST_QUEUE\n"
    )


@pytest.mark.parametrize("work_dir", ["${SCRATCH}/w/42", "/w/$(id)/42", "w/42"])
def test_worker_dir_with_dollar_or_relative_is_refused_at_render(
    tmp_path: Path, work_dir: str
) -> None:
    with pytest.raises(EdgeConfigError, match="^workDir"):
        render_batch_script(batch(), worker(tmp_path, work_dir=work_dir))


def test_hostile_queue_name_cannot_bring_a_dollar_into_the_work_dir(tmp_path: Path) -> None:
    cfg = batch({"remoteWorkDir": "/pscratch/sd/h/harvester/${queueName}/${workerID}"})
    queue = "$(touch /tmp/pwned)"
    info = worker(tmp_path, queue=queue, work_dir=cfg.worker_dir("h", 42, queue))
    with pytest.raises(EdgeConfigError, match="^workDir"):
        render_batch_script(cfg, info)


def test_submitter_refuses_scratch_reference_at_construction() -> None:
    """Config time: the plugin constructor (no I/O) refuses the old Perlmutter default."""
    submitter_class = sfapi_submitter_class()

    conf = {"queueName": "Q", "apiUrl": "http://127.0.0.1:9/api", "tokenUrl": "http://127.0.0.1:9",
            "keyFile": "/nonexistent/key.pem", "machine": "perlmutter",
            "profile": "perlmutter-gpu"}  # fmt: skip
    with pytest.raises(EdgeConfigError, match="^remoteWorkDir: required"):
        submitter_class(**conf)
    with pytest.raises(EdgeConfigError, match="^remoteWorkDir: environment references"):
        submitter_class(**conf, remoteWorkDir="${SCRATCH}/harvester-edge")
    submitter_class(**conf, remoteWorkDir="/pscratch/sd/h/harvester/edge")


def test_missing_template_file_names_the_key(tmp_path: Path) -> None:
    cfg = batch({"templateFile": str(tmp_path / "nope.sh")})
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
        render_batch_script(batch(), worker(tmp_path, **changes))


def test_job_name_must_be_a_plain_word(tmp_path: Path) -> None:
    with pytest.raises(EdgeConfigError, match="^jobName"):
        render_batch_script(batch(), worker(tmp_path, job_name="a b;c"))


def test_hostile_values_are_quoted_in_the_rendered_script(tmp_path: Path) -> None:
    info = worker(tmp_path, queue="$(touch /tmp/pwned)", resource_type="; rm -rf ~")
    cfg = batch({"pilotArgs": ["`id`", "it's"]})
    script = render_batch_script(cfg, info)
    assert "HEDGE_QUEUE='$(touch /tmp/pwned)'" in script
    assert "--resource-type '; rm -rf ~'" in script
    assert "'`id`' 'it'\"'\"'s'" in script


def test_shell_path_expands_nothing() -> None:
    assert shell_path("d", "/pscratch/a b/42") == '"/pscratch/a b/42"'
    assert shell_path("d", "${SCRATCH}/a/$USER") == '"\\${SCRATCH}/a/\\$USER"'
    assert shell_path("d", '/x/$(id)/`id`/"q"') == '"/x/\\$(id)/\\`id\\`/\\"q\\""'
    with pytest.raises(EdgeConfigError):
        shell_path("d", "/x\n/y")


def test_worker_info_from_workspec() -> None:
    ws = WorkSpec()
    ws.workerID, ws.computingSite, ws.nCore, ws.maxWalltime = 9, "Q", 4, 600
    ws.jobType, ws.resourceType, ws.pilotType = "managed", "MCORE", "PT"
    info = WorkerInfo.from_workspec(ws, "hid", "hedge-hid-9", "/w/9")
    assert (info.worker_id, info.queue, info.n_core, info.min_ram_mb) == (9, "Q", 4, 0)
    ctx = build_context(batch({"nCorePerNode": 4}), info)
    assert (ctx["pilotType"], ctx["pilotJobLabel"]) == ("PR", "ptest")
    assert "--job-type=managed --resource-type MCORE" in str(ctx["pilotCommand"])


# --- item 12: float resource counts (ResourceTypeMapper) round up; bad values name the field --


def test_float_resource_counts_round_up(tmp_path: Path) -> None:
    ws = WorkSpec()
    ws.workerID, ws.computingSite = 9, "Q"
    ws.nCore, ws.minRamCount, ws.maxDiskCount, ws.maxWalltime = 8.0, 1843.2, 2000.0, 3599.5
    info = WorkerInfo.from_workspec(ws, "hid", "hedge-hid-9", "/w/9")
    assert (info.n_core, info.min_ram_mb, info.max_disk_mb, info.max_walltime_s) == (
        8, 1844, 2000, 3600,
    )  # fmt: skip
    assert all(
        type(v) is int
        for v in (info.n_core, info.min_ram_mb, info.max_disk_mb, info.max_walltime_s)
    )
    template = tmp_path / "operator.sh"
    template.write_text(STOCK_STYLE_TEMPLATE)
    cfg = batch({"templateFile": str(template), "nCorePerNode": 4})
    script = render_batch_script(cfg, info, now=NOW)
    assert "#SBATCH --mem=1844\n" in script
    ctx = build_context(cfg, info, now=NOW)
    assert (ctx["requestRam"], ctx["requestDisk"], ctx["requestWalltime"]) == (
        1844,
        2000 * 1024,
        3600,
    )
    assert ctx["requestWalltimeMinute"] == 60


def test_submitter_builds_the_job_of_a_float_ram_worker(tmp_path: Path) -> None:
    """End to end through the submitter's preparation: a float minRamCount no longer fails."""
    submitter_class = sfapi_submitter_class()

    submitter = submitter_class(
        queueName="Q", apiUrl="http://127.0.0.1:9/api", tokenUrl="http://127.0.0.1:9",
        keyFile="/nonexistent/key.pem", machine="perlmutter", profile="generic",
        remoteWorkDir=REMOTE, templateFile=str(tmp_path / "operator.sh"), nCorePerNode=8,
    )  # fmt: skip
    (tmp_path / "operator.sh").write_text(STOCK_STYLE_TEMPLATE)
    ws = WorkSpec()
    ws.workerID, ws.computingSite, ws.mapType = 9, "Q", WorkSpec.MT_NoJob
    ws.nCore, ws.minRamCount, ws.maxDiskCount, ws.maxWalltime = 8, 1843.2, 2000.0, 600
    request = submitter._prepare(ws)
    assert "#SBATCH --mem=1844\n" in request.script


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nCore", 8.5),
        ("nCore", True),
        ("nCore", -1),
        ("minRamCount", float("nan")),
        ("minRamCount", float("inf")),
        ("minRamCount", -0.5),
        ("minRamCount", False),
        ("maxDiskCount", float("-inf")),
        ("maxDiskCount", "2000"),
        ("maxWalltime", float("nan")),
        ("maxWalltime", -60),
    ],
)
def test_bad_worker_numbers_name_the_field(field: str, value: object) -> None:
    ws = WorkSpec()
    ws.workerID, ws.computingSite = 9, "Q"
    setattr(ws, field, value)
    with pytest.raises(EdgeConfigError, match=rf"^{field}: worker field"):
        WorkerInfo.from_workspec(ws, "hid", "hedge-hid-9", "/w/9")


def test_rendering_never_reads_the_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """logSubDir comes from the worker's own time (or ``now``), never from the clock."""
    import time

    from harvester_edge.edge import placeholders, script
    from harvester_edge.edge import worker as worker_module

    def no_clock(*args: object) -> object:
        raise AssertionError("rendering read the clock")

    class NoClockDatetime(datetime.datetime):
        now = utcnow = today = staticmethod(no_clock)  # type: ignore[assignment]

    fake_datetime = types.SimpleNamespace(
        datetime=NoClockDatetime,
        timezone=datetime.timezone,
        date=types.SimpleNamespace(today=no_clock),
    )
    cfg = batch({"nCorePerNode": 8, "logDir": "/logs"})
    info = worker(tmp_path)
    expected = render_batch_script(cfg, info, now=NOW)
    for module in (placeholders, script, worker_module):
        if hasattr(module, "datetime"):
            monkeypatch.setattr(module, "datetime", fake_datetime)
    for name in ("time", "time_ns", "monotonic", "perf_counter"):
        monkeypatch.setattr(time, name, no_clock)
    assert render_batch_script(cfg, info, now=NOW) == expected
    assert build_context(cfg, info, now=NOW)["logSubDir"] == "/logs/25-01-02_03"
    created = dataclasses.replace(info, created=NOW)
    assert render_batch_script(cfg, created) == expected
    assert build_context(cfg, info)["logSubDir"] == "/logs/70-01-01_00"  # no time: the epoch


def test_log_sub_dir_hour_is_utc(tmp_path: Path) -> None:
    """Naive times are UTC (as Harvester stores them); aware ones are converted to UTC."""
    cfg = batch({"logDir": "/logs"})
    naive = worker(tmp_path, created=datetime.datetime(2025, 3, 4, 23, 59))
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    aware = worker(tmp_path, created=datetime.datetime(2025, 3, 5, 1, 59, tzinfo=plus2))
    assert build_context(cfg, naive)["logSubDir"] == "/logs/25-03-04_23"
    assert build_context(cfg, aware)["logSubDir"] == "/logs/25-03-04_23"


def test_worker_time_comes_from_creation_then_submit_time() -> None:
    ws = WorkSpec()
    ws.workerID, ws.computingSite = 9, "Q"
    first, second = datetime.datetime(2025, 1, 1, 5), datetime.datetime(2025, 1, 1, 6)
    assert WorkerInfo.from_workspec(ws, "h", "j", "/w").created is None
    ws.submitTime = second
    assert WorkerInfo.from_workspec(ws, "h", "j", "/w").created == second
    ws.creationTime = first
    assert WorkerInfo.from_workspec(ws, "h", "j", "/w").created == first
    ws.creationTime = "2025-01-01"  # not a datetime: ignored
    assert WorkerInfo.from_workspec(ws, "h", "j", "/w").created == second


def test_walltime_seconds_wins_over_the_workers_cric_default() -> None:
    """Stock's worker maker sets maxWalltime from CRIC's maxtime, 1 s for a queue without one:
    ``walltimeSeconds`` gives the allocation its walltime whatever the worker says."""
    from harvester_edge.edge.batch import BatchConfig, WorkerInfo, render_batch_script

    base = {"remoteWorkDir": "/w", "profile": "generic"}
    worker = WorkerInfo(
        harvester_id="h", worker_id=1, queue="Q", job_name="hedge-h-Q-w1", max_walltime_s=1,
        work_dir="/w/h/1",
    )  # fmt: skip
    assert "#SBATCH --time=1\n" in render_batch_script(BatchConfig.from_config(base), worker)
    cfg = BatchConfig.from_config({**base, "walltimeSeconds": 21600})
    assert "#SBATCH --time=360\n" in render_batch_script(cfg, worker)
    with pytest.raises(EdgeConfigError, match="walltimeSeconds"):
        BatchConfig.from_config({**base, "walltimeSeconds": 30})
