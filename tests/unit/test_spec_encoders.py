"""Encoders of the job spec: Slurm script, slurmrestd job JSON, IRI's PSI/J job spec, bytes."""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import pytest

from harvester_edge.edge.batch import BatchConfig, WorkerInfo
from harvester_edge.edge.encoders import (
    canonical_json,
    psij_job_spec,
    slurm_script,
    slurmrestd_job,
    slurmrestd_unmapped,
)
from harvester_edge.edge.spec import JobSpec, build_job_spec
from harvester_edge.errors import EdgeConfigError

BASE = "/pscratch/sd/h/harvester/edge"
NOW = datetime.datetime(2025, 1, 2, 3, 4)

#: slurmrestd v0.0.43 job_desc_msg fields (src/plugins/data_parser/v0.0.43/parsers.c).
SLURMRESTD_V43_FIELDS = frozenset(
    """account account_gather_frequency admin_comment allocation_node_list allocation_node_port
    argv array batch_features begin_time burst_buffer cluster_constraint clusters comment
    constraints container container_id contiguous core_specification cpu_binding
    cpu_binding_flags cpu_frequency cpus_per_task cpus_per_tres crontab
    current_working_directory deadline delay_boot dependency distribution
    distribution_plane_size end_time environment excluded_nodes extra flags group_id
    hetjob_group hold immediate job_id kill_on_node_fail kill_warning_delay kill_warning_flags
    kill_warning_signal licenses mail_type mail_user maximum_cpus maximum_nodes mcs_label
    memory_binding memory_binding_type memory_per_cpu memory_per_node memory_per_tres
    minimum_boards_per_node minimum_cpus minimum_cpus_per_node minimum_nodes
    minimum_sockets_per_board name network nice nodes ntasks_per_tres oom_kill_step open_mode
    overcommit partition prefer priority profile qos reboot requeue required_nodes
    required_switches reservation reserve_ports rlimits script segment_size selinux_context
    shared site_factor sockets_per_node spank_environment standard_error standard_input
    standard_output tasks tasks_per_board tasks_per_core tasks_per_node tasks_per_socket
    temporary_disk_per_node thread_specification threads_per_core time_limit time_minimum
    tres_bind tres_freq tres_per_job tres_per_node tres_per_socket tres_per_task user_id
    wait_all_nodes wait_for_switch wckey x11 x11_magic_cookie x11_target_host
    x11_target_port""".split()
)
#: IRI JobSpec, ResourceSpec and JobAttributes fields (iri-facility-api-docs, v1 and v2).
IRI_JOB = frozenset(
    "executable container arguments directory name inherit_environment environment stdin_path "
    "stdout_path stderr_path resources attributes pre_launch post_launch launcher".split()
)
IRI_RESOURCES = frozenset(
    "node_count process_count processes_per_node cpu_cores_per_process gpu_cores_per_process "
    "exclusive_node_use memory".split()
)
IRI_ATTRIBUTES = frozenset("duration queue_name account reservation_id custom_attributes".split())


def spec_for(values: dict[str, object] | None = None, **changes: object) -> JobSpec:
    cfg = BatchConfig.from_config({"remoteWorkDir": BASE, **(values or {})})
    fields: dict[str, object] = dict(
        harvester_id="hid", worker_id=42, queue="Q", job_name="hedge-hid-Q-w42",
        max_walltime_s=3600, created=NOW,
    )  # fmt: skip
    fields.update(changes)
    fields["work_dir"] = cfg.worker_dir("hid", 42, "Q")
    return build_job_spec(cfg, WorkerInfo(**fields))  # type: ignore[arg-type]


PERLMUTTER = {"profile": "perlmutter-gpu", "account": "m1234_g", "pilotsPerNode": 4, "nNode": 2}
SHARED = {
    "nCorePerNode": 4,
    "partition": "debug",
    "extraDirectives": ["--mem=8G", "--signal=B:USR1@300", "--requeue", "--licenses=fs:1"],
}


def nones(value: Any) -> list[str]:
    """Paths of every None inside a JSON-like value."""
    if value is None:
        return ["$"]
    if isinstance(value, dict):
        return [f"{k}.{p}" for k, v in value.items() for p in nones(v)]
    if isinstance(value, list):
        return [f"[{i}].{p}" for i, v in enumerate(value) for p in nones(v)]
    return []


