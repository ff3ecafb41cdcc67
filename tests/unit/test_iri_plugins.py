"""The IRI binding: its options, the example queues, and the generic plugins driving
``IRIClient`` end to end over a small stateful IRI double in respx (idempotent resend, the
no-store fallback to the tag lookup, one status request per 1000 workers, cancel)."""

from __future__ import annotations

import hashlib
import itertools
import json
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from harvester_edge.edge import allocations, health, limits, watch
from harvester_edge.edge.allocations import AllocationBook
from harvester_edge.errors import EdgeConfigError
from harvester_edge.facilities import registry
from harvester_edge.facilities.iri import IRIClient
from harvester_edge.harvester import WorkSpec
from harvester_edge.plugins import monitor, submitter, throttler
from harvester_edge.plugins.iri import IRIMonitor, IRIOptions, IRISubmitter, IRISweeper
from harvester_edge.queue_config import build_plugin, plugin_section

API = "https://iri.test/api/v2"
RID = "0b7c5e2a-1111-4222-8333-944455556666"
QUEUE = "IRI_Q"
EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "panda_queueconfig.example.json"


@pytest.fixture(autouse=True)
def clean_state(monkeypatch: pytest.MonkeyPatch):
    def reset() -> None:
        registry.forget_clients()
        health.GATE.forget()
        limits.LIMITS.forget()
        watch.WATCH.forget()

    reset()
    book = AllocationBook()
    for module in (allocations, submitter, monitor, throttler):
        monkeypatch.setattr(module, "BOOK", book, raising=False)
    yield
    reset()


@pytest.fixture()
def token(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("iri-test-token-0123456789")
    path.chmod(0o600)
    return path


def options(tmp_path: Path, token: Path, **overrides: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "queueName": QUEUE, "siteName": QUEUE, "profile": "generic", "account": "m0000",
        "apiUrl": API, "resource": "perlmutter", "token": f"file:{token}",
        "remoteWorkDir": str(tmp_path / "remote" / "${workerID}"),
        "accessPoint": str(tmp_path / "ap" / "${workerID}"),
        "retryBackoff": 0.01, "connectTimeout": 1, "readTimeout": 1, "callDeadline": 10,
        "killConfirmSeconds": 0.2,
    }  # fmt: skip
    conf.update(overrides)
    return conf


def workspec(worker_id: int, tmp_path: Path) -> WorkSpec:
    ws = WorkSpec()
    ws.workerID = worker_id
    ws.computingSite = QUEUE
    ws.mapType = WorkSpec.MT_NoJob
    ws.nCore = 1
    ws.maxWalltime = 3600
    ws.accessPoint = str(tmp_path / "ap" / str(worker_id))
    return ws


class FakeIRI:
    """The IRI routes the plugins use, with the reference's idempotency semantics."""

    def __init__(self, mock: respx.MockRouter, *, store: bool = True) -> None:
        self.store = store
        self.jobs: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, tuple[str, str]] = {}  # key -> (body hash, job id)
        #: per submit request that reaches the store, in order: None answers, "timeout" loses
        #: the answer, "502" answers a proxy's 502 (the job is made or found either way)
        self.lose: list[str | None] = []
        self.ids = itertools.count(9000)
        self.calls: Counter[str] = Counter()
        mock.get(f"{API}/status/resources").mock(side_effect=self.resources)
        mock.get(f"{API}/status/resources/{RID}").mock(
            return_value=httpx.Response(200, json={"id": RID, "current_status": "up"})
        )
        mock.get(f"{API}/status/incidents").mock(
            return_value=httpx.Response(404, json={"title": "Not Found", "status": 404})
        )
        mock.post(f"{API}/compute/job/{RID}").mock(side_effect=self.submit)
        mock.post(f"{API}/compute/status/{RID}").mock(side_effect=self.status)
        mock.delete(url__startswith=f"{API}/compute/cancel/{RID}/").mock(side_effect=self.cancel)

    def resources(self, request: httpx.Request) -> httpx.Response:
        self.calls["resources"] += 1
        listed = [{"id": RID, "name": "perlmutter", "supported_endpoints": ["compute"]}]
        return httpx.Response(200, json=listed)

    def submit(self, request: httpx.Request) -> httpx.Response:
        self.calls["submit"] += 1
        key = request.headers.get("Idempotency-Key")
        spec = json.loads(request.content)
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        if key and not self.store:
            return self.problem(501, "no idempotency store is configured")
        if key and key in self.keys:
            if self.keys[key][0] != digest:
                return self.problem(422, "Idempotency-Key reused with a different body")
            reply = {"Idempotency-Key-Reply": "hit"}
            job_id = self.keys[key][1]
        else:
            reply = {"Idempotency-Key-Reply": "miss"} if key else {}
            job_id = str(next(self.ids))
            self.jobs[job_id] = {"id": job_id, "state": "queued", "spec": spec}
            if key:
                self.keys[key] = (digest, job_id)
        fault = self.lose.pop(0) if self.lose else None
        if fault == "timeout":
            raise httpx.ReadTimeout("answer lost")
        if fault == "502":
            return self.problem(502, "Bad Gateway")
        return httpx.Response(200, json=self.view(job_id, state="new"), headers=reply)

    @staticmethod
    def problem(status: int, detail: str) -> httpx.Response:
        return httpx.Response(status, json={"title": "Error", "status": status, "detail": detail})

    def view(self, job_id: str, *, state: str | None = None, spec: bool = False) -> dict:
        job = self.jobs[job_id]
        out: dict[str, Any] = {"id": job_id, "status": {"state": state or job["state"]}}
        if job["state"] in ("completed", "failed", "canceled"):
            out["status"]["exit_code"] = job.get("exit_code", 0)
        if spec:
            out["job_spec"] = job["spec"]
        return out

    def status(self, request: httpx.Request) -> httpx.Response:
        self.calls["status"] += 1
        params = request.url.params
        filters = json.loads(request.content or b"{}") or {}
        historical = params.get("historical") == "true"
        jobs = [
            j for j in self.jobs.values()
            if (historical or j["state"] not in ("completed", "failed", "canceled"))
            and ("id" not in filters or j["id"] in filters["id"])
            and ("name" not in filters or j["spec"].get("name") in filters["name"])
        ]  # fmt: skip
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 100))
        page = jobs[offset : offset + limit]
        spec = params.get("include_spec") == "true"
        return httpx.Response(200, json=[self.view(j["id"], spec=spec) for j in page])

    def cancel(self, request: httpx.Request) -> httpx.Response:
        self.calls["cancel"] += 1
        job_id = request.url.path.rsplit("/", 1)[1]
        if job_id not in self.jobs:
            return httpx.Response(404, json={"title": "Not Found", "status": 404})
        if self.jobs[job_id]["state"] in ("queued", "active"):
            self.jobs[job_id]["state"] = "canceled"
        return httpx.Response(204)

    def named(self, tag: str) -> list[str]:
        return [j["id"] for j in self.jobs.values() if j["spec"].get("name") == tag]


