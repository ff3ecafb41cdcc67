"""The loopback OLCF S3M gateway: tokens, status, and slurmrestd's shapes over the real Slurm.

Slurm-marked tests run real jobs on the local cluster (unique names per test; every job the
gateway created is cancelled afterwards).  The others never reach sbatch.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

import harvester_edge
from harvester_edge.facilities.passthrough import record_from_slurmrestd
from harvester_edge.localsite.faults import Knobs
from harvester_edge.localsite.s3m_gateway import S3MGateway
from harvester_edge.localsite.slurm import LocalSlurm, default_slurm_conf

from ..conftest import slurm_reachable
from ._helpers import poll, unique_name

INTROSPECT = "/olcf/v1/token/ctls/introspect"
REVOKE = "/olcf/v1/token/ctls/revoke"
STATUS = "/olcf/v1alpha/status"
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")


@pytest.fixture
def s3m(tmp_path: Path) -> Iterator[S3MGateway]:
    """A running gateway (project proj001); its jobs are cancelled afterwards."""
    slurm = LocalSlurm(default_slurm_conf())
    site = tmp_path / "site"
    site.mkdir()
    gw = S3MGateway(slurm=slurm, knobs=Knobs(token_lifetime=3600), workdir=site)
    with gw:
        yield gw
    if gw.jobs_created and slurm_reachable():
        slurm.scancel(gw.jobs_created)  # leave the shared cluster clean


@pytest.fixture
def token(s3m: S3MGateway) -> str:
    return s3m.issue_token()


def client(gw: S3MGateway, token: str, resource: str = "defiant", version: str = "v0.0.43"):
    """An httpx client on one resource's compute base URL, raw ``Authorization: <token>``."""
    return httpx.Client(
        base_url=gw.compute_url(resource, version), headers={"Authorization": token}, timeout=15
    )


def job_body(name: str, script: str, workdir: Path | str, **extra: Any) -> dict[str, Any]:
    """A job description as our encoder writes it (``slurmrestd_job``)."""
    job = {
        "name": name,
        "account": "proj001",
        "partition": "debug",
        "minimum_nodes": 1,
        "maximum_nodes": 1,
        "tasks": 1,
        "time_limit": {"number": 2, "set": True, "infinite": False},
        "current_working_directory": str(workdir),
        "environment": ["PATH=/usr/bin:/bin"],
        "standard_output": "/dev/null",
        "script": script,
    }
    job.update(extra)
    return {"job": job}


