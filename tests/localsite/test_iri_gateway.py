"""The loopback DOE IRI gateway (v1 and v2) over raw HTTP, with real jobs on the local Slurm.

Slurm-marked tests run real jobs; every job name is unique per test so the suite can share the
cluster.  The reference semantics checked here are those of doe-iri/iri-facility-api-python
(1.1.0 and 2.0.0) and the observations in shared/FACILITY_APIS.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harvester_edge.edge.encoders import canonical_json, psij_job_spec
from harvester_edge.edge.spec import JobSpec
from harvester_edge.localsite.iri_gateway import IRIGateway, resource_id_for
from harvester_edge.localsite.iri_spec import (
    SitePolicy,
    SpecInvalid,
    batch_job,
    fingerprint,
    parse_job_spec,
)
from harvester_edge.localsite.iri_states import job_status, psij_state
from harvester_edge.localsite.slurm import LocalSlurm

from ..conftest import slurm_reachable
from ._helpers import poll, unique_name

PROBLEM_KEYS = {"type", "status", "title", "detail", "instance"}


# ---------------------------------------------------------------------- fixtures
@pytest.fixture
def gateway(slurm: LocalSlurm, site_dir: Path) -> Iterator[IRIGateway]:
    """Both API versions on one server; the jobs it made are cancelled afterwards."""
    gw = IRIGateway(slurm=slurm, workdir=site_dir)
    with gw:
        yield gw
    if gw.jobs_created and slurm_reachable():
        slurm.scancel(gw.jobs_created)


def client(gw: IRIGateway, version: str = "v2", user: str = "alice") -> httpx.Client:
    token = gw.issue_token(user)
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=gw.api_url(version), headers=headers, timeout=15)


@pytest.fixture
def api(gateway: IRIGateway) -> Iterator[httpx.Client]:
    with client(gateway) as c:
        yield c


@pytest.fixture
def rid(gateway: IRIGateway) -> str:
    return gateway.resource("perlmutter").id


def job(name: str, script: str, site: Path | None = None, **extra: Any) -> dict[str, Any]:
    """A JobSpec like our client sends: ``bash`` with ``-c <script>``."""
    body: dict[str, Any] = {
        "name": name,
        "executable": "bash",
        "arguments": ["-c", script],
        "stdout_path": "/dev/null",
        "attributes": {"duration": 120},
    }
    if site is not None:
        body["directory"] = str(site)
    body.update(extra)
    return body


def bulk(api: httpx.Client, rid: str, filters: Any = None, **params: str) -> list[dict[str, Any]]:
    r = api.post(f"/compute/status/{rid}", params=params, json=filters)
    assert r.status_code == 200, r.text
    jobs: list[dict[str, Any]] = r.json()
    return jobs


def assert_problem(r: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert PROBLEM_KEYS <= set(body), body
    assert body["status"] == status and body["instance"].startswith("http://")
    assert r.headers["content-type"] == "application/problem+json"
    if kind is not None:
        assert body["type"].endswith(f"/problems/{kind}"), body
    return body


# ---------------------------------------------------------------------- auth
def test_bearer_auth_on_every_route(gateway: IRIGateway, rid: str) -> None:
    base = gateway.api_url("v2")
    routes = [
        ("GET", "/status/resources"),
        ("GET", f"/status/resources/{rid}"),
        ("GET", "/status/incidents"),
        ("POST", f"/compute/job/{rid}"),
        ("POST", f"/compute/status/{rid}"),
        ("GET", f"/compute/status/{rid}/1"),
        ("DELETE", f"/compute/cancel/{rid}/1"),
    ]
    for method, path in routes:
        r = httpx.request(method, base + path, timeout=5)
        body = assert_problem(r, 401, "unauthorized")
        assert body["detail"] == "Not authenticated" and r.headers["www-authenticate"] == "Bearer"
        bad = {"Authorization": "Bearer not-a-token"}
        r = httpx.request(method, base + path, headers=bad, timeout=5)
        assert_problem(r, 401, "unauthorized")
    basic = {"Authorization": "Basic dXNlcjpwdw=="}
    assert httpx.get(base + "/status/resources", headers=basic, timeout=5).status_code == 401

    token = gateway.issue_token("alice", expires_in=0.3)
    good = {"Authorization": f"Bearer {token}"}
    assert httpx.get(base + "/status/resources", headers=good, timeout=5).status_code == 200
    time.sleep(0.4)
    r = httpx.get(base + "/status/resources", headers=good, timeout=5)
    assert "expired" in assert_problem(r, 401, "unauthorized")["detail"]
    gateway.knobs.expired_token_status = 403  # as NERSC answered SFAPI tokens
    r = httpx.get(base + "/status/resources", headers=good, timeout=5)
    assert assert_problem(r, 403, "forbidden")["title"] == "Forbidden"
    gateway.revoke_token(token)
    assert httpx.get(base + "/status/resources", headers=good, timeout=5).status_code == 401


def test_public_status_when_asked(slurm: LocalSlurm, site_dir: Path) -> None:
    with IRIGateway(slurm=slurm, workdir=site_dir, status_auth=False) as gw:
        base = gw.api_url("v1")
        assert httpx.get(base + "/status/resources", timeout=5).status_code == 200
        rid = gw.resource("frontier").id
        r = httpx.post(f"{base}/compute/status/{rid}", json={}, timeout=5)
        assert_problem(r, 401, "unauthorized")


# ---------------------------------------------------------------------- status
def test_resources_and_incidents(gateway: IRIGateway) -> None:
    with client(gateway, "v2") as v2, client(gateway, "v1") as v1:
        docs = v2.get("/status/resources").json()
        assert [d["name"] for d in docs] == ["perlmutter", "frontier"]
        required = {"id", "last_modified", "resource_type", "self_uri", "site_uri"}
        for doc in docs:
            assert required | {"capability_uris", "current_status"} <= set(doc)
            assert str(uuid.UUID(doc["id"])) == doc["id"] == resource_id_for(doc["name"])
            assert doc["current_status"] == "up" and doc["supported_endpoints"] == ["compute"]
            assert doc["self_uri"] == f"{gateway.api_url('v2')}/status/resources/{doc['id']}"
        assert docs[0]["resource_type"] == "urn:doe-iri:resource:compute:system"
        assert v1.get("/status/resources").json()[0]["resource_type"] == "compute"

        frontier = gateway.resource("frontier")
        gateway.knobs.resource_status = {"frontier": "down"}
        one = v2.get(f"/status/resources/{frontier.id}").json()
        assert one["name"] == "frontier" and one["current_status"] == "down"
        assert [d["name"] for d in v2.get("/status/resources?current_status=down").json()] == [
            "frontier"
        ]
        assert v2.get("/status/resources", params={"name": "perlmutter"}).json()[0]["id"] == (
            resource_id_for("perlmutter")
        )
        assert_problem(v2.post(f"/compute/status/{frontier.id}", json={}), 503)  # down
        assert_problem(v2.get("/status/resources/nope"), 404, "not-found")
        assert_problem(v2.get("/status/resources?bogus=1"), 422, "generic-error")
        assert_problem(v2.get("/status/resources?current_status=sideways"), 400)
        gateway.knobs.machine_status = "degraded"  # the SFAPI knob drives the rest
        assert v2.get("/status/resources").json()[0]["current_status"] == "degraded"

        # The reference answers an empty incident list with 404.
        assert assert_problem(v2.get("/status/incidents"), 404)["detail"] == "No incidents found"
        gateway.knobs.incidents = [
            {
                "name": "maintenance",
                "resources": ["frontier"],
                "start": 3600,
                "end": 7200,
                "description": "planned outage",
            },
            {"name": "lustre", "type": "unplanned", "status": "degraded", "start": -60},
        ]
        incidents = v2.get("/status/incidents").json()
        planned, unplanned = incidents
        assert planned["type"] == "planned" and planned["resolution"] == "pending"
        assert planned["start"] < planned["end"] and planned["status"] == "down"
        assert planned["resource_uris"] == [
            f"{gateway.api_url('v2')}/status/resources/{frontier.id}"
        ]
        assert unplanned["end"] is None and len(unplanned["resource_uris"]) == 2
        assert {"id", "last_modified", "self_uri", "event_uris"} <= set(planned)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        assert [i["name"] for i in v2.get("/status/incidents", params={"time": now}).json()] == [
            "lustre"
        ]
        got = v2.get("/status/incidents", params={"type": "planned", "resource_id": frontier.id})
        assert [i["name"] for i in got.json()] == ["maintenance"]
        assert v2.get(f"/status/incidents/{planned['id']}").json() == planned
        assert_problem(v2.get("/status/incidents", params={"from": "yesterday"}), 400)
    assert gateway.counters["resources"] >= 5 and gateway.counters["incidents"] >= 5


# ---------------------------------------------------------------------- spec validation
def test_job_spec_validation(gateway: IRIGateway, api: httpx.Client, rid: str) -> None:
    url = f"/compute/job/{rid}"
    r = api.post(url, json={**job("x", "true"), "script": "echo", "foo": 1})
    body = assert_problem(r, 400, "invalid-parameter")
    assert body["invalid_params"] == [
        {"name": "script", "reason": "Extra inputs are not permitted"},
        {"name": "foo", "reason": "Extra inputs are not permitted"},
    ]
    wrong = {
        **job("x", "true"),
        "arguments": ["-c", 3],
        "environment": {"A": 1},
        "resources": {"node_count": "two", "exclusive_node_use": "true", "memory": 1.5},
    }
    names = [p["name"] for p in assert_problem(api.post(url, json=wrong), 400)["invalid_params"]]
    assert names == ["1", "A", "node_count", "exclusive_node_use", "memory"]
    assert_problem(api.post(url, content=b"{not json", headers={"content-type": "x"}), 400)
    assert_problem(api.post(url, json=["bash"]), 400)
    assert_problem(api.post(url), 400)  # no body: "Field required"
    nothing = assert_problem(api.post(url, json={"name": "x"}), 422, "unprocessable-entity")
    assert nothing["invalid_params"] == [
        {"name": "job_spec.executable", "reason": "Executable must be provided"}
    ]
    boxed = {**job("x", "true"), "container": {"image": "ubuntu"}, "launcher": "aprun"}
    assert len(assert_problem(api.post(url, json=boxed), 422)["invalid_params"]) == 2
    assert_problem(api.post(url, json={**job("x", "true"), "name": "a\nb"}), 422)
    assert_problem(api.post("/compute/job/no-such-resource", json=job("x", "true")), 404)
    assert_problem(api.post(url, params={"dry": "1"}, json=job("x", "true")), 422)
    assert_problem(api.put(f"{url}/1", json=job("x", "true")), 404)  # not our job
    assert_problem(api.get("/compute/job/" + rid), 405, "method-not-allowed")
    assert_problem(api.get("/no/such/route"), 404)
    assert gateway.jobs_created == []


def test_fastapi_validation_style(slurm: LocalSlurm, site_dir: Path) -> None:
    with IRIGateway(slurm=slurm, workdir=site_dir, validation_style="fastapi") as gw:
        with client(gw) as api:
            rid = gw.resource("perlmutter").id
            r = api.post(f"/compute/job/{rid}", json={**job("x", "true"), "foo": 1})
            assert r.status_code == 422
            assert r.json() == {
                "detail": [
                    {
                        "type": "extra_forbidden",
                        "loc": ["body", "foo"],
                        "msg": "Extra inputs are not permitted",
                        "input": 1,
                    }
                ]
            }
            r = api.post(f"/compute/status/{rid}", params={"limit": "1001"})
            assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "limit"]


def test_spec_parsing_and_fingerprint() -> None:
    lax = parse_job_spec({"executable": "x", "resources": {"node_count": "2", "cores": 1}})
    assert lax.sent == {"executable": "x", "resources": {"node_count": 2}}  # extras dropped
    assert lax.get("resources", "exclusive_node_use") is True  # the model's default
    with pytest.raises(SpecInvalid) as err:
        parse_job_spec({"resources": {"node_count": 2.5, "process_count": 0}})
    assert [e.type for e in err.value.errors] == ["int_from_float", "greater_than_equal"]
    # Key order and spelled-out defaults do not change the identity.
    a = parse_job_spec({"executable": "x", "arguments": ["1"], "resources": {"node_count": 1}})
    b = parse_job_spec(
        {
            "resources": {"exclusive_node_use": True, "node_count": 1},
            "inherit_environment": True,
            "arguments": ["1"],
            "executable": "x",
        }
    )
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(parse_job_spec({"executable": "x", "arguments": ["2"]}))


def test_batch_job_quotes_values_and_maps_site_options() -> None:
    spec = parse_job_spec(
        {
            "name": "n",
            "executable": "bash",
            "arguments": ["-c", "echo '$(id)' \"x\"; exit 3"],
            "environment": {"A": "x y;$(id)"},
            "stdin_path": "/in put",
            "inherit_environment": False,
            "resources": {"node_count": 2, "memory": 3 * 2**20 + 1, "exclusive_node_use": False},
            "attributes": {
                "duration": 3661,
                "queue_name": "regular",
                "account": "m1",
                "custom_attributes": {"qos": "debug"},
            },
        }
    )
    script, options = batch_job(spec, SitePolicy())
    assert "export A='x y;$(id)'\n" in script
    assert "bash -c 'echo '\"'\"'$(id)'\"'\"' \"x\"; exit 3' < '/in put'\n" in script
    assert script.endswith('exit "$__iri_rc"\n')
    assert options == [
        "--job-name=n",
        "--export=NONE",
        "--nodes=2",
        "--mem=4M",
        "--time=1:01:01",
    ]
    _, mapped = batch_job(
        spec, SitePolicy({"regular": "debug"}, {"m1": "root"}, pass_custom_attributes=True)
    )
    assert mapped[-3:] == ["--partition=debug", "--account=root", "--qos=debug"]


def test_slurm_states_map_to_psij() -> None:
    assert psij_state("PENDING") == "queued"
    assert psij_state("PENDING", "JobHeldUser") == "held"
    assert psij_state("COMPLETING") == "active"
    assert psij_state("COMPLETED", exit_raw="0:0") == "completed"
    assert psij_state("CANCELLED by 0") == "canceled"
    for state in ("FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
        assert psij_state(state) == "failed"
    timeout = job_status({"jobid": "1", "state": "TIMEOUT", "exitcode": "0:15"}, "sacct")
    assert timeout["state"] == "failed" and timeout["exit_code"] == 143
    assert "TIMEOUT" in timeout["message"] and timeout["meta_data"]["signal"] == 15


# ---------------------------------------------------------------------- real jobs
@pytest.mark.slurm
def test_job_life_in_bulk_status(
    gateway: IRIGateway, api: httpx.Client, rid: str, site_dir: Path
) -> None:
    # Job A is what our client posts (psij_job_spec: bash -l -c <wrapper>), byte for byte.
    tag = unique_name()
    spec = JobSpec(
        tag=tag,
        script=f'#!/bin/bash\n#SBATCH -J {tag}\n#SBATCH -q regular\nsleep 2\necho "ok $X"\n',
        work_dir=str(site_dir),
        nodes=1,
        walltime_s=300,
        account="m1234",
        partition="regular",
        qos="regular",
        constraint="cpu",
        environment=(("X", "a'b $(touch pwned)"),),
        stdout_path=str(site_dir / "a.out"),
    )
    r = api.post(
        f"/compute/job/{rid}",
        content=canonical_json(psij_job_spec(spec)),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["status"]["state"] == "new" and a["status"]["exit_code"] is None
    assert a["job_spec"]["name"] == tag and a["status"]["meta_data"]["queue_name"] == "regular"
    # Job B fails with exit code 3.
    name_b = unique_name()
    b = api.post(f"/compute/job/{rid}", json=job(name_b, "sleep 1; exit 3", site_dir)).json()
    assert gateway.jobs_created == [a["id"], b["id"]] and isinstance(a["id"], str)

    names = {"name": [tag, name_b]}
    live = bulk(api, rid, names)
    assert {j["id"] for j in live} == {a["id"], b["id"]}
    assert all(j["status"]["state"] in ("queued", "active") for j in live)
    assert "job_spec" not in live[0]
    poll(
        lambda: any(j["status"]["state"] == "active" for j in bulk(api, rid, {"id": a["id"]})),
        10,
        0.2,
        "job A active",
    )
    # Finished jobs leave the default (historical=false) listing ...
    poll(lambda: bulk(api, rid, names) == [], 15, 0.3, "both jobs out of the live set")

    # ... and are there with historical=true, with their PSI/J state and exit code.
    def final() -> list[dict[str, Any]]:
        jobs = bulk(api, rid, names, historical="true", include_spec="true")
        return jobs if [j["status"]["state"] for j in jobs] == ["completed", "failed"] else []

    done_a, done_b = poll(final, 15, 0.3, "final states from accounting")
    assert [done_a["id"], done_b["id"]] == sorted([a["id"], b["id"]], key=int)
    assert done_a["status"]["exit_code"] == 0 and done_a["job_spec"]["name"] == tag
    assert done_b["status"]["exit_code"] == 3
    assert "FAILED" in done_b["status"]["message"] and "3:0" in done_b["status"]["message"]
    assert done_b["status"]["meta_data"]["slurm_state"] == "FAILED"
    assert (site_dir / "a.out").read_text() == "ok a'b $(touch pwned)\n"
    assert not (site_dir / "pwned").exists()

    one = api.get(f"/compute/status/{rid}/{b['id']}").json()  # historical defaults to true
    assert one["status"]["state"] == "failed" and one["status"]["exit_code"] == 3
    assert_problem(api.get(f"/compute/status/{rid}/{b['id']}?historical=false"), 404)
    assert_problem(api.get(f"/compute/status/{rid}/{b['id']}?historical=1"), 400)
    failed = bulk(api, rid, {"state": "failed", "name": names["name"]}, historical="true")
    assert [j["id"] for j in failed] == [b["id"]] and "job_spec" not in failed[0]
    with client(gateway, user="bob") as bob:  # jobs are per user
        assert bulk(bob, rid, names, historical="true") == []
        assert_problem(bob.get(f"/compute/status/{rid}/{b['id']}"), 404)
    assert_problem(api.post(f"/compute/status/{rid}", json={"tag": "x"}), 400)


@pytest.mark.slurm
def test_cancel(gateway: IRIGateway, api: httpx.Client, rid: str) -> None:
    name = unique_name()
    jid = api.post(f"/compute/job/{rid}", json=job(name, "sleep 60")).json()["id"]
    r = api.delete(f"/compute/cancel/{rid}/{jid}")
    assert r.status_code == 204 and r.content == b""

    def canceled() -> dict[str, Any] | None:
        jobs = bulk(api, rid, {"id": [jid]}, historical="true")
        return jobs[0] if jobs and jobs[0]["status"]["state"] == "canceled" else None

    status = poll(canceled, 10, 0.2, "canceled")["status"]
    assert status["meta_data"]["slurm_state"].startswith("CANCELLED")
    assert api.delete(f"/compute/cancel/{rid}/{jid}").status_code == 204  # already ended
    assert_problem(api.delete(f"/compute/cancel/{rid}/999999999"), 404)
    assert_problem(api.put(f"/compute/job/{rid}/{jid}", json=job(name, "true")), 501)


# ---------------------------------------------------------------------- idempotency (v2)
@pytest.mark.slurm
def test_idempotency_hit_mismatch_users_and_expiry(
    gateway: IRIGateway, api: httpx.Client, rid: str
) -> None:
    url = f"/compute/job/{rid}"
    name = unique_name()
    body = job(name, "sleep 30")
    first = api.post(url, json=body, headers={"Idempotency-Key": "w-1"})
    assert first.status_code == 200 and first.headers["idempotency-key-reply"] == "miss"
    # Same parsed body (other key order, a default spelled out): the first reply, unchanged.
    same = {**dict(reversed(list(body.items()))), "inherit_environment": True}
    again = api.post(url, json=same, headers={"Idempotency-Key": "w-1"})
    assert again.status_code == 200 and again.headers["idempotency-key-reply"] == "hit"
    assert again.json() == first.json() and again.json()["status"]["state"] == "new"
    assert len(gateway.jobs_created) == 1
    assert len(bulk(api, rid, {"name": name})) == 1  # one Slurm job

    other = api.post(url, json=job(name, "sleep 31"), headers={"Idempotency-Key": "w-1"})
    assert "different request body" in assert_problem(other, 422)["detail"]
    with client(gateway, user="bob") as bob:  # keys are per user
        mine = bob.post(url, json=body, headers={"Idempotency-Key": "w-1"})
        assert mine.headers["idempotency-key-reply"] == "miss"
        assert mine.json()["id"] != first.json()["id"]
    blank = api.post(url, json=body, headers={"Idempotency-Key": ""})  # empty = no key
    assert blank.status_code == 200 and "idempotency-key-reply" not in blank.headers
    with client(gateway, "v1") as v1:  # v1 has no such header: ignored
        plain = v1.post(url, json=body, headers={"Idempotency-Key": "w-1"})
        assert plain.status_code == 200 and "idempotency-key-reply" not in plain.headers
    assert len(gateway.jobs_created) == 4

    gateway.knobs.idempotency_ttl = 0.2  # entries expire (24 h by default)
    time.sleep(0.3)
    late = api.post(url, json=body, headers={"Idempotency-Key": "w-1"})
    assert late.headers["idempotency-key-reply"] == "miss" and len(gateway.jobs_created) == 5


@pytest.mark.slurm
def test_idempotency_in_flight_conflict(gateway: IRIGateway, rid: str) -> None:
    url = f"{gateway.api_url('v2')}/compute/job/{rid}"
    token = gateway.issue_token("alice")
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "slow-1"}
    body = job(unique_name(), "sleep 30")
    gateway.knobs.submit_delay = 1.0  # a slow scheduler: the first request stays in flight
    replies: list[httpx.Response] = []
    first = threading.Thread(
        target=lambda: replies.append(httpx.post(url, json=body, headers=headers, timeout=10))
    )
    first.start()
    time.sleep(0.3)
    dup = httpx.post(url, json=body, headers=headers, timeout=10)
    conflict = assert_problem(dup, 409, "conflict")
    assert "in progress" in conflict["detail"] and "retry-after" not in dup.headers
    first.join(10)
    gateway.knobs.submit_delay = 0
    assert replies and replies[0].status_code == 200
    hit = httpx.post(url, json=body, headers=headers, timeout=10)
    assert hit.headers["idempotency-key-reply"] == "hit"
    assert hit.json()["id"] == replies[0].json()["id"] and len(gateway.jobs_created) == 1


@pytest.mark.slurm
def test_without_store_a_key_gets_501(slurm: LocalSlurm, site_dir: Path) -> None:
    gw = IRIGateway(slurm=slurm, workdir=site_dir, idempotency_store=False)
    with gw, client(gw) as api, client(gw, "v1") as v1:
        rid = gw.resource("frontier").id
        body = job(unique_name(), "true")
        r = api.post(f"/compute/job/{rid}", json=body, headers={"Idempotency-Key": "k"})
        assert "no idempotency store" in assert_problem(r, 501, "generic-error")["detail"]
        assert gw.jobs_created == []
        assert api.post(
            f"/compute/job/{rid}", json=body, headers={"Idempotency-Key": ""}
        ).is_success
        assert v1.post(
            f"/compute/job/{rid}", json=body, headers={"Idempotency-Key": "k"}
        ).is_success
        assert len(gw.jobs_created) == 2
    slurm.scancel(gw.jobs_created)


# ---------------------------------------------------------------------- knobs
@pytest.mark.slurm
def test_lost_submit_replies_leave_one_job(
    gateway: IRIGateway, api: httpx.Client, rid: str
) -> None:
    url = f"/compute/job/{rid}"
    name = unique_name()
    body = job(name, "sleep 30")
    gateway.knobs.update(error_after_submit=1.0, seed=7)  # 5xx once the job exists
    r = api.post(url, json=body, headers={"Idempotency-Key": "lost-1"})
    assert r.status_code in (500, 502, 503, 504) and "after submit" in r.json()["detail"]
    assert len(gateway.jobs_created) == 1
    gateway.knobs.update(error_after_submit=0.0, drop_after_submit=1.0)  # no reply at all
    with pytest.raises(httpx.RemoteProtocolError):
        api.post(url, json=body, headers={"Idempotency-Key": "lost-2"})
    assert len(gateway.jobs_created) == 2
    gateway.knobs.drop_after_submit = 0.0
    for key, jid in zip(("lost-1", "lost-2"), gateway.jobs_created, strict=True):
        retry = api.post(url, json=body, headers={"Idempotency-Key": key})
        assert retry.headers["idempotency-key-reply"] == "hit" and retry.json()["id"] == jid
    assert [j["id"] for j in bulk(api, rid, {"name": name})] == gateway.jobs_created

    gateway.knobs.post_timeout = 1.0  # the job exists before the client's read timeout
    with pytest.raises(httpx.ReadTimeout):
        api.post(url, json=job(name, "sleep 30"), timeout=0.5)
    gateway.knobs.post_timeout = 0
    assert len(bulk(api, rid, {"name": name})) == 3 == len(gateway.jobs_created)
    assert gateway.counters["submit"] == 5


def test_fault_knobs(gateway: IRIGateway, api: httpx.Client) -> None:
    gateway.knobs.update(error_rate=1.0, seed=3, error_paths=["/status/incidents"])
    r = api.get("/status/incidents")
    assert r.status_code in (500, 502, 503) and r.json()["detail"].startswith("injected")
    assert api.get("/status/resources").status_code == 200  # other paths untouched
    gateway.knobs.update(error_rate=0.0, drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        api.get("/status/incidents")
    gateway.knobs.update(drop_rate=0.0, error_paths=[], hang=True)
    with pytest.raises(httpx.ReadTimeout):
        api.get("/status/resources", timeout=0.3)
    gateway.knobs.hang = False
    gateway.knobs.latency = 0.2
    started = time.monotonic()
    assert api.get("/status/resources").status_code == 200
    assert time.monotonic() - started >= 0.2
    assert gateway.counters["incidents"] == 2 and gateway.counters["resources"] == 3
    r = httpx.post(
        gateway.base_url + "/_admin/knobs", json={"resource_status": {"x": "on"}}, timeout=5
    )
    assert r.status_code == 400
    state = httpx.get(gateway.base_url + "/_admin/state", timeout=5).json()
    assert state["resources"]["perlmutter"] == resource_id_for("perlmutter")


@pytest.mark.slurm
def test_paging_offset_limit(gateway: IRIGateway, api: httpx.Client, rid: str) -> None:
    name = unique_name()
    ids = [
        api.post(f"/compute/job/{rid}", json=job(name, "sleep 30")).json()["id"] for _ in "12345"
    ]
    filters = {"name": name}
    pages = [bulk(api, rid, filters, offset=str(o), limit="2") for o in (0, 2, 4, 6)]
    assert [len(p) for p in pages] == [2, 2, 1, 0]
    assert [j["id"] for p in pages for j in p] == sorted(ids, key=int)
    assert bulk(api, rid, filters, limit="0") == []
    assert len(bulk(api, rid, filters, limit="1000")) == 5
    assert_problem(api.post(f"/compute/status/{rid}", params={"limit": "1001"}, json=filters), 400)
    assert_problem(api.post(f"/compute/status/{rid}", params={"offset": "-1"}, json=filters), 400)
    assert_problem(api.post(f"/compute/status/{rid}", params={"page": "2"}, json=filters), 422)
    assert [j["id"] for j in bulk(api, rid, {"id": [ids[3], 12]})] == [ids[3]]
    assert gateway.counters["jobs_status"] == 10


# ---------------------------------------------------------------------- CLI
def test_main_runs_until_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    argv = [sys.executable, "-m", "harvester_edge.localsite.iri_gateway", "--user", "carol"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path) as proc:
        try:
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            headers = {"Authorization": f"Bearer {info['token']}"}
            url = info["api_urls"]["v1"] + "/status/resources"
            r = httpx.get(url, headers=headers, timeout=5)
            assert [d["id"] for d in r.json()] == list(info["resources"].values())
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
