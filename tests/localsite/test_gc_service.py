"""The loopback Globus Compute service, driven by the real globus-compute-sdk / globus-sdk.

Wire-level checks (tokens, 401, 429, knobs) use raw HTTP; everything else goes through
``globus_compute_sdk.Client`` with a confidential client (``ClientApp``), so the SDK's own
serializer packs the functions and arguments and unpacks the results.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harvester_edge.localsite.gc_knobs import GCKnobs
from harvester_edge.localsite.gc_service import GCService, start_gc_service
from harvester_edge.localsite.slurm import LocalSlurm, default_slurm_conf

from ..conftest import slurm_reachable
from ._helpers import poll, unique_name

CLIENT_ID = "0b3c3e52-6f1e-4bd7-9a55-7b1f3c0d9e01"
CLIENT_SECRET = "loopback-secret-1"
#: seconds a Slurm-backed wait may take (the cluster is shared: blocks may queue a while)
SLURM_WAIT = 180.0


class Clock:
    """A settable wall clock for result retention."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def svc(tmp_path: Path, clock: Clock) -> Iterator[GCService]:
    slurm = LocalSlurm(default_slurm_conf())
    service = start_gc_service(
        slurm, tmp_path / "ep", CLIENT_ID, CLIENT_SECRET, clock=clock, poll_interval=0.3
    )
    yield service
    service.stop()
    if service.jobs_created and slurm_reachable():
        slurm.scancel(service.jobs_created)