# ------------------------------------------------------------------------------- options
def test_options_defaults_and_checks(tmp_path, token):
    opts = IRISubmitter(**options(tmp_path, token)).edge_options
    assert isinstance(opts, IRIOptions)
    assert opts.chunkSize == 1000 and opts.statusIdFilterKey == "id" and opts.apiVersion == ""

    def refused(key: str, **overrides: Any) -> None:
        with pytest.raises(EdgeConfigError, match=key):
            IRISubmitter(**{**options(tmp_path, token), **overrides})

    refused("apiUrl", apiUrl="https://iri.test/api")
    refused("apiUrl", apiUrl="ftp://iri.test/api/v2")
    refused("apiVersion", apiVersion="v1")
    refused("resource", resource="")
    refused("token", token="plain-token-in-config")
    refused("cancelConcurrency", cancelConcurrency=0)
    with pytest.raises(EdgeConfigError, match="token") as info:
        IRISubmitter(**{k: v for k, v in options(tmp_path, token).items() if k != "token"})
    assert "plain-token-in-config" not in str(info.value)


def test_the_binding_shares_one_client_per_settings_and_declares_v1_v2(tmp_path, token):
    sub = IRISubmitter(**options(tmp_path, token))
    mon = IRIMonitor(**options(tmp_path, token))
    client = sub.edge_client()
    assert isinstance(client, IRIClient) and client is mon.edge_client()
    assert client.capabilities.idempotent_submit and client.capabilities.max_ids_per_query == 1000
    v1 = IRISweeper(**options(tmp_path, token, apiUrl="https://olcf.test/api/v1")).edge_client()
    assert v1 is not client and not v1.capabilities.idempotent_submit