# --- Slurm script -------------------------------------------------------------------------
def test_slurm_script_is_the_spec_script() -> None:
    spec = spec_for(PERLMUTTER)
    assert slurm_script(spec) == spec.script


# --- slurmrestd ---------------------------------------------------------------------------
def test_slurmrestd_job_fields() -> None:
    spec = spec_for(PERLMUTTER)
    body = slurmrestd_job(spec)
    assert set(body) == {"job"}
    job = body["job"]
    assert set(job) <= SLURMRESTD_V43_FIELDS
    assert job == {
        "name": "hedge-hid-Q-w42", "account": "m1234_g", "qos": "regular", "constraints": "gpu",
        "minimum_nodes": 2, "maximum_nodes": 2, "tasks": 2,
        "time_limit": {"number": 60, "set": True, "infinite": False},
        "current_working_directory": BASE, "environment": ["PATH=/usr/bin:/bin"],
        "standard_output": f"{BASE}/hedge-hid-Q-w42.out",
        "standard_error": f"{BASE}/hedge-hid-Q-w42.out",
        "tres_per_node": "gres/gpu:4", "kill_warning_signal": "SIGTERM",
        "kill_warning_delay": {"number": 240, "set": True, "infinite": False},
        "requeue": False, "script": spec.script,
    }  # fmt: skip
    assert slurmrestd_unmapped(spec) == ("module",)  # NERSC's --module: the script keeps it


def test_slurmrestd_shared_node_directives() -> None:
    job = slurmrestd_job(spec_for(SHARED))["job"]
    assert set(job) <= SLURMRESTD_V43_FIELDS
    assert (job["partition"], job["tasks"], job["tasks_per_node"], job["cpus_per_task"]) == (
        "debug", 1, 1, 4,
    )  # fmt: skip
    assert job["memory_per_node"] == {"number": 8192, "set": True, "infinite": False}
    assert (job["kill_warning_signal"], job["kill_warning_flags"]) == ("USR1", ["BATCH_JOB"])
    assert job["kill_warning_delay"]["number"] == 300
    assert (job["requeue"], job["licenses"]) == (True, "fs:1")
    assert "time_limit" in job and "account" not in job and "constraints" not in job


def test_slurmrestd_tres_from_several_directives_are_joined() -> None:
    spec = spec_for({"profile": "perlmutter-gpu", "extraDirectives": ["--gres=nic:1"]})
    assert slurmrestd_job(spec)["job"]["tres_per_node"] == "gres/gpu:4,gres/nic:1"


def test_slurmrestd_without_walltime_sends_no_time_limit() -> None:
    job = slurmrestd_job(spec_for(max_walltime_s=0))["job"]
    assert "time_limit" not in job and nones(job) == []


def test_slurmrestd_environment_from_the_spec() -> None:
    spec = dataclasses.replace(spec_for(), environment=(("A", "1"), ("PATH", "/opt/bin")))
    assert slurmrestd_job(spec)["job"]["environment"] == ["A=1", "PATH=/opt/bin"]


def test_slurmrestd_jobs_form_is_job_xor_jobs() -> None:
    spec = spec_for(PERLMUTTER)
    single = slurmrestd_job(spec, "v0.0.44", form="job")
    many = slurmrestd_job(spec, "v0.0.44", form="jobs")
    assert set(single) == {"job"} and set(many) == {"script", "jobs"}
    assert many["script"] == spec.script and len(many["jobs"]) == 1
    assert "script" not in many["jobs"][0]
    assert {**many["jobs"][0], "script": spec.script} == single["job"]


@pytest.mark.parametrize(
    ("version", "form", "message"),
    [
        ("v0.0.43", "jobs", "needs API v0.0.44"),
        ("v0.0.42", "jobs", "needs API v0.0.44"),
        ("v0.0.39", "job", "v0.0.40 or later"),
        ("0.0.43", "job", "v0.0.40 or later"),
        ("v0.0.44", "hetjob", "must be 'job' or 'jobs'"),
    ],
)
def test_slurmrestd_refuses_what_the_version_cannot_take(
    version: str, form: str, message: str
) -> None:
    with pytest.raises(EdgeConfigError, match=message):
        slurmrestd_job(spec_for(), version, form=form)
    with pytest.raises(ValueError):  # EdgeConfigError is a ValueError
        slurmrestd_job(spec_for(), version, form=form)


