"""A QOS submit limit is "try later", never a failure: synchronous refusals answer None,
asynchronous ones (SFAPI tasks) end the worker as missed with the reason, no error code."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from harvester_edge.edge.health import GATE
from harvester_edge.edge.states import is_submit_limit
from harvester_edge.facilities.registry import forget_clients
from harvester_edge.harvester import WorkSpec
from harvester_edge.localsite.sfapi_gateway import make_client_key
from harvester_edge.plugins.sfapi import SFAPIMonitor, SFAPISubmitter

API = "https://sfapi.test/api/v1.2"
TOKEN = "https://oidc.test/token"
QOS_ERROR = (
    "sbatch: error: QOSMaxSubmitJobPerUserLimit\nsbatch: error: Batch job submission failed: "
    "Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)"
)


@pytest.mark.parametrize(
    "text,limited",
    [
        (QOS_ERROR, True),
        ("sbatch: error: AssocMaxSubmitJobLimit", True),
        ("sbatch: error: Memory specification can not be satisfied", False),
        ("", False),
    ],
)
def test_submit_limit_recognition(text, limited):
    assert is_submit_limit(text) is limited


@pytest.fixture()
def conf(tmp_path):
    key = tmp_path / "key.pem"
    make_client_key(key)
    forget_clients()
    GATE.forget()
    yield {
        "queueName": "Q", "apiUrl": API, "tokenUrl": TOKEN, "keyFile": str(key),
        "profile": "generic", "remoteWorkDir": str(tmp_path / "w"), "retryBackoff": 0.01,
    }  # fmt: skip
    forget_clients()
    GATE.forget()


def worker(wid: int) -> WorkSpec:
    ws = WorkSpec()
    ws.workerID, ws.computingSite, ws.nCore = wid, "Q", 1
    return ws


def healthy_site() -> None:
    """Token endpoint and an active machine, as every SFAPI call first needs."""
    respx.post(TOKEN).mock(
        return_value=httpx.Response(200, json={"access_token": "t", "expires_in": 600})
    )
    respx.get(f"{API}/status/perlmutter").mock(
        return_value=httpx.Response(200, json={"name": "perlmutter", "status": "active"})
    )
    respx.get(f"{API}/status/outages/planned/perlmutter").mock(
        return_value=httpx.Response(200, json=[])
    )


@respx.mock
def test_qos_limit_in_a_submit_task_makes_the_worker_missed_not_failed(conf):
    healthy_site()
    respx.post(f"{API}/compute/jobs/perlmutter").mock(
        return_value=httpx.Response(200, json={"task_id": "77", "status": "OK", "error": None})
    )
    result = json.dumps({"status": "error", "jobid": None, "error": QOS_ERROR})
    task = {"id": "77", "status": "completed", "result": result}
    respx.get(f"{API}/tasks/").mock(return_value=httpx.Response(200, json={"tasks": [task]}))
    respx.get(f"{API}/tasks/77").mock(return_value=httpx.Response(200, json=task))
    ws = worker(1)
    assert SFAPISubmitter(**conf).submit_workers([ws])[0][0] is True
    ok, answers = SFAPIMonitor(**conf).check_workers([ws])
    assert ok and answers[0][0] == "missed" and "QOSMaxSubmitJobPerUserLimit" in answers[0][1]
    assert ws.errorCode is None


@respx.mock
def test_qos_limit_refusing_the_post_is_none(conf):
    healthy_site()
    respx.post(f"{API}/compute/jobs/perlmutter").mock(
        return_value=httpx.Response(
            200, json={"task_id": None, "status": "ERROR", "error": QOS_ERROR}
        )
    )
    ok, message = SFAPISubmitter(**conf).submit_workers([worker(2)])[0]
    assert ok is None and "submit limit" in message