def test_example_iri_queues_load_like_harvester_without_network(monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a plugin constructor opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    config = json.loads(EXAMPLE.read_text())
    versions = {}
    for name in ("NERSC_Perlmutter_IRI", "OLCF_Frontier_IRI"):
        queue = config[name]
        for section in ("submitter", "monitor", "sweeper"):
            kwargs = {**plugin_section(name, queue, section), "dbInterface": object()}
            plugin = build_plugin(kwargs)
            assert plugin.queueName == name and plugin.edge_options.token is not None
        versions[name] = plugin.edge_client().settings.api_version
        assert queue["throttler"]["name"] == "EdgeThrottler"
        assert queue["messenger"]["accessPoint"] == queue["common"]["accessPoint"]
        assert queue["submitter"]["remoteWorkDir"].startswith("/")
        assert queue["submitter"]["walltimeSeconds"] > 0
    assert versions == {"NERSC_Perlmutter_IRI": "v2", "OLCF_Frontier_IRI": "v1"}


# -------------------------------------------------------------------- plugins end to end
@respx.mock
def test_a_lost_submit_answer_is_found_by_its_tag_and_yields_one_job(tmp_path, token):
    """A keyed submit whose answer was lost (read timeout) is not sent again in the call (a
    silent service holds a call for one timeout): the monitor finds the one job by its tag."""
    fake = FakeIRI(respx.mock)
    fake.lose = ["timeout"]
    sub = IRISubmitter(**options(tmp_path, token))
    ws = workspec(1, tmp_path)
    ((ok, message),) = sub.submit_workers([ws])
    assert ok is True and "looked up by its tag" in message and not ws.batchID, message
    mon = IRIMonitor(**options(tmp_path, token, readPilotSummary=False))
    ok, ((status, diag),) = mon.check_workers([ws])
    assert status == WorkSpec.ST_submitted and ws.batchID == next(iter(fake.jobs)), diag
    assert len(fake.jobs) == 1 and fake.calls["submit"] == 1


@respx.mock
def test_a_5xx_after_create_is_resent_by_the_submitter_and_gets_the_original_job(tmp_path, token):
    """A proxy's 502 after the job was made: the submitter's resend under the same key gets
    the original job (``Idempotency-Key-Reply: hit``), one request per resend."""
    fake = FakeIRI(respx.mock)
    fake.lose = ["502"]
    sub = IRISubmitter(**options(tmp_path, token))
    ws = workspec(3, tmp_path)
    ((ok, message),) = sub.submit_workers([ws])
    assert ok is True and message == f"submitted as batch job {ws.batchID}", message
    assert list(fake.jobs) == [ws.batchID] and fake.calls["submit"] == 2


@respx.mock
def test_a_5xx_storm_costs_retry_attempts_submits_then_the_tag_lookup(tmp_path, token):
    """Every answer a 502: ``retryAttempts`` requests in all (retries are never nested:
    attempts x attempts), then the job is looked up by its tag and adopted."""
    fake = FakeIRI(respx.mock)
    fake.lose = ["502"] * 10
    sub = IRISubmitter(**options(tmp_path, token, retryAttempts=3))
    ws = workspec(4, tmp_path)
    ((ok, message),) = sub.submit_workers([ws])
    assert ok is True and "adopted by tag" in message, message
    assert list(fake.jobs) == [ws.batchID] and fake.calls["submit"] == 3


@respx.mock
def test_without_a_store_the_tag_lookup_still_gives_exactly_one_job(tmp_path, token):
    fake = FakeIRI(respx.mock, store=False)
    fake.lose = ["timeout"]  # 501 to the keyed submit; the plain one creates, answer lost
    sub = IRISubmitter(**options(tmp_path, token, retryAttempts=1))
    ws = workspec(2, tmp_path)
    ((ok, message),) = sub.submit_workers([ws])
    assert ok is True, message
    assert not sub.edge_client().capabilities.idempotent_submit
    assert len(fake.jobs) == 1 and fake.calls["submit"] == 2  # keyed (501), plain (lost)
    # a timeout stops the call's other requests: the monitor looks the tag up and adopts
    assert "looked up by its tag" in message and not ws.batchID
    mon = IRIMonitor(**options(tmp_path, token, readPilotSummary=False))
    for _ in range(2):
        ok, ((status, diag),) = mon.check_workers([ws])
    assert ws.batchID == next(iter(fake.jobs)) and status == WorkSpec.ST_submitted, diag
    assert fake.calls["submit"] == 2


@respx.mock
def test_monitoring_1000_workers_is_one_status_request_per_cycle(tmp_path, token):
    fake = FakeIRI(respx.mock)
    sub = IRISubmitter(**options(tmp_path, token, submitConcurrency=32))
    workers = [workspec(i, tmp_path) for i in range(1, 1001)]
    answers = sub.submit_workers(workers)
    assert all(ok for ok, _ in answers)
    for n, job in enumerate(fake.jobs.values()):
        job["state"] = "completed" if n % 2 else "active"
    mon = IRIMonitor(**options(tmp_path, token, readPilotSummary=False))
    before = fake.calls["status"]
    ok, statuses = mon.check_workers(workers)
    assert ok and fake.calls["status"] - before == 1
    assert Counter(s for s, _ in statuses) == {
        WorkSpec.ST_running: 500, WorkSpec.ST_finished: 500
    }  # fmt: skip
    assert fake.calls["resources"] == 1


@respx.mock
def test_kill_cancels_each_job_and_the_status_confirms(tmp_path, token):
    fake = FakeIRI(respx.mock)
    sub = IRISubmitter(**options(tmp_path, token))
    workers = [workspec(i, tmp_path) for i in (5, 6)]
    sub.submit_workers(workers)
    fake.jobs[str(workers[1].batchID)]["state"] = "completed"
    swp = IRISweeper(**options(tmp_path, token))
    answers = swp.kill_workers(workers)
    assert [ok for ok, _ in answers] == [True, True], answers
    assert fake.calls["cancel"] == 2
    assert fake.jobs[str(workers[0].batchID)]["state"] == "canceled"
