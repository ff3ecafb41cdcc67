"""The loopback SFAPI gateway, driven by the official sfapi_client and by raw HTTP.

Slurm-marked tests run real jobs on the local cluster; every job name is unique per test so
the suite can share the cluster with other users.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from harvester_edge.localsite.sfapi_gateway import SFAPIGateway

from ._helpers import MACHINE, admin, poll, query, script, submit_raw, unique_name, wait_task


# ---------------------------------------------------------------------- auth
def test_sfapi_client_token_flow_and_status(gateway: SFAPIGateway, sfapi: Any) -> None:
    compute = sfapi.compute(MACHINE)
    assert compute.status.value == "active"
    assert compute.name == MACHINE
    assert sfapi.user().name  # authenticated route
    assert gateway.counters["token"] == 1
    assert gateway.counters["status"] == 1
    assert gateway.counters["account"] == 1
    assert sfapi.resources.outages(MACHINE) == []


def test_token_endpoint_rejects_bad_assertions(
    gateway: SFAPIGateway, client_key: tuple[Path, str, str]
) -> None:
    _, client_id, _ = client_key
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    own_pem = client_key[0].read_text().partition("\n")[2]
    own = serialization.load_pem_private_key(own_pem.encode(), password=None)
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": gateway.token_url,
        "iat": now,
        "exp": now + 60,
    }

    def token_request(assertion: str) -> httpx.Response:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        }
        return httpx.post(gateway.token_url, data=form, timeout=5)

    cases = {
        "garbage": "not-a-jwt",
        "wrong key": jwt.encode(claims, stranger, algorithm="RS256"),
        "wrong aud": jwt.encode({**claims, "aud": "https://elsewhere/token"}, own, "RS256"),
        "expired": jwt.encode({**claims, "exp": now - 120, "iat": now - 180}, own, "RS256"),
        "sub mismatch": jwt.encode({**claims, "sub": "x" * 13}, own, "RS256"),
    }
    for label, assertion in cases.items():
        r = token_request(assertion)
        assert r.status_code in (400, 401), label
        assert r.json()["error"] == "invalid_client", label
        assert "access_token" not in r.text

    for alg in ("RS256", "PS256", "RS512"):  # authlib may use any RSA algorithm
        r = token_request(jwt.encode({**claims, "jti": alg}, own, algorithm=alg))
        assert r.status_code == 200, (alg, r.text)
        body = r.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    r = token_request(jwt.encode({**claims, "jti": "RS256"}, own, algorithm="RS256"))
    assert r.status_code == 401  # replayed assertion


def test_missing_bad_and_expired_tokens(gateway: SFAPIGateway, sfapi: Any) -> None:
    url = gateway.api_url + "/account/"
    assert httpx.get(url, timeout=5).status_code == 403
    bad = {"Authorization": "Bearer not-a-token"}
    assert httpx.get(url, headers=bad, timeout=5).status_code == 403
    assert httpx.get(gateway.api_url + f"/status/{MACHINE}", timeout=5).status_code == 200

    gateway.knobs.token_lifetime = 3
    sfapi._http_client().fetch_token()  # a fresh token with the short lifetime
    good = {"Authorization": f"Bearer {sfapi.token}"}
    assert httpx.get(url, headers=good, timeout=5).status_code == 200
    time.sleep(3.3)
    assert httpx.get(url, headers=good, timeout=5).status_code == 403
    gateway.knobs.expired_token_status = 401
    assert httpx.get(url, headers=good, timeout=5).status_code == 401


def test_client_key_file_format(client_key: tuple[Path, str, str]) -> None:
    path, client_id, public_pem = client_key
    assert path.stat().st_mode & 0o777 == 0o600
    first, _, rest = path.read_text().partition("\n")
    assert first == client_id and len(client_id) == 13
    assert rest.startswith("-----BEGIN PRIVATE KEY-----")
    assert public_pem.startswith("-----BEGIN PUBLIC KEY-----")


# ---------------------------------------------------------------------- compute
@pytest.mark.slurm
def test_submit_to_final_state_with_exit_code(gateway: SFAPIGateway, sfapi: Any) -> None:
    from sfapi_client.jobs import JobState

    compute = sfapi.compute(MACHINE)
    name = unique_name()
    job = compute.submit_job(script(name, "sleep 2\nexit 3"))
    assert job.jobid in gateway.jobs_created

    queued = compute.jobs(jobids=[job.jobid])
    assert [j.jobid for j in queued] == [job.jobid]
    assert queued[0].name == name and queued[0].st in ("PD", "R", "CG")

    def final() -> Any:
        rows = compute.jobs(jobids=[job.jobid], command="sacct")
        return rows[0] if rows and rows[0].state == JobState.FAILED else None

    done = poll(final, 25, 0.5, "sacct final state")
    assert done.exitcode == "3:0"
    # Finished jobs leave squeue (MinJobAge=5); the library then falls back to sacct.
    poll(lambda: compute.jobs(jobids=[job.jobid]) == [], 20, 0.5, "purge from squeue")
    one = compute.job(job.jobid)
    assert one.state == JobState.FAILED and one.exitcode == "3:0"


@pytest.mark.slurm
def test_sbatch_rejection_reported_through_task(
    gateway: SFAPIGateway, sfapi: Any, api: httpx.Client
) -> None:
    from sfapi_client import SfApiError

    text = script(unique_name(), "#SBATCH --mem=100000000\nexit 0").replace(
        "#SBATCH -o /dev/null\n", "#SBATCH -o /dev/null\n#SBATCH --mem=100000000\n"
    )
    with pytest.raises(SfApiError, match="Memory specification"):
        sfapi.compute(MACHINE).submit_job(text)

    r = api.post(f"/compute/jobs/{MACHINE}", data={"job": text, "isPath": "false"})
    result = wait_task(api, r.json()["task_id"])
    assert result["status"] == "error" and result["jobid"] is None
    assert "Batch job submission failed" in result["error"]
    assert gateway.jobs_created == []


@pytest.mark.slurm
def test_bulk_query_name_filter_and_sacct(gateway: SFAPIGateway, api: httpx.Client) -> None:
    names = [unique_name() for _ in range(3)]
    ids = [submit_raw(api, script(n, "sleep 30")) for n in names]
    gateway.reset_counters()

    rows = query(api, False, "jobid=" + ",".join(ids))
    assert sorted(r["jobid"] for r in rows) == sorted(ids)
    assert gateway.counters["jobs_query"] == 1  # one request for all ids
    for row in rows:
        assert row["state"] in ("PENDING", "RUNNING") and row["st"] in ("PD", "R")
        assert {"reason", "partition", "nodes", "time_left", "submit_time"} <= set(row)

    rows = query(api, False, f"name={names[1]}")
    assert [r["jobid"] for r in rows] == [ids[1]]
    rows = query(api, False, f"jobid={ids[0]}", f"name={names[0]},{names[2]}")
    assert [r["jobid"] for r in rows] == [ids[0]]

    one = api.get(f"/compute/jobs/{MACHINE}/{ids[2]}", params={"sacct": "false"}).json()
    assert [r["jobid"] for r in one["output"]] == [ids[2]]

    acct = poll(
        lambda: len(rows := query(api, True, "jobid=" + ",".join(ids))) == 3 and rows,
        15,
        0.3,
        "sacct rows",
    )
    assert all({"exitcode", "derivedexitcode", "elapsed", "nnodes"} <= set(r) for r in acct)
    assert query(api, False, "jobid=999999999") == []  # unknown id: empty, not an error

    bad = api.get(f"/compute/jobs/{MACHINE}", params={"kwargs": "jobid=1;rm"})
    assert bad.status_code == 400
    assert api.get("/compute/jobs/nosuchmachine", params={"sacct": "false"}).status_code == 404


@pytest.mark.slurm
def test_cancel_and_task_listing(gateway: SFAPIGateway, sfapi: Any, api: httpx.Client) -> None:
    compute = sfapi.compute(MACHINE)
    job = compute.submit_job(script(unique_name(), "sleep 60"))
    job.cancel()

    def cancelled() -> bool:
        rows = compute.jobs(jobids=[job.jobid], command="sacct")
        return bool(rows) and rows[0].state.value == "CANCELLED"

    poll(cancelled, 20, 0.5, "cancelled state in sacct")
    raw = query(api, True, f"jobid={job.jobid}")
    assert raw[0]["state"].startswith("CANCELLED")

    r = api.delete(f"/compute/jobs/{MACHINE}/999999999")
    assert r.status_code == 200 and r.json()["status"] == "OK"
    result = wait_task(api, r.json()["task_id"])
    assert result["status"] == "error" and "Invalid job id" in result["error"]

    tasks = api.get("/tasks").json()["tasks"]
    assert len(tasks) == 3  # submit, cancel, cancel
    assert all(t["status"] == "completed" for t in tasks)
    assert gateway.counters["jobs_cancel"] == 2
    assert api.delete(f"/compute/jobs/{MACHINE}/12;x").status_code == 400


@pytest.mark.slurm
def test_is_path_submit_with_args(gateway: SFAPIGateway, api: httpx.Client, site_dir: Path) -> None:
    out = site_dir / "args.txt"
    job_file = site_dir / "job.sh"
    job_file.write_text(script(unique_name(), f'echo "$@" > {out}'))
    r = api.post(
        f"/compute/jobs/{MACHINE}",
        data={"job": str(job_file), "isPath": "true", "args": ["a b", "c"]},
    )
    result = wait_task(api, r.json()["task_id"])
    assert result["status"] == "ok"
    assert poll(lambda: out.exists() and out.read_text().strip(), 20) == "a b c"

    outside = api.post(f"/compute/jobs/{MACHINE}", data={"job": "/etc/hostname", "isPath": "true"})
    assert outside.status_code == 403


# ---------------------------------------------------------------------- knobs
def test_latency_knob(gateway: SFAPIGateway) -> None:
    url = gateway.api_url + "/status"
    gateway.knobs.latency = 1.0
    start = time.monotonic()
    assert httpx.get(url, timeout=5).status_code == 200
    assert time.monotonic() - start >= 0.95  # a lower bound: never timing-fragile
    admin(gateway, latency=0)
    start = time.monotonic()
    httpx.get(url, timeout=5)
    # Cleared: far below the 1 s the knob would add, with ample room for a loaded machine.
    assert time.monotonic() - start < 0.9


def test_error_rate_is_seeded_and_filtered(gateway: SFAPIGateway, sfapi: Any) -> None:
    url = gateway.api_url + f"/status/{MACHINE}"

    def run(n: int = 20) -> list[int]:
        return [httpx.get(url, timeout=5).status_code for _ in range(n)]

    admin(gateway, error_rate=0.5, seed=7)
    first = run()
    admin(gateway, seed=7)
    assert run() == first
    assert 200 in first and set(first) - {200} and set(first) <= {200, 500, 502, 503}

    gateway.knobs.error_rate = 1.0
    sfapi._http_client().fetch_token()  # the token endpoint is spared by default
    gateway.knobs.error_on_token = True
    r = httpx.post(gateway.token_url, data={"grant_type": "client_credentials"}, timeout=5)
    assert r.status_code in (500, 502, 503)

    admin(gateway, error_on_token=False, error_paths=["/compute"])
    assert run(5) == [200] * 5
    r = httpx.get(gateway.api_url + f"/compute/jobs/{MACHINE}", timeout=5)
    assert r.status_code in (500, 502, 503)  # before auth: "before doing anything"


def test_hang_until_cleared_and_released_on_stop(
    client_key: tuple[Path, str, str], site_dir: Path
) -> None:
    gw = SFAPIGateway(workdir=site_dir, file_roots=[site_dir]).start()
    outcome: dict[str, Any] = {}

    def request(tag: str) -> None:
        try:
            outcome[tag] = httpx.get(gw.api_url + "/status", timeout=15).status_code
        except httpx.HTTPError as exc:
            outcome[tag] = type(exc).__name__

    try:
        gw.knobs.hang = True
        first = threading.Thread(target=request, args=("cleared",))
        first.start()
        time.sleep(0.4)
        assert "cleared" not in outcome  # accepted, not answered
        admin(gw, hang=False)  # admin routes never hang
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


@pytest.mark.slurm
def test_post_timeout_creates_job_before_answering(
    gateway: SFAPIGateway, api: httpx.Client
) -> None:
    gateway.knobs.post_timeout = 2.5
    name = unique_name()
    start = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        api.post(
            f"/compute/jobs/{MACHINE}",
            data={"job": script(name, "sleep 20"), "isPath": "false"},
            timeout=1.0,
        )
    assert time.monotonic() - start < 2.4  # the client's timeout, not the gateway's stall
    # The job exists although the client saw a timeout (sbatch may finish just after it).
    poll(lambda: gateway.jobs_created, 5, 0.05, "sbatch in the background")
    assert len(gateway.jobs_created) == 1
    rows = query(api, False, f"name={name}")
    assert [r["jobid"] for r in rows] == gateway.jobs_created
    assert gateway.counters["jobs_submit"] == 1
    tasks = api.get("/tasks").json()["tasks"]
    assert json.loads(tasks[0]["result"])["jobid"] == gateway.jobs_created[0]


@pytest.mark.slurm
def test_task_delay(gateway: SFAPIGateway, api: httpx.Client) -> None:
    # Long enough that sbatch (normally ~0.1 s) finishes well inside it even on a busy host.
    gateway.knobs.task_delay = 2.5
    r = api.post(
        f"/compute/jobs/{MACHINE}", data={"job": script(unique_name(), "exit 0"), "isPath": "false"}
    )
    task_id = r.json()["task_id"]
    assert api.get(f"/tasks/{task_id}").json() == {"id": task_id, "status": "new", "result": None}
    poll(lambda: gateway.jobs_created, 5, 0.05, "sbatch in the background")
    assert api.get(f"/tasks/{task_id}").json()["status"] == "new"  # job exists, task silent
    result = wait_task(api, task_id, timeout=5)
    assert result["jobid"] == gateway.jobs_created[0]


def test_machine_status_knob(gateway: SFAPIGateway, sfapi: Any) -> None:
    admin(gateway, machine_status="degraded", status_notes=["slow filesystem"])
    compute = sfapi.compute(MACHINE)
    assert compute.status.value == "degraded" and compute.notes == ["slow filesystem"]

    gateway.knobs.update(machine_status="unavailable", status_description="Maintenance")
    compute = sfapi.compute(MACHINE)
    assert compute.status.value == "unavailable" and compute.description == "Maintenance"
    # Note: sfapi_client 0.6's check_auth means to refuse an unavailable machine but looks
    # for ``status`` on the Client, not the Compute, so it never does: callers must check.
    everything = httpx.get(gateway.api_url + "/status", timeout=5).json()
    assert [s["status"] for s in everything] == ["unavailable"]
    assert httpx.get(gateway.api_url + "/status/nosuch", timeout=5).status_code == 404


def test_admin_endpoints(gateway: SFAPIGateway) -> None:
    r = httpx.post(gateway.base_url + "/_admin/knobs", json={"machine_status": "bogus"})
    assert r.status_code == 400
    r = httpx.post(gateway.base_url + "/_admin/knobs", json={"no_such_knob": 1})
    assert r.status_code == 400
    httpx.get(gateway.api_url + "/status", timeout=5)
    state = httpx.get(gateway.base_url + "/_admin/state", timeout=5).json()
    assert state["counters"] == {"status": 1}
    assert state["knobs"]["expired_token_status"] == 403 and state["jobs_created"] == []
    assert httpx.get(gateway.api_url + "/nothing/here", timeout=5).status_code == 404


# ---------------------------------------------------------------------- files
def test_utilities_path_confinement(
    gateway: SFAPIGateway, sfapi: Any, api: httpx.Client, site_dir: Path
) -> None:
    (site_dir / "hello.txt").write_text("hi there\n")
    (site_dir / "escape").symlink_to("/etc")

    r = api.get(f"/utilities/download/{MACHINE}/{site_dir}/hello.txt")
    assert r.json() == {"status": "OK", "file": "hi there\n", "is_binary": False, "error": None}
    compute = sfapi.compute(MACHINE)
    [remote] = compute.ls(f"{site_dir}/hello.txt")
    assert remote.is_file() and remote.download().read() == "hi there\n"
    assert {p.name for p in compute.ls(str(site_dir))} == {"hello.txt", "escape -> /etc"}

    for path in ("/etc/hostname", f"{site_dir}/escape/hostname", "/"):
        for op in ("ls", "download"):
            r = api.get(f"/utilities/{op}/{MACHINE}/{path}")
            assert r.status_code == 403, (op, path)
            assert r.json()["status"] == "ERROR"

    missing = api.get(f"/utilities/download/{MACHINE}/{site_dir}/nope.txt").json()
    assert missing["status"] == "ERROR" and "No such file or directory" in missing["error"]

    files = {"file": ("up.txt", b"\x00binary\r\nbytes", "application/octet-stream")}
    r = api.put(f"/utilities/upload/{MACHINE}/{site_dir}/up.txt", files=files)
    assert r.status_code == 200 and r.json()["status"] == "OK"
    assert (site_dir / "up.txt").read_bytes() == b"\x00binary\r\nbytes"
    r = api.put(f"/utilities/upload/{MACHINE}//tmp/hx-outside.txt", files=files)
    assert r.status_code == 403 and not Path("/tmp/hx-outside.txt").exists()


# ---------------------------------------------------------------------- CLI
def test_standalone_cli(tmp_path: Path) -> None:
    key = tmp_path / "cli-key.pem"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harvester_edge.localsite.sfapi_gateway",
            "--port",
            "0",
            "--key-file",
            str(key),
            "--workdir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["api_url"].endswith("/api/v1.2") and info["token_url"].endswith("/oidc/token")
        assert key.read_text().startswith(info["client_id"] + "\n")
        r = httpx.get(info["api_url"] + f"/status/{MACHINE}", timeout=5)
        assert r.json()["status"] == "active"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