@pytest.fixture
def client(svc: GCService) -> Any:
    """The real SDK Client as a confidential client, pointed at the service."""
    import globus_sdk
    from globus_compute_sdk import Client

    config = globus_sdk.GlobusAppConfig(
        token_storage="memory",
        environment="production",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLOBUS_SDK_SERVICE_URL_AUTH", svc.auth_url)
        app = globus_sdk.ClientApp(
            "loopback-test", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, config=config
        )
        gcc = Client(app=app, do_version_check=False)
        svc.point_client(gcc)
        gcc.version_check()  # the public version route, as Client() does by default
        yield gcc


@pytest.fixture
def api(svc: GCService) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {svc.issue_token(CLIENT_ID)}"}
    with httpx.Client(base_url=svc.url, headers=headers, timeout=20) as http:
        yield http


def shell(cmd: str, **kw: Any) -> Any:
    from globus_compute_sdk import ShellFunction

    return ShellFunction(cmd, **kw)


def run_batch(
    gcc: Any, svc: GCService, fid: str, calls: list[dict[str, Any]], **config: Any
) -> list[str]:
    batch = gcc.create_batch(user_endpoint_config=config or None)
    for kwargs in calls:
        batch.add(fid, kwargs=kwargs)
    answer = gcc.batch_run(svc.endpoint_id, batch)
    assert answer["endpoint_id"] == svc.endpoint_id
    assert set(answer) == {"request_id", "task_group_id", "endpoint_id", "tasks"}
    ids: list[str] = answer["tasks"][fid]
    assert len(ids) == len(calls)
    return ids


def raw_status(gcc: Any, ids: list[str]) -> dict[str, Any]:
    """``/v2/batch_status`` exactly as the service answers (through globus-sdk)."""
    data: dict[str, Any] = gcc._compute_web_client.v2.get_task_batch(ids).data
    assert data["response"] == "batch"
    results: dict[str, Any] = data["results"]
    return results


def wait_done(svc: GCService, ids: list[str], timeout: float = 60.0) -> None:
    """Wait until the tasks ended, without reading them through the API (a read that
    delivers a result is the last one: the service forgets the task)."""

    def done() -> bool:
        states = svc.task_states()
        return all(states.get(i) in ("success", "failed") for i in ids)

    poll(done, timeout, 0.2, what=f"tasks {ids}")


def sdk_results(gcc: Any, ids: list[str], timeout: float = 60.0) -> dict[str, Any]:
    """``Client.get_batch_result`` until every (successful) task has its result."""

    def done() -> dict[str, Any] | None:
        got = gcc.get_batch_result(ids)
        return got if all(i in got and not got[i]["pending"] for i in ids) else None

    return poll(done, timeout, 0.3, what=f"results of {ids}")


def wait_final(gcc: Any, ids: list[str], timeout: float = 60.0) -> dict[str, Any]:
    """Raw ``batch_status`` until every task is final (this read delivers them)."""

    def done() -> dict[str, Any] | None:
        docs = raw_status(gcc, ids)
        return docs if all(d["status"] in ("success", "failed") for d in docs.values()) else None

    return poll(done, timeout, 0.3, what=f"tasks {ids}")


def submit_raw(
    api: httpx.Client, svc: GCService, fid: str, headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    from globus_compute_sdk.serialize import ComputeSerializer

    serde = ComputeSerializer()
    payload = serde.pack_buffers([serde.serialize(()), serde.serialize({})])
    body = {"tasks": {fid: [payload]}, **extra}
    return api.post(f"/v3/endpoints/{svc.endpoint_id}/submit", json=body, headers=headers)


def register_raw(api: httpx.Client, cmd: str = "true") -> str:
    from globus_compute_sdk.sdk.client import FunctionRegistrationData

    data = FunctionRegistrationData(function=shell(cmd)).to_dict()
    r = api.post("/v3/functions", json=data)
    assert r.status_code == 200, r.text
    fid: str = r.json()["function_uuid"]
    return fid


# ---------------------------------------------------------------------- auth
def test_token_route_issues_expiring_bearer_tokens(svc: GCService) -> None:
    with httpx.Client(base_url=svc.url, timeout=10) as http:
        form = {"grant_type": "client_credentials", "scope": svc_scope()}
        r = http.post("/v2/oauth2/token", data=form, auth=(CLIENT_ID, CLIENT_SECRET))
        assert r.status_code == 200, r.text
        token = r.json()
        assert token["resource_server"] == "funcx_service"
        assert token["token_type"] == "Bearer" and token["expires_in"] == 172800
        assert token["other_tokens"] == []
        good = {"Authorization": f"Bearer {token['access_token']}"}
        assert http.get("/v2/endpoints", headers=good).status_code == 200
        bad = http.post("/v2/oauth2/token", data=form, auth=(CLIENT_ID, "s3cr3t-guess"))
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
        assert "s3cr3t-guess" not in bad.text


def svc_scope() -> str:
    from globus_compute_sdk import Client

    return str(Client.FUNCX_SCOPE)


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc", "Bearer expired"])
def test_compute_routes_refuse_a_bad_bearer_with_401(svc: GCService, header: str | None) -> None:
    if header == "Bearer expired":
        header = f"Bearer {svc.issue_token(CLIENT_ID, lifetime=-1)}"
    headers = {"Authorization": header} if header else {}
    with httpx.Client(base_url=svc.url, timeout=10, headers=headers) as http:
        for method, path in (
            ("GET", f"/v2/endpoints/{svc.endpoint_id}/status"),
            ("POST", "/v2/batch_status"),
            ("POST", f"/v3/endpoints/{svc.endpoint_id}/submit"),
            ("POST", "/v3/functions"),
        ):
            r = http.request(method, path, json={})
            assert r.status_code == 401, (path, r.text)
            assert r.headers["WWW-Authenticate"] == "Bearer"
            assert r.json()["code"] == "USER_UNAUTHENTICATED"
        assert http.get("/v2/version").status_code == 200  # public


def test_sdk_fetches_a_new_token_after_a_401(client: Any, svc: GCService) -> None:
    assert client.get_endpoint_status(svc.endpoint_id)["status"] == "online"
    svc.revoke_tokens()
    assert client.get_endpoint_status(svc.endpoint_id)["status"] == "online"
    assert svc.counters["auth.token"] == 2 and svc.counters["endpoint_status"] == 3


def test_introspection_reports_the_client_identity(svc: GCService) -> None:
    token = svc.issue_token(CLIENT_ID)
    with httpx.Client(base_url=svc.url, timeout=10, auth=(CLIENT_ID, CLIENT_SECRET)) as http:
        live = http.post("/v2/oauth2/token/introspect", data={"token": token}).json()
        assert live["active"] and live["username"] == f"{CLIENT_ID}@clients.auth.globus.org"
        assert http.post("/v2/oauth2/token/introspect", data={"token": "x"}).json() == {
            "active": False
        }


# ---------------------------------------------------------------------- SDK, local provider
def test_sdk_runs_shell_functions_on_the_login_node(client: Any, svc: GCService) -> None:
    from globus_compute_sdk import ShellResult

    fid = client.register_function(shell("echo hello {name}; pwd; exit {rc}"))
    ids = run_batch(client, svc, fid, [{"name": "one", "rc": 0}, {"name": "two", "rc": 3}])
    results = sdk_results(client, ids)
    assert set(results) == set(ids)
    first, second = (results[i]["result"] for i in ids)
    assert isinstance(first, ShellResult) and first.returncode == 0
    lines = first.stdout.splitlines()
    assert lines[0] == "hello one"
    assert lines[1] == str(svc.work_dir / ids[0])  # run in the task's sandbox
    assert second.returncode == 3 and second.exception_name == "subprocess.CalledProcessError"
    assert all(results[i]["status"] == "success" and not results[i]["pending"] for i in ids)
    task = client.get_task(ids[0])  # the SDK's own cache: no request
    assert task["result"].stdout == first.stdout
    assert svc.counters["register_function"] == 1 and svc.counters["submit"] == 1
    # delivered once, then forgotten by the service
    gone = {"task_id": ids[0], "status": "failed", "reason": "unknown task id"}
    assert raw_status(client, ids)[ids[0]] == gone
    assert len(svc.user_endpoints) == 1


def test_a_background_child_does_not_hold_the_task(client: Any, svc: GCService) -> None:
    fid = client.register_function(shell("sleep 20 & echo started"))
    ids = run_batch(client, svc, fid, [{}])
    start = time.monotonic()
    assert sdk_results(client, ids, timeout=30)[ids[0]]["result"].stdout == "started\n"
    assert time.monotonic() - start < 15


def test_tasks_never_see_the_client_secret(
    client: Any, svc: GCService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLOBUS_COMPUTE_CLIENT_SECRET", CLIENT_SECRET)
    fid = client.register_function(shell("env"))
    ids = run_batch(client, svc, fid, [{}])
    out = sdk_results(client, ids)[ids[0]]["result"].stdout
    assert "SLURM_CONF=" in out and f"GC_TASK_UUID={ids[0]}" in out
    assert CLIENT_SECRET not in out


def test_python_function_exception_is_reported_as_the_service_does(
    client: Any, svc: GCService
) -> None:
    from globus_compute_sdk.errors import TaskExecutionFailed

    fid = client.register_source_code(DIVIDE, "divide")
    batch = client.create_batch()
    for args in ((1, 0), (2, 0), (3, 0), (6, 3)):
        batch.add(fid, args=args)
    raw, dropped, single, ok = ids = client.batch_run(svc.endpoint_id, batch)["tasks"][fid]
    wait_done(svc, ids)
    failed = raw_status(client, [raw])[raw]
    assert failed["status"] == "failed" and "ZeroDivisionError" in failed["exception"]
    assert "result" not in failed and float(failed["completion_t"]) > 0
    results = client.get_batch_result([dropped, ok])
    assert dropped not in results  # the SDK drops failed tasks from its answer...
    assert results[ok]["result"] == 2
    lost = raw_status(client, [dropped])[dropped]  # ...and the service forgot it meanwhile
    assert lost["reason"] == "unknown task id" and "exception" not in lost
    with pytest.raises(TaskExecutionFailed, match="ZeroDivisionError"):
        client.get_task(single)


#: a Python function registered as source (a function of this test module would be pickled
#: by reference, which a worker cannot import: the endpoint-side failure real users meet)
DIVIDE = "def divide(a, b):\n    return a // b\n"


def test_batch_status_answers_every_id_and_unknown_ids(client: Any, svc: GCService) -> None:
    fid = client.register_function(shell("true"))
    ids = run_batch(client, svc, fid, [{}])
    unknown = "00000000-0000-4000-8000-000000000000"
    docs = raw_status(client, [*ids, unknown])
    assert set(docs) == {*ids, unknown}
    assert docs[unknown] == {"task_id": unknown, "status": "failed", "reason": "unknown task id"}
    sdk = client.get_batch_result([unknown])[unknown]
    assert sdk == {"pending": False, "status": "failed", "reason": "unknown task id"}
    assert docs[ids[0]]["status"] in ("waiting-for-launch", "running", "success")
    import globus_sdk

    with pytest.raises(globus_sdk.GlobusAPIError) as err:
        client._compute_web_client.v2.get_task(unknown)
    assert err.value.http_status == 404


def test_results_are_abandoned_after_30_minutes(client: Any, svc: GCService, clock: Clock) -> None:
    fid = client.register_function(shell("echo kept"))
    ids = run_batch(client, svc, fid, [{}, {}])
    wait_done(svc, ids)
    clock.now += 1700
    time.sleep(0.5)
    assert set(svc.task_states()) == set(ids)  # not fetched, still kept
    assert sdk_results(client, ids[:1])[ids[0]]["result"].stdout == "kept\n"
    clock.now += 200  # 1900 s after completion: past the 1800 s retention
    poll(lambda: not svc.task_states(), 5, what="abandonment")
    assert raw_status(client, ids[1:])[ids[1]]["reason"] == "unknown task id"


def test_fetched_ttl_keeps_delivered_results_readable(
    client: Any, svc: GCService, clock: Clock
) -> None:
    svc.knobs.fetched_ttl = 60
    fid = client.register_function(shell("echo again"))
    ids = run_batch(client, svc, fid, [{}])
    wait_done(svc, ids)
    for _ in range(2):
        assert raw_status(client, ids)[ids[0]]["status"] == "success"
    clock.now += 61
    poll(lambda: not svc.task_states(), 5, what="forgotten")


def test_user_endpoint_config_is_checked_and_keyed(api: httpx.Client, svc: GCService) -> None:
    fid = register_raw(api)
    bad = submit_raw(api, svc, fid, user_endpoint_config={"provider": "k8s"})
    assert bad.status_code == 400 and "provider" in bad.json()["reason"]
    bad = submit_raw(
        api,
        svc,
        fid,
        user_endpoint_config={"provider": "slurm", "scheduler_options": "#SBATCH -N1\nrm -rf x"},
    )
    assert bad.status_code == 400 and "scheduler_options" in bad.json()["reason"]
    bad = submit_raw(api, svc, fid, user_endpoint_config={"account": "a;b"})
    assert bad.status_code == 400 and "account" in bad.json()["reason"]
    assert svc.task_states() == {}
    for _ in range(2):
        assert submit_raw(api, svc, fid, user_endpoint_config={"account": "m1"}).status_code == 200
    assert submit_raw(api, svc, fid).status_code == 200
    assert len(svc.user_endpoints) == 2  # one user endpoint per distinct config
    missing = submit_raw(api, svc, "00000000-0000-4000-8000-000000000001")
    assert missing.status_code == 404 and missing.json()["code"] == "FUNCTION_NOT_FOUND"
    other = api.post("/v3/endpoints/00000000-0000-4000-8000-000000000002/submit", json={})
    assert other.status_code == 404 and other.json()["code"] == "ENDPOINT_NOT_FOUND"


def test_a_full_pool_keeps_tasks_waiting_for_launch(tmp_path: Path) -> None:
    service = start_gc_service(work_dir=tmp_path / "ep", workers=1)
    try:
        headers = {"Authorization": f"Bearer {service.issue_token(service.client_id)}"}
        with httpx.Client(base_url=service.url, headers=headers, timeout=20) as http:
            fid = register_raw(http, "sleep 2")
            first = submit_raw(http, service, fid).json()["tasks"][fid][0]
            second = submit_raw(http, service, fid).json()["tasks"][fid][0]
            poll(lambda: service.task_states()[first] == "running", 30, what="first task")
            assert service.task_states()[second] == "waiting-for-launch"
            poll(lambda: service.task_states()[second] == "success", 30, what="second task")
    finally:
        service.stop()


def test_stop_kills_login_node_workers(tmp_path: Path) -> None:
    service = start_gc_service(work_dir=tmp_path / "ep")
    marker = "sleep 987.25"
    try:
        headers = {"Authorization": f"Bearer {service.issue_token(service.client_id)}"}
        with httpx.Client(base_url=service.url, headers=headers, timeout=20) as http:
            fid = register_raw(http, marker)
            submit_raw(http, service, fid)
            poll(lambda: _running(marker), 30, what="worker started")
    finally:
        service.stop()
    poll(lambda: not _running(marker), 10, what="worker killed")


def _running(pattern: str) -> bool:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, check=False)
    return found.returncode == 0


def test_batch_status_answers_a_thousand_ids_in_one_request(
    api: httpx.Client, svc: GCService
) -> None:
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(1000)]
    r = api.post("/v2/batch_status", json={"task_ids": ids})
    assert r.status_code == 200 and len(r.json()["results"]) == 1000
    assert svc.counters["batch_status"] == 1


def test_functions_are_private_unless_public(api: httpx.Client, svc: GCService) -> None:
    private = register_raw(api)
    other = {"Authorization": f"Bearer {svc.issue_token('someone-else')}"}
    r = submit_raw(api, svc, private, headers=other)
    assert r.status_code == 403 and r.json()["code"] == "FUNCTION_ACCESS_FORBIDDEN"
    assert api.get(f"/v2/functions/{private}", headers=other).status_code == 403
    from globus_compute_sdk.sdk.client import FunctionRegistrationData

    data = FunctionRegistrationData(function=shell("true"), public=True).to_dict()
    shared = api.post("/v3/functions", json=data).json()["function_uuid"]
    assert submit_raw(api, svc, shared, headers=other).status_code == 200


def test_size_limits_of_payloads_and_results(
    client: Any, api: httpx.Client, svc: GCService
) -> None:
    fid = register_raw(api)
    body = {"tasks": {fid: ["x" * (10 * 1024 * 1024 + 1)]}}
    r = api.post(f"/v3/endpoints/{svc.endpoint_id}/submit", json=body)
    assert r.status_code == 413 and svc.task_states() == {}
    big = client.register_source_code("def big():\n    return 'x' * 11_000_000\n", "big")
    batch = client.create_batch()
    batch.add(big)
    ids = client.batch_run(svc.endpoint_id, batch)["tasks"][big]
    doc = wait_final(client, ids)[ids[0]]
    assert doc["status"] == "failed" and "MaxResultSizeExceeded" in doc["exception"]


def test_results_wait_for_an_offline_endpoint(client: Any, svc: GCService) -> None:
    fid = client.register_function(shell("sleep 1; echo done"))
    ids = run_batch(client, svc, fid, [{}])
    poll(lambda: svc.task_states()[ids[0]] == "running", 30, what="running")
    svc.knobs.endpoint_offline = True
    poll(lambda: svc.task_states()[ids[0]] == "success", 30, what="task ended")
    assert raw_status(client, ids)[ids[0]]["status"] == "running"  # not delivered yet
    svc.knobs.endpoint_offline = False
    assert raw_status(client, ids)[ids[0]]["status"] == "success"


# ---------------------------------------------------------------------- real Slurm
@pytest.mark.slurm
def test_shell_function_sbatch_returns_the_job_id(client: Any, svc: GCService) -> None:
    slurm = LocalSlurm(default_slurm_conf())
    fid = client.register_function(
        shell("sbatch --parsable -J {name} -t 1 -o /dev/null --wrap 'sleep 30'")
    )
    name = unique_name()
    ids = run_batch(client, svc, fid, [{"name": name}])
    result = sdk_results(client, ids, SLURM_WAIT)[ids[0]]["result"]
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    try:
        rows = slurm.squeue([job_id])
        assert rows and rows[0]["name"] == name
    finally:
        slurm.scancel([job_id])


@pytest.mark.slurm
def test_task_mode_runs_each_task_in_a_slurm_block(client: Any, svc: GCService) -> None:
    fid = client.register_function(shell("echo $SLURM_JOB_ID"))
    config = {"provider": "slurm", "walltime": "00:05:00", "nodes_per_block": 1}
    ids = run_batch(client, svc, fid, [{}], **config)
    results = sdk_results(client, ids, SLURM_WAIT)
    transitions = results[ids[0]]["details"]["task_transitions"]
    assert {"waiting-for-nodes", "running"} <= set(transitions)
    result = results[ids[0]]["result"]
    assert result.stdout.strip() == svc.jobs_created[0]  # the block of the task
    # the block's job id is not visible in task status (as on the real service)
    details = results[ids[0]]["details"]
    assert "slurm" not in json.dumps(details).lower(), details
    assert result.stdout.strip() not in _standalone_numbers(details), details


def _standalone_numbers(value: Any) -> set[str]:
    """Every number standing on its own in *value*: not part of a timestamp, a version,
    a kernel name ("x86_64", "v669") or a UUID, which may hold the job id's digits."""
    if isinstance(value, dict):
        return set().union(*map(_standalone_numbers, value.values()))
    if isinstance(value, (list, tuple)):
        return set().union(*map(_standalone_numbers, value))
    if isinstance(value, (bool, float)):
        return set()
    return set(re.findall(r"(?<![\w.-])\d+(?![\w.-])", str(value)))


@pytest.mark.slurm
def test_a_killed_block_fails_its_task_as_a_lost_worker(client: Any, svc: GCService) -> None:
    from globus_compute_sdk.errors import TaskExecutionFailed

    slurm = LocalSlurm(default_slurm_conf())
    fid = client.register_function(shell("sleep {s}"))
    pending = {"provider": "slurm", "scheduler_options": "#SBATCH --begin=now+600"}
    held = run_batch(client, svc, fid, [{"s": 1}], **pending)
    running = run_batch(client, svc, fid, [{"s": 120}], provider="slurm")
    poll(
        lambda: raw_status(client, held)[held[0]]["status"] == "waiting-for-nodes",
        SLURM_WAIT,
        what="pending block",
    )
    poll(lambda: raw_status(client, running)[running[0]]["status"] == "running", SLURM_WAIT)
    svc.knobs.worker_lost_delay = 2.0  # the endpoint's heartbeat timeout
    jobs = [svc.block_of(task_id) for task_id in (*held, *running)]
    assert None not in jobs
    assert slurm.scancel([j for j in jobs if j]) is None
    live = ("PENDING", "RUNNING", "CONFIGURING")
    ended = lambda: all(r["state"] not in live for r in slurm.squeue([j for j in jobs if j]))  # noqa: E731
    poll(ended, 60, what="blocks ended")
    docs = raw_status(client, running)
    assert docs[running[0]]["status"] == "running"  # not noticed yet
    wait_done(svc, [*held, *running], SLURM_WAIT)
    with pytest.raises(TaskExecutionFailed, match="WorkerLost"):
        client.get_task(held[0])
    doc = raw_status(client, running)[running[0]]
    assert doc["status"] == "failed"
    assert "parsl.executors.high_throughput.errors.WorkerLost" in doc["exception"]


@pytest.mark.slurm
def test_block_options_reach_sbatch(client: Any, svc: GCService) -> None:
    slurm = LocalSlurm(default_slurm_conf())
    partition = slurm.partitions()[0]["name"]
    fid = client.register_function(
        shell("echo $SLURM_JOB_PARTITION $MY_INIT; squeue -h -j $SLURM_JOB_ID -o '%l %k'")
    )
    config = {
        "provider": "slurm",
        "partition": partition,
        "walltime": "00:03:00",
        "scheduler_options": "#SBATCH --comment=gc-loopback",
        "worker_init": "export MY_INIT=ready",
    }
    ids = run_batch(client, svc, fid, [{}], **config)
    result = sdk_results(client, ids, SLURM_WAIT)[ids[0]]["result"]
    assert result.stdout.split() == [partition, "ready", "3:00", "gc-loopback"]


# ---------------------------------------------------------------------- knobs
def test_latency_knob_delays_answers(api: httpx.Client, svc: GCService) -> None:
    svc.knobs.latency = 0.4
    start = time.monotonic()
    assert api.get(f"/v2/endpoints/{svc.endpoint_id}/status").status_code == 200
    assert time.monotonic() - start >= 0.4


def test_5xx_before_a_submit_creates_nothing(api: httpx.Client, svc: GCService) -> None:
    fid = register_raw(api)
    svc.knobs.update(error_rate=1.0, error_paths=["/v3/endpoints"], seed=1)
    r = submit_raw(api, svc, fid)
    assert r.status_code in (500, 502, 503)
    assert svc.task_states() == {}
    assert api.get(f"/v2/functions/{fid}").status_code == 200  # other paths unaffected


def test_5xx_after_a_submit_keeps_the_tasks(api: httpx.Client, svc: GCService) -> None:
    fid = register_raw(api, "echo ran")
    svc.knobs.error_after_submit = 1.0
    r = submit_raw(api, svc, fid)
    assert r.status_code in (500, 502, 503, 504)
    (task_id,) = svc.task_states()
    poll(lambda: svc.task_states()[task_id] == "success", 60, what="lost-answer task")


def test_dropped_submit_answer_keeps_the_tasks(api: httpx.Client, svc: GCService) -> None:
    fid = register_raw(api)
    svc.knobs.drop_after_submit = 1.0
    with pytest.raises(httpx.TransportError):
        submit_raw(api, svc, fid)
    assert len(svc.task_states()) == 1


def test_429_burst_then_normal(api: httpx.Client, svc: GCService) -> None:
    svc.knobs.update(burst_429=2, retry_after=3)
    path = f"/v2/endpoints/{svc.endpoint_id}/status"
    for _ in range(2):
        r = api.get(path)
        assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    assert api.get(path).status_code == 200


def test_sdk_waits_out_a_429_burst(client: Any, svc: GCService) -> None:
    svc.knobs.update(burst_429=1, retry_after=1)
    start = time.monotonic()
    assert client.get_endpoint_status(svc.endpoint_id)["status"] == "online"
    assert time.monotonic() - start >= 1.0  # globus-sdk honoured Retry-After
    assert svc.counters["endpoint_status"] == 2 and svc.counters["throttled"] == 1


def test_sdk_resubmits_after_a_lost_submit_answer(client: Any, svc: GCService) -> None:
    """The hazard clients must avoid: globus-sdk retries a submit POST after a 5xx, and the
    service already created the first submit's tasks."""
    import globus_sdk

    fid = client.register_function(shell("true"))
    v3 = client._compute_web_client.v3
    v3.retry_config.max_retries, v3.retry_config.max_sleep = 1, 0.2
    svc.knobs.error_after_submit = 1.0
    batch = client.create_batch()
    batch.add(fid)
    with pytest.raises(globus_sdk.GlobusAPIError) as err:
        client.batch_run(svc.endpoint_id, batch)
    assert err.value.http_status in (500, 502, 503, 504)
    assert svc.counters["submit"] == 2 and len(svc.task_states()) == 2


def test_rate_limit_per_identity(api: httpx.Client, svc: GCService) -> None:
    svc.knobs.update(rate_limit=3, rate_window=30)
    path = f"/v2/endpoints/{svc.endpoint_id}/status"
    assert [api.get(path).status_code for _ in range(3)] == [200, 200, 200]
    over = api.get(path)
    assert over.status_code == 429 and 1 <= int(over.headers["Retry-After"]) <= 30
    other = {"Authorization": f"Bearer {svc.issue_token('another-client')}"}
    assert api.get(path, headers=other).status_code == 200  # its own budget
    svc.knobs.rate_limit = 0  # disabled
    assert api.get(path).status_code == 200
    assert svc.counters["throttled"] == 1


def test_default_rate_limit_is_20_per_10_seconds(api: httpx.Client, svc: GCService) -> None:
    path = f"/v2/endpoints/{svc.endpoint_id}/status"
    codes = [api.get(path).status_code for _ in range(21)]
    assert codes[:20] == [200] * 20 and codes[20] == 429


def test_endpoint_offline_holds_tasks_until_back(
    client: Any, svc: GCService, api: httpx.Client
) -> None:
    svc.knobs.endpoint_offline = True
    assert client.get_endpoint_status(svc.endpoint_id)["status"] == "offline"
    fid = client.register_function(shell("echo back"))
    ids = run_batch(client, svc, fid, [{}])
    time.sleep(0.6)
    assert raw_status(client, ids)[ids[0]]["status"] == "waiting-for-ep"
    r = api.post("/_admin/knobs", json={"endpoint_offline": False})
    assert r.status_code == 200 and r.json()["knobs"]["endpoint_offline"] is False
    assert client.get_endpoint_status(svc.endpoint_id)["status"] == "online"
    assert sdk_results(client, ids)[ids[0]]["result"].stdout == "back\n"


def test_results_delayed_knob(client: Any, svc: GCService) -> None:
    svc.knobs.task_delay = 10.0
    fid = client.register_function(shell("true"))
    ids = run_batch(client, svc, fid, [{}])
    poll(lambda: svc.task_states()[ids[0]] == "success", 30, what="task done")
    doc = raw_status(client, ids)[ids[0]]
    assert doc["status"] == "running" and "result" not in doc
    wait_final(client, ids, timeout=20)


def test_hang_knob_holds_requests_until_cleared(api: httpx.Client, svc: GCService) -> None:
    svc.knobs.hang = True
    answers: list[int] = []
    path = f"/v2/endpoints/{svc.endpoint_id}/status"
    worker = threading.Thread(target=lambda: answers.append(api.get(path).status_code))
    worker.start()
    time.sleep(0.5)
    assert answers == []
    svc.knobs.hang = False
    worker.join(10)
    assert answers == [200]


def test_admin_routes_validate_knobs(api: httpx.Client, svc: GCService) -> None:
    assert api.post("/_admin/knobs", json={"rate_limit": -1}).status_code == 400
    assert api.post("/_admin/knobs", json={"nope": 1}).status_code == 400
    state = api.get("/_admin/state").json()
    assert state["endpoint_id"] == svc.endpoint_id and state["knobs"]["result_ttl"] == 1800
    r = api.post("/_admin/client", json={"client_id": "c2", "client_secret": "s2"})
    assert r.status_code == 200
    form = {"grant_type": "client_credentials", "scope": svc_scope()}
    assert api.post("/v2/oauth2/token", data=form, auth=("c2", "s2")).status_code == 200


def test_knob_values_are_checked() -> None:
    knobs = GCKnobs()
    with pytest.raises(ValueError, match="burst_429"):
        knobs.burst_429 = -2
    with pytest.raises(ValueError, match="rate_window"):
        knobs.update(rate_window=0)
    knobs.update(endpoint_offline="yes", latency=0.1)
    assert knobs.endpoint_offline is True and knobs.latency == 0.1


def test_cli_gateway_family_gc_serves(tmp_path: Path) -> None:
    import os

    import harvester_edge

    root = str(Path(harvester_edge.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root}
    argv = [sys.executable, "-m", "harvester_edge.cli", "gateway", "--family", "gc"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=tmp_path, env=env) as proc:
        try:
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            r = httpx.get(f"{info['url']}/v2/version", params={"service": "all"}, timeout=10)
            assert r.status_code == 200 and r.json()["min_sdk_version"]
            form = {"grant_type": "client_credentials", "scope": svc_scope()}
            creds = (info["GLOBUS_COMPUTE_CLIENT_ID"], info["GLOBUS_COMPUTE_CLIENT_SECRET"])
            token = httpx.post(f"{info['auth_url']}v2/oauth2/token", data=form, auth=creds)
            assert token.status_code == 200
        finally:
            proc.terminate()
        assert proc.wait(10) == 0
