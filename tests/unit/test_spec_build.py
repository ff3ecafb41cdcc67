"""build_job_spec: one place decides nodes, time, account, partition, QOS, constraint, paths,
parallelism and memory, from the same values the script is rendered from."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pytest

from harvester_edge.edge.batch import BatchConfig, WorkerInfo, build_context, directive_pairs
from harvester_edge.edge.encoders import psij_job_spec, slurm_script, slurmrestd_job
from harvester_edge.edge.paths import existing_base
from harvester_edge.edge.profiles import PROFILES
from harvester_edge.edge.render import TemplateValueError
from harvester_edge.edge.spec import JobSpec, build_job_spec
from harvester_edge.errors import EdgeConfigError

BASE = "/pscratch/sd/h/harvester/edge"
NOW = datetime.datetime(2025, 1, 2, 3, 4, tzinfo=datetime.timezone.utc)
OWN = {"job-name", "nodes", "time", "account", "partition", "qos", "constraint"}


def config(**values: object) -> BatchConfig:
    return BatchConfig.from_config({"remoteWorkDir": BASE, **values})


def worker(cfg: BatchConfig, **changes: object) -> WorkerInfo:
    fields: dict[str, object] = dict(
        harvester_id="hid", worker_id=42, queue="Q", job_name="hedge-hid-Q-w42",
        max_walltime_s=3700, n_core=8, min_ram_mb=2000, job_type="managed",
        resource_type="SCORE", created=NOW,
    )  # fmt: skip
    fields.update(changes)
    fields.setdefault("work_dir", cfg.worker_dir("hid", int(str(fields["worker_id"])), "Q"))
    return WorkerInfo(**fields)  # type: ignore[arg-type]


def test_perlmutter_spec_fields() -> None:
    cfg = config(profile="perlmutter-gpu", account="m1234_g", pilotsPerNode=4, nNode=2)
    spec = build_job_spec(cfg, worker(cfg))
    assert isinstance(spec, JobSpec)
    assert (spec.tag, spec.nodes, spec.walltime_s) == ("hedge-hid-Q-w42", 2, 62 * 60)
    assert (spec.account, spec.partition, spec.qos, spec.constraint) == (
        "m1234_g", None, "regular", "gpu",
    )  # fmt: skip
    assert spec.directives == (
        ("gpus-per-node", "4"), ("module", "cvmfs"), ("signal", "SIGTERM@240"),
        ("no-requeue", None),
    )  # fmt: skip
    assert (spec.processes_per_node, spec.cores_per_process, spec.gpus_per_process) == (4, 16, 1)
    assert spec.memory_mb is None and spec.environment == () and spec.header_problem is None
    assert spec.work_dir == f"{BASE}/hid/42" and spec.submit_dir == BASE
    assert spec.stdout_path == spec.stderr_path == f"{BASE}/hedge-hid-Q-w42.out"
    assert spec.script.startswith("#!/bin/bash\n#SBATCH --job-name=hedge-hid-Q-w42\n")


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("walltime", [0, 59, 3600, 3601])
def test_shipped_template_spec_is_the_config_decision(profile: str, walltime: int) -> None:
    """For our template, the script's header and the config's directive list are one thing."""
    cfg = config(profile=profile, account="a1", cvmfsexecPath="/opt/cvmfsexec", partition="p")
    info = worker(cfg, max_walltime_s=walltime)
    ctx = build_context(cfg, info)
    minutes = int(str(ctx["requestWalltimeMinute"]))
    decided = directive_pairs(cfg, int(str(ctx["nNode"])), minutes)
    spec = build_job_spec(cfg, info)
    assert spec.nodes == ctx["nNode"] and spec.walltime_s == minutes * 60
    assert spec.directives == tuple((k, v) for k, v in decided if k not in OWN)
    for key in ("account", "partition", "qos", "constraint"):
        assert getattr(spec, key) == dict(decided).get(key)


def test_operator_template_header_is_read_like_sbatch(tmp_path: Path) -> None:
    template = tmp_path / "op.sh"
    template.write_text(
        "#!/bin/bash\n# a comment\n\n#SBATCH -J x\n#SBATCH -N {nNode} -t 1-02:03:04\n"
        "#SBATCH -o /out/%j.out --error=/err/%j.err  # trailing comment\n"
        "#SBATCH --mem 4G -q debug -p short --exclusive --comment='two words'\n"
        "#SBATCH -C knl\necho start\n#SBATCH --account=ignored-after-first-command\n"
    )
    cfg = config(templateFile=str(template), account="from-config", nCorePerNode=4)
    spec = build_job_spec(cfg, worker(cfg))
    assert spec.nodes == 2 and spec.walltime_s == (26 * 60 + 4) * 60
    assert (spec.account, spec.partition, spec.qos, spec.constraint) == (
        "from-config", "short", "debug", "knl",
    )  # fmt: skip
    assert (spec.stdout_path, spec.stderr_path, spec.memory_mb) == (
        "/out/%j.out", "/err/%j.err", 4096,
    )  # fmt: skip
    assert spec.directives == (("exclusive", None), ("comment", "two words"))
    assert "\n#SBATCH --job-name=hedge-hid-Q-w42\n#SBATCH -N 2 " in spec.script


def test_options_sharing_the_job_name_line_are_kept(tmp_path: Path) -> None:
    """The tag replaces the name only: -N 5 -t 5 on the -J line still ask for 5 nodes, 5 min."""
    template = tmp_path / "op.sh"
    template.write_text("#!/bin/bash\n#SBATCH -J x -N 5 -t 5\necho hi\n")
    cfg = config(templateFile=str(template))
    spec = build_job_spec(cfg, worker(cfg))
    assert "#SBATCH --job-name=hedge-hid-Q-w42 --nodes=5 --time=5\necho hi\n" in spec.script
    assert (spec.nodes, spec.walltime_s) == (5, 5 * 60)


def test_operator_template_without_header_values_falls_back_to_config(tmp_path: Path) -> None:
    template = tmp_path / "op.sh"
    template.write_text("#!/bin/bash\n#SBATCH -o /o.txt\necho {workerID}\n")
    cfg = config(templateFile=str(template), profile="perlmutter-cpu", account="m1", nNode=3)
    spec = build_job_spec(cfg, worker(cfg, max_walltime_s=600))
    assert (spec.nodes, spec.walltime_s, spec.account, spec.qos, spec.constraint) == (
        3, 600, "m1", "regular", "cpu",
    )  # fmt: skip
    assert spec.directives == () and spec.stdout_path == spec.stderr_path == "/o.txt"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("#SBATCH --comment='open", "unmatched"),
        ("#SBATCH -Z 3", "unknown sbatch option -Z"),
        ("#SBATCH nodes=2", "is not an sbatch option"),
        ("#SBATCH --time=soon", "not a Slurm time limit"),
        ("#SBATCH --nodes=many", "not a node count"),
        ("#SBATCH --mem=lots", "not a memory size"),
        ("#SBATCH --partition", "needs a value"),
    ],
)
def test_header_sbatch_would_refuse_stops_the_field_encoders_only(
    tmp_path: Path, line: str, message: str
) -> None:
    """The script still goes to sbatch unchanged (SFAPI as before); S3M and IRI refuse."""
    template = tmp_path / "op.sh"
    template.write_text(f"#!/bin/bash\n{line}\necho hi\n")
    cfg = config(templateFile=str(template), nNode=3)
    spec = build_job_spec(cfg, worker(cfg))
    assert spec.header_problem is not None and message in spec.header_problem
    assert spec.script == f"#!/bin/bash\n#SBATCH --job-name=hedge-hid-Q-w42\n{line}\necho hi\n"
    assert (spec.nodes, spec.walltime_s, spec.directives) == (3, 62 * 60, ())  # config's values
    assert slurm_script(spec) == spec.script
    for encode in (slurmrestd_job, psij_job_spec):
        with pytest.raises(EdgeConfigError, match="header cannot be sent as fields"):
            encode(spec)


def test_unknown_long_option_without_value_is_a_flag(tmp_path: Path) -> None:
    template = tmp_path / "op.sh"
    template.write_text("#!/bin/bash\n#SBATCH --some-new-flag\n#SBATCH --other -N 2\necho\n")
    cfg = config(templateFile=str(template))
    spec = build_job_spec(cfg, worker(cfg))
    assert spec.header_problem is None and spec.nodes == 2
    assert spec.directives == (("some-new-flag", None), ("other", None))


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"queue": "Q\n#SBATCH -A other"}, TemplateValueError),
        ({"job_type": "managed\nrm -rf /"}, TemplateValueError),
        ({"job_name": "a b"}, EdgeConfigError),
        ({"work_dir": "/w/$(id)"}, EdgeConfigError),
    ],
)
def test_values_the_renderer_refuses_are_refused_at_spec_build(
    changes: dict[str, object], error: type[Exception]
) -> None:
    cfg = config()
    with pytest.raises(error):
        build_job_spec(cfg, worker(cfg, **changes))


def test_hostile_values_stay_inside_the_script() -> None:
    cfg = config(pilotArgs=["`id`", "it's", "$(touch /tmp/pwned)"])
    spec = build_job_spec(cfg, worker(cfg, queue="$(touch /tmp/x)", resource_type="; rm -rf ~"))
    assert "HEDGE_QUEUE='$(touch /tmp/x)'" in spec.script
    assert spec.directives == (("ntasks-per-node", "1"), ("cpus-per-task", "1"))
    assert spec.account is None and spec.nodes == 8


@pytest.mark.parametrize(
    ("template", "base"),
    [
        ("/p/edge", "/p/edge"),
        ("/p/edge/", "/p/edge"),
        ("/p/edge/${queueName}/w/${workerID}", "/p/edge"),
        ("/p/h-${harvesterID}/${workerID}", "/p"),
        ("/${workerID}", "/"),
    ],
)
def test_existing_base_of_the_remote_work_dir(template: str, base: str) -> None:
    assert existing_base(template) == base
    assert config(remoteWorkDir=template).base_dir == base


def test_spec_is_frozen_and_equal_for_equal_input() -> None:
    cfg = config(profile="frontier-gpu", cvmfsexecPath="/x/cvmfsexec", pilotsPerNode=8)
    a, b = build_job_spec(cfg, worker(cfg)), build_job_spec(cfg, worker(cfg))
    assert a == b and hash(a) == hash(b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.nodes = 3  # type: ignore[misc]