# --- PSI/J (IRI) --------------------------------------------------------------------------
def test_psij_job_spec_fields() -> None:
    spec = spec_for(PERLMUTTER)
    body = psij_job_spec(spec)
    assert set(body) <= IRI_JOB
    assert set(body["resources"]) <= IRI_RESOURCES
    assert set(body["attributes"]) <= IRI_ATTRIBUTES
    assert body == {
        "name": "hedge-hid-Q-w42", "executable": "bash",
        "arguments": ["-l", "-c", spec.script], "directory": BASE,
        "stdout_path": f"{BASE}/hedge-hid-Q-w42.out",
        "stderr_path": f"{BASE}/hedge-hid-Q-w42.out", "environment": {},
        "resources": {"node_count": 2, "processes_per_node": 4, "cpu_cores_per_process": 16,
                      "gpu_cores_per_process": 1, "exclusive_node_use": True},
        "attributes": {"duration": 3600, "account": "m1234_g",
                       "custom_attributes": {"qos": "regular", "constraint": "gpu",
                                             "module": "cvmfs", "signal": "SIGTERM@240"}},
    }  # fmt: skip


def test_psij_leaves_out_what_has_no_value() -> None:
    body = psij_job_spec(spec_for(SHARED, max_walltime_s=0))
    assert nones(body) == []
    assert "duration" not in body["attributes"] and "account" not in body["attributes"]
    assert "gpu_cores_per_process" not in body["resources"]  # IRI's minimum is 1
    assert body["resources"]["memory"] == 8 * 2**30
    assert body["attributes"]["queue_name"] == "debug"
    assert body["attributes"]["custom_attributes"] == {
        "signal": "B:USR1@300", "licenses": "fs:1",
    }  # fmt: skip
    assert all(isinstance(v, str) for v in body["attributes"]["custom_attributes"].values())


# --- bytes, determinism, hostile values ---------------------------------------------------
def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": [1, {"z": 0, "a": "é"}], "a": None}) == (
        '{"a":null,"b":[1,{"a":"é","z":0}]}'.encode()
    )


@pytest.mark.parametrize("values", [PERLMUTTER, SHARED, {}])
def test_two_builds_give_identical_bytes(values: dict[str, object]) -> None:
    first, second = spec_for(values), spec_for(dict(values))
    assert first == second
    for encode in (slurmrestd_job, psij_job_spec):
        assert canonical_json(encode(first)) == canonical_json(encode(second))
    assert canonical_json(slurmrestd_job(first, "v0.0.44", "jobs")) == canonical_json(
        slurmrestd_job(second, "v0.0.44", "jobs")
    )


def shape(value: Any) -> Any:
    """The structure of a JSON-like value: keys and container kinds, not the strings."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def test_hostile_values_never_change_the_structure() -> None:
    plain = spec_for(PERLMUTTER)
    hostile = spec_for(
        {**PERLMUTTER, "pilotArgs": ['"; rm -rf ~ #', "$(id)", "`id`", "it's", "{x}", "\\"]},
        queue='Q"}],"x":{"$(touch /tmp/pwned)',
        resource_type="'; echo pwned; '",
    )
    for encode in (slurmrestd_job, psij_job_spec):
        body = encode(hostile)
        assert shape(body) == shape(encode(plain))
        assert json.loads(canonical_json(body)) == body
    assert 'HEDGE_QUEUE=\'Q"}],"x":{"$(touch /tmp/pwned)\'\n' in hostile.script  # one quoted word
    assert psij_job_spec(hostile)["arguments"][2] == hostile.script
    for field in ("name", "account", "qos", "constraints", "partition"):
        assert slurmrestd_job(hostile)["job"].get(field) == slurmrestd_job(plain)["job"].get(field)


def test_slurmrestd_refuses_a_malformed_signal() -> None:
    spec = dataclasses.replace(spec_for(), directives=(("signal", "TERM@soon"),))
    with pytest.raises(EdgeConfigError, match="signal"):
        slurmrestd_job(spec)