def submit(api: httpx.Client, body: dict[str, Any]) -> int:
    r = api.post("/job/submit", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["errors"] == [] and answer["step_id"] == "batch"
    assert isinstance(answer["job_id"], int)
    return int(answer["job_id"])


def listed(api: httpx.Client, job_id: int) -> dict[str, Any] | None:
    """The job's slurmctld record in ``GET jobs``, or None."""
    r = api.get("/jobs")
    assert r.status_code == 200, r.text
    found = [j for j in r.json()["jobs"] if j["job_id"] == job_id]
    return found[0] if found else None


def accounted(api: httpx.Client, job_id: int) -> dict[str, Any]:
    r = api.get(f"/job/{job_id}")
    assert r.status_code == 200, r.text
    [job] = r.json()["jobs"]
    return dict(job)


def slurm_errors(r: httpx.Response, status: int) -> list[dict[str, Any]]:
    assert r.status_code == status, r.text
    body = r.json()
    assert {"meta", "errors", "warnings"} <= set(body)
    errors: list[dict[str, Any]] = body["errors"]
    assert errors and all(
        set(e) == {"description", "error_number", "error", "source"} for e in errors
    )
    return errors


# ---------------------------------------------------------------------- tokens
def test_token_is_a_project_jwt_without_exp_and_introspects(s3m: S3MGateway) -> None:
    token = s3m.issue_token(expires_in=7200, description="pilot factory", project="abc123")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert set(claims) == {"description", "type", "aud", "nbf", "iat", "jti"}  # no exp
    assert claims["type"] == "opat" and claims["aud"] == "api.olcf.ornl.gov"
    assert claims["description"] == "pilot factory"

    r = httpx.get(s3m.base_url + INTROSPECT, headers={"Authorization": token}, timeout=5)
    assert r.status_code == 200
    info = r.json()["token"]
    assert set(info) == {
        "username",
        "project",
        "plannedExpiration",
        "securityEnclave",
        "description",
        "oneTimeToken",
        "delayedStart",
        "delayDate",
    }
    assert info["project"] == "abc123" and info["description"] == "pilot factory"
    assert info["oneTimeToken"] is False and info["delayedStart"] is False
    assert info["delayDate"] is None and info["securityEnclave"] == "open"
    planned = time.mktime(time.strptime(info["plannedExpiration"], "%Y-%m-%dT%H:%M:%SZ"))
    planned -= time.timezone  # strptime read it as local time; it is UTC
    assert abs(planned - (time.time() + 7200)) < 10
    bearer = {"Authorization": f"Bearer {token}"}  # also accepted
    assert httpx.get(s3m.base_url + INTROSPECT, headers=bearer, timeout=5).status_code == 200
    assert s3m.counters["introspect"] == 2


def test_missing_bad_expired_and_revoked_tokens(s3m: S3MGateway) -> None:
    url = s3m.base_url + INTROSPECT

    def get(headers: dict[str, str]) -> httpx.Response:
        return httpx.get(url, headers=headers, timeout=5)

    missing = get({})
    assert missing.status_code == 401
    assert missing.json() == {"code": 16, "message": "missing authorization token", "details": []}
    forged = jwt.encode(
        {"type": "opat", "aud": "api.olcf.ornl.gov", "nbf": 0, "iat": 0, "jti": "x"},
        "not-the-gateway-key-but-32-bytes-long",
        algorithm="HS256",
    )
    for bad in ("garbage", forged, "Bearer", f"Bearer {forged}"):
        r = get({"Authorization": bad})
        assert r.status_code == 401 and r.json()["code"] == 16, bad
        assert bad == "Bearer" or bad not in r.text  # never echoed

    short = s3m.issue_token(expires_in=1)
    assert get({"Authorization": short}).status_code == 200
    time.sleep(1.2)
    expired = get({"Authorization": short})
    assert expired.status_code == 403
    assert expired.json()["code"] == 7 and "expired at 20" in expired.json()["message"]
    assert short not in expired.text

    s3m.knobs.error_in_detail = True  # S3M errors relayed with their JSON inside "detail"
    wrapped = get({"Authorization": short})
    assert wrapped.status_code == 403 and set(wrapped.json()) == {"detail"}
    assert json.loads(wrapped.json()["detail"])["code"] == 7
    s3m.knobs.error_in_detail = False

    good = s3m.issue_token()
    r = httpx.delete(s3m.base_url + REVOKE, headers={"Authorization": good}, timeout=5)
    assert r.status_code == 200 and r.json() == {}
    assert get({"Authorization": good}).status_code == 401  # revoked for good

    readonly = s3m.issue_token(permissions=["compute-ace-readonly"])
    with client(s3m, readonly) as api:
        r = api.post("/job/submit", json={})
        assert r.status_code == 403 and "compute-ace" in r.json()["message"]
        assert api.delete("/job/1").status_code == 403
    assert s3m.jobs_created == []


# ---------------------------------------------------------------------- status
def test_status_downtimes_and_unavailable_resources(s3m: S3MGateway, token: str) -> None:
    def status() -> dict[str, dict[str, Any]]:
        r = httpx.get(s3m.base_url + STATUS, timeout=5)
        assert r.status_code == 200
        return {res["name"]: res for res in r.json()["resources"]}

    now = status()
    assert set(now) == {"defiant", "odo"}
    assert set(now["defiant"]) == {
        "name",
        "description",
        "systemType",
        "securityEnclave",
        "organization",
        "status",
        "downtimeScheduleAvailable",
        "upcomingDowntimes",
        "retrievedAt",
    }
    assert now["defiant"]["status"] == "OPERATIONAL" and now["defiant"]["upcomingDowntimes"] == []
    assert now["defiant"]["retrievedAt"].endswith("Z")

    s3m.schedule_downtime(3600, 7200, resource="defiant", description="hardware maintenance")
    ahead = status()
    [down] = ahead["defiant"]["upcomingDowntimes"]
    assert set(down) == {"resourceName", "status", "start", "end", "description"}
    assert down["resourceName"] == "defiant" and down["status"] == "UNAVAILABLE"
    assert down["description"] == "hardware maintenance" and down["start"].endswith("Z")
    assert ahead["defiant"]["status"] == "OPERATIONAL" and ahead["odo"]["upcomingDowntimes"] == []
    one = httpx.get(s3m.base_url + STATUS + "/defiant", timeout=5).json()
    assert one["name"] == "defiant" and one["upcomingDowntimes"] == [down]
    assert httpx.get(s3m.base_url + STATUS + "/nosuch", timeout=5).status_code == 404
    listing = httpx.get(s3m.base_url + STATUS + "/downtimes/upcoming", timeout=5).json()
    assert listing == {"downtimes": [down]}

    s3m.knobs.update(downtimes=[{"start": time.time() - 60, "end": time.time() + 60}])
    ongoing = status()  # a downtime of every resource, under way now
    assert {r["status"] for r in ongoing.values()} == {"UNAVAILABLE"}
    with client(s3m, token) as api:
        r = api.get("/jobs")
        assert r.status_code == 503 and r.json()["code"] == 14  # before Slurm is asked
    s3m.knobs.update(downtimes=[], machine_status="degraded", resource_status={"odo": "UNKNOWN"})
    assert {k: v["status"] for k, v in status().items()} == {
        "defiant": "DEGRADED",
        "odo": "UNKNOWN",
    }
    everything = httpx.get(s3m.base_url + STATUS + "/downtimes", timeout=5).json()
    assert everything == {"downtimes": []}

    bad = httpx.post(
        s3m.base_url + "/_admin/knobs", json={"downtimes": [{"start": 10, "end": 5}]}, timeout=5
    )
    assert bad.status_code == 400
    assert s3m.counters["status"] == 6 and s3m.counters["downtimes"] == 2


# ---------------------------------------------------------------------- routes
def test_prefixes_versions_and_404s(s3m: S3MGateway, token: str) -> None:
    auth = {"Authorization": token}

    def get(path: str, headers: dict[str, str] = auth) -> httpx.Response:
        return httpx.get(s3m.base_url + path, headers=headers, timeout=15)

    for path in (
        "/slurm/open/v0.0.42/defiant/ping",
        "/slurm/v0.0.43/defiant/ping",  # hosts before March 2026 had no /open/
        "/olcf/v1/slurm/open/v0.0.44/odo/ping",
    ):
        r = get(path)
        assert r.status_code == 200, path
        assert r.json()["pings"][0]["mode"] == "primary" and r.json()["errors"] == []
    v42 = get("/slurm/open/v0.0.42/defiant/ping").json()["meta"]["slurm"]["version"]
    v43 = get("/slurm/open/v0.0.43/defiant/ping").json()["meta"]["slurm"]["version"]
    assert isinstance(v42["major"], int) and isinstance(v43["major"], str)

    for path in (
        "/slurm/open/v0.0.44/defiant/jobs",  # defiant serves v0.0.42/43 only
        "/slurm/open/v0.0.42/odo/jobs",
        "/slurm/open/v0.0.43/frontier/jobs",
        "/slurm/open/v0.0.43/defiant/nodes/x/y",
        "/nothing/here",
        "/olcf/v1alpha/statusx",
    ):
        r = get(path)
        assert r.status_code == 404 and r.json()["code"] == 5, path
    assert get("/slurm/open/v0.0.43/frontier/jobs", {}).status_code == 401  # token first
    r = httpx.post(s3m.base_url + "/slurm/open/v0.0.43/defiant/jobs", headers=auth, timeout=5)
    assert r.status_code == 404  # wrong method

    custom = S3MGateway(resources={"wombat": ["v0.0.42"]}, prefixes=["/x/slurm"]).start()
    try:
        tok = custom.issue_token()
        r = httpx.get(custom.compute_url("wombat", "v0.0.42", "/x/slurm") + "/ping",
                      headers={"Authorization": tok}, timeout=15)  # fmt: skip
        assert r.status_code == 200
        other = httpx.get(custom.base_url + "/slurm/open/v0.0.42/wombat/ping", timeout=5)
        assert other.status_code == 404
    finally:
        custom.stop()


def test_submit_refused_before_sbatch(s3m: S3MGateway, token: str, tmp_path: Path) -> None:
    base = job_body("hxrefused", "#!/bin/bash\nexit 0\n", tmp_path)
    job = base["job"]
    with client(s3m, token, "odo", "v0.0.44") as api:
        both = api.post("/job/submit", json={"script": job["script"], "job": job, "jobs": [job]})
        [error] = slurm_errors(both, 422)
        assert error["error_number"] == 9000 and "never both" in error["description"]
        neither = api.post("/job/submit", json={"script": job["script"]})
        assert slurm_errors(neither, 422)[0]["error_number"] == 9000
        no_script = {k: v for k, v in job.items() if k != "script"}
        [error] = slurm_errors(api.post("/job/submit", json={"job": no_script}), 422)
        assert "script" in error["description"]
        no_env = {**job, "environment": []}
        [error] = slurm_errors(api.post("/job/submit", json={"job": no_env}), 500)
        assert error["error_number"] == 2127 and error["error"] == "Environment is missing in job"
        assert error["description"] == "Batch job submission failed"
        no_shebang = {**job, "script": "echo hi\n"}
        assert slurm_errors(api.post("/job/submit", json={"job": no_shebang}), 500)
        wrong_type = {**job, "minimum_nodes": "two"}
        [error] = slurm_errors(api.post("/job/submit", json={"job": wrong_type}), 400)
        assert error["error_number"] == 9001 and "minimum_nodes" in error["description"]
        other = {**job, "account": "notmine"}
        [error] = slurm_errors(api.post("/job/submit", json={"job": other}), 500)
        assert error["error_number"] == 2045
        assert slurm_errors(api.post("/job/submit", content=b"{not json"), 400)
        s3m.knobs.refuse_submit = 2050  # a QOS submit limit
        [error] = slurm_errors(api.post("/job/submit", json=base), 500)
        assert error["error_number"] == 2050 and "QOS" in error["error"]
    with client(s3m, token, "defiant", "v0.0.43") as api:
        s3m.knobs.refuse_submit = 0
        jobs_form = api.post("/job/submit", json={"script": job["script"], "jobs": [job]})
        assert slurm_errors(jobs_form, 422)[0]["error_number"] == 9000  # v0.0.44 only
        bad_signal = api.delete("/job/123", params={"signal": "NOPE"})
        assert slurm_errors(bad_signal, 400)[0]["error_number"] == 9001
    assert s3m.jobs_created == []


# ---------------------------------------------------------------------- compute on Slurm
@pytest.mark.slurm
def test_submit_every_version_and_both_forms(s3m: S3MGateway, token: str, tmp_path: Path) -> None:
    cases = [
        ("defiant", "v0.0.42", "job"),
        ("defiant", "v0.0.43", "job"),
        ("odo", "v0.0.43", "job"),
        ("odo", "v0.0.44", "job"),
        ("odo", "v0.0.44", "jobs"),
    ]
    submitted: dict[int, str] = {}
    for resource, version, form in cases:
        name = unique_name()
        body = job_body(name, "#!/bin/bash\nexit 0\n", tmp_path, hold=True)
        if form == "jobs":
            job = body["job"]
            body = {"script": job.pop("script"), "jobs": [job]}
        with client(s3m, token, resource, version) as api:
            submitted[submit(api, body)] = name
    assert sorted(int(j) for j in s3m.jobs_created) == sorted(submitted)
    assert s3m.counters["submit"] == len(cases)

    with client(s3m, token, "odo", "v0.0.44") as api:
        for job_id, name in submitted.items():
            record = listed(api, job_id)
            assert record is not None and record["name"] == name
            assert record["job_state"] == ["PENDING"] and record["state_reason"] == "JobHeldUser"
            assert record["time_limit"] == {"set": True, "infinite": False, "number": 2}
            assert record["partition"] == "debug" and record["hold"] is True
            r = api.delete(f"/job/{job_id}")
            assert r.status_code == 200 and r.json()["errors"] == []


@pytest.mark.slurm
def test_sbatch_refusal_is_slurmrestds_500(s3m: S3MGateway, token: str, tmp_path: Path) -> None:
    with client(s3m, token) as api:
        big = job_body(unique_name(), "#!/bin/bash\nexit 0\n", tmp_path)
        big["job"]["memory_per_node"] = {"set": True, "infinite": False, "number": 10**9}
        r = api.post("/job/submit", json=big)
        [error] = slurm_errors(r, 500)
        assert error == {
            "description": "Batch job submission failed",
            "error_number": 2014,
            "error": "Requested node configuration is not available",
            "source": "slurm_submit_batch_job()",
        }
        assert "Memory specification" in r.json()["warnings"][0]["description"]
        assert "job_id" not in r.json()
        nowhere = job_body(unique_name(), "#!/bin/bash\nexit 0\n", tmp_path, partition="nosuch")
        [error] = slurm_errors(api.post("/job/submit", json=nowhere), 500)
        assert (
            error["error_number"] == 2000 and error["error"] == "Invalid partition name specified"
        )
    assert s3m.jobs_created == []


@pytest.mark.slurm
def test_job_life_in_both_record_shapes(s3m: S3MGateway, token: str, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    hostile = f"hx$(touch {tmp_path}/pwned);`id`"
    script = '#!/bin/bash\necho "$HEDGE_MARK $SLURM_JOB_NAME" > out.txt\nsleep 3\nexit 3\n'
    body = job_body(
        hostile,
        script,
        tmp_path,
        environment=["PATH=/usr/bin:/bin", "HEDGE_MARK=marked"],
        tres_per_node="gres/gpu:4",  # the loopback cluster has no GPUs: dropped, said so
    )
    with client(s3m, token) as api:
        r = api.post("/job/submit", json=body)
        assert r.status_code == 200, r.text
        job_id = r.json()["job_id"]
        assert "gres/gpu:4 dropped" in r.json()["warnings"][0]["description"]

        first = accounted(api, job_id)  # right after submit: pending or already running
        assert first["state"]["current"][0] in ("PENDING", "RUNNING")
        assert first["job_id"] == job_id and first["name"] == hostile

        running = poll(
            lambda: (j := listed(api, job_id)) and j["job_state"] == ["RUNNING"] and j,
            10,
            0.2,
            "RUNNING in GET jobs",
        )
        assert running["nodes"].startswith("nid") and running["user_name"] == s3m.username
        assert running["exit_code"]["status"] == ["SUCCESS"]  # not ended yet
        live = record_from_slurmrestd(running)
        assert live.native == "RUNNING" and not live.confirmed_final

        def ended() -> dict[str, Any] | None:
            job = accounted(api, job_id)
            return job if job["state"]["current"][0] in FINAL_STATES else None

        final = poll(ended, 15, 0.3, "final state in accounting")
        assert final["state"]["current"] == ["FAILED"]
        assert final["exit_code"] == {
            "status": ["ERROR"],
            "return_code": {"set": True, "infinite": False, "number": 3},
            "signal": {"id": {"set": False, "infinite": False, "number": 0}, "name": ""},
        }
        assert final["time"]["elapsed"] >= 2 and final["nodes"].startswith("nid")
        done = record_from_slurmrestd(final)
        assert done.exit_code == 3 and done.confirmed_final and done.native == "FAILED"

        ctld = listed(api, job_id)  # squeue keeps it for MinJobAge
        if ctld is not None:
            assert ctld["job_state"] == ["FAILED"]
            assert record_from_slurmrestd(ctld).exit_code == 3
    assert out.read_text().strip() == f"marked {hostile}"  # the job's env is the JSON's
    assert not (tmp_path / "pwned").exists()  # no shell ever saw the name


@pytest.mark.slurm
def test_cancel_like_slurmrestd(s3m: S3MGateway, token: str, tmp_path: Path) -> None:
    with client(s3m, token) as api:
        job_id = submit(api, job_body(unique_name(), "#!/bin/bash\nsleep 60\n", tmp_path))
        poll(lambda: (j := listed(api, job_id)) and j["job_state"] == ["RUNNING"], 10, 0.2)
        r = api.delete(f"/job/{job_id}")
        assert r.status_code == 200 and r.json()["errors"] == [] and r.json()["warnings"] == []
        again = api.delete(f"/job/{job_id}")  # already ended, still known to slurmctld
        assert again.status_code == 200 and again.json()["errors"] == []
        assert again.json()["warnings"][0]["description"] == "Job was already sent signal Killed"

        cancelled = poll(
            lambda: (j := accounted(api, job_id))["state"]["current"] == ["CANCELLED"] and j,
            10,
            0.3,
            "CANCELLED in accounting",
        )
        assert record_from_slurmrestd(cancelled).state.name == "CANCELED"
        [error] = slurm_errors(api.delete("/job/999999999"), 404)
        assert error["error_number"] == 2017 and error["error"] == "Invalid job id specified"
        [error] = slurm_errors(api.get("/job/999999999"), 404)
        assert error["description"] == "Unable to query JobId=999999999"
        assert api.get("/job/999999999").json()["jobs"] == []
        assert s3m.counters["cancel"] == 3


# ---------------------------------------------------------------------- knobs
@pytest.mark.slurm
def test_error_after_submit_leaves_exactly_one_job(
    s3m: S3MGateway, token: str, tmp_path: Path
) -> None:
    s3m.knobs.update(error_after_submit=1.0, seed=5)
    name = unique_name()
    with client(s3m, token) as api:
        r = api.post("/job/submit", json=job_body(name, "#!/bin/bash\nsleep 20\n", tmp_path))
        assert r.status_code in (500, 502, 503, 504) and "job_id" not in r.json()
        assert set(r.json()) == {"code", "message", "details"}
        assert len(s3m.jobs_created) == 1  # created before the error was answered
        mine = [j for j in api.get("/jobs").json()["jobs"] if j["name"] == name]
        assert [str(j["job_id"]) for j in mine] == s3m.jobs_created


@pytest.mark.slurm
def test_post_timeout_and_drop_after_submit_create_the_job(
    s3m: S3MGateway, token: str, tmp_path: Path
) -> None:
    with client(s3m, token) as api:
        s3m.knobs.post_timeout = 2.5
        start = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            body = job_body(unique_name(), "#!/bin/bash\nsleep 20\n", tmp_path)
            api.post("/job/submit", json=body, timeout=1.0)
        assert time.monotonic() - start < 2.4
        assert len(s3m.jobs_created) == 1  # sbatch ran before the stall began
        s3m.knobs.update(post_timeout=0, drop_after_submit=1.0)
        with pytest.raises(httpx.RemoteProtocolError):
            api.post("/job/submit", json=job_body(unique_name(), "#!/bin/bash\n", tmp_path))
        assert len(s3m.jobs_created) == 2
    assert s3m.counters["submit"] == 2


def test_latency_error_rate_and_drop(s3m: S3MGateway) -> None:
    url = s3m.base_url + STATUS
    s3m.knobs.latency = 1.0
    start = time.monotonic()
    assert httpx.get(url, timeout=5).status_code == 200
    assert time.monotonic() - start >= 0.95  # a lower bound: never timing-fragile
    s3m.knobs.latency = 0

    def run(n: int = 20) -> list[int]:
        return [httpx.get(url, timeout=5).status_code for _ in range(n)]

    s3m.knobs.update(error_rate=0.5, seed=7)
    first = run()
    s3m.knobs.seed = 7
    assert run() == first
    assert 200 in first and set(first) - {200} and set(first) <= {200, 500, 502, 503}
    s3m.knobs.update(error_rate=1.0)
    r = httpx.get(url, timeout=5)
    assert r.json()["code"] in (13, 14) and r.json()["details"] == []

    s3m.knobs.update(error_rate=0, drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url, timeout=5)
    s3m.knobs.drop_rate = 0
    assert httpx.get(url, timeout=5).status_code == 200


def test_hang_until_cleared_and_released_on_stop(tmp_path: Path) -> None:
    gw = S3MGateway(workdir=tmp_path).start()
    outcome: dict[str, Any] = {}

    def request(tag: str) -> None:
        try:
            outcome[tag] = httpx.get(gw.base_url + STATUS, timeout=15).status_code
        except httpx.HTTPError as exc:
            outcome[tag] = type(exc).__name__

    try:
        gw.knobs.hang = True
        first = threading.Thread(target=request, args=("cleared",))
        first.start()
        time.sleep(0.4)
        assert "cleared" not in outcome  # accepted, not answered
        r = httpx.post(gw.base_url + "/_admin/knobs", json={"hang": False}, timeout=5)
        assert r.status_code == 200  # admin routes never hang
        first.join(5)
        assert outcome["cleared"] == 200

        gw.knobs.hang = True
        second = threading.Thread(target=request, args=("stopped",))
        second.start()
        time.sleep(0.3)
    finally:
        start = time.monotonic()
        gw.stop()
        assert time.monotonic() - start < 2
    second.join(5)
    assert not second.is_alive()
    assert outcome["stopped"] in ("RemoteProtocolError", "ReadError", "ConnectError")


def test_admin_state_and_token(s3m: S3MGateway) -> None:
    r = httpx.post(s3m.base_url + "/_admin/token", json={"expires_in": 60}, timeout=5)
    assert r.status_code == 200
    fresh = r.json()["token"]
    intro = httpx.get(s3m.base_url + INTROSPECT, headers={"Authorization": fresh}, timeout=5)
    assert intro.json()["token"]["project"] == "proj001"
    state = httpx.get(s3m.base_url + "/_admin/state", timeout=5).json()
    assert state["counters"] == {"introspect": 1} and state["jobs_created"] == []
    assert state["resources"] == {"defiant": ["v0.0.42", "v0.0.43"], "odo": ["v0.0.43", "v0.0.44"]}
    assert fresh not in json.dumps(state)
    bad = httpx.post(s3m.base_url + "/_admin/knobs", json={"resource_status": {"odo": "UP"}})
    assert bad.status_code == 400


def test_standalone_main_writes_a_private_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "s3m-token"
    env = dict(os.environ, PYTHONPATH=str(Path(harvester_edge.__file__).parents[1]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "harvester_edge.localsite.s3m_gateway", "--port", "0",
         "--token-file", str(token_file), "--project", "abc123"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert token not in json.dumps(info)
        r = httpx.get(info["base_url"] + INTROSPECT, headers={"Authorization": token}, timeout=5)
        assert r.status_code == 200 and r.json()["token"]["project"] == "abc123"
        assert info["compute_urls"]["odo"]["v0.0.44"].endswith("/slurm/open/v0.0.44/odo")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == 0
