"""SFAPIClient over respx: the wire rules that the gateway tests cannot isolate."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import respx

from harvester_edge.edge.retry import RetryPolicy, Timeouts
from harvester_edge.errors import EdgeAPIError, EdgeAuthError, EdgeNetworkError
from harvester_edge.facilities.base import SubmitRequest
from harvester_edge.facilities.sfapi import SFAPIClient, SFAPISettings, parse_submit_task
from harvester_edge.localsite.sfapi_gateway import make_client_key

API = "https://sfapi.test/api/v1.2"
TOKEN = "https://oidc.test/c2id/token"


@pytest.fixture()
def client(tmp_path):
    key = tmp_path / "key.pem"
    make_client_key(key)
    settings = SFAPISettings(
        machine="perlmutter",
        api_url=API,
        token_url=TOKEN,
        key_file=str(key),
        timeouts=Timeouts(connect=1, read=1),
        policy=RetryPolicy(attempts=3, backoff=0.01, deadline=5),
    )
    c = SFAPIClient(settings)
    yield c
    c.close()


def token_route(mock):
    return mock.post(TOKEN).mock(
        return_value=httpx.Response(
            200,
            json={"access_token": "tok-secret-value", "token_type": "Bearer", "expires_in": 600},
        )
    )


@respx.mock
def test_403_gets_one_token_refresh_then_succeeds(client):
    tokens = token_route(respx)
    jobs = respx.get(f"{API}/compute/jobs/perlmutter").mock(
        side_effect=[
            httpx.Response(403, json={"detail": "expired"}),
            httpx.Response(200, json={"status": "OK", "output": []}),
        ]
    )
    assert client.query(["1"], final=False) == {}
    assert tokens.call_count == 2 and jobs.call_count == 2


@respx.mock
def test_second_403_fails_without_leaking_the_token(client):
    token_route(respx)
    respx.get(f"{API}/compute/jobs/perlmutter").mock(
        return_value=httpx.Response(403, json={"detail": "no"})
    )
    with pytest.raises(EdgeAuthError) as info:
        client.query(["1"], final=False)
    assert "403" in str(info.value) and "tok-secret-value" not in str(info.value)


@respx.mock
def test_bulk_query_is_one_request_with_all_ids(client):
    token_route(respx)
    route = respx.get(f"{API}/compute/jobs/perlmutter").mock(
        return_value=httpx.Response(200, json={"status": "OK", "output": [
            {"jobid": "1", "state": "RUNNING", "st": "R", "name": "a"},
            {"jobid": "2", "state": "PENDING", "st": "PD", "name": "b", "reason": "Priority"},
        ]})
    )  # fmt: skip
    records = client.query(["1", "2", "3"], final=False)
    assert route.call_count == 1
    params = route.calls[0].request.url.params
    assert (
        params["kwargs"] == "jobid=1,2,3"
        and params["cached"] == "false"
        and params["sacct"] == "false"
    )
    assert (
        records["1"].state.code == "R" and records["2"].reason == "Priority" and "3" not in records
    )


@respx.mock
def test_get_honours_retry_after(client):
    token_route(respx)
    route = respx.get(f"{API}/tasks/7").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "1"}),
            httpx.Response(404, json={"detail": "task not found"}),
        ]
    )
    start = time.monotonic()
    assert client.resolve(["7"]) == {}
    assert route.call_count == 2 and time.monotonic() - start >= 0.9


@respx.mock
def test_submit_read_timeout_is_not_retried(client):
    token_route(respx)
    route = respx.post(f"{API}/compute/jobs/perlmutter").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(EdgeNetworkError) as info:
        client.submit(SubmitRequest(script="#!/bin/bash\n", tag="t", work_dir="/w"))
    assert info.value.maybe_sent and route.call_count == 1


@respx.mock
def test_submit_error_answer_is_a_refusal(client):
    token_route(respx)
    respx.post(f"{API}/compute/jobs/perlmutter").mock(
        return_value=httpx.Response(
            200, json={"status": "ERROR", "error": "bad machine", "task_id": None}
        )
    )
    with pytest.raises(EdgeAPIError) as info:
        client.submit(SubmitRequest(script="#!/bin/bash\n", tag="t", work_dir="/w"))
    assert not info.value.transient and "bad machine" in str(info.value)


@respx.mock
def test_malformed_answers_are_transient_errors_not_crashes(client):
    token_route(respx)
    route = respx.get(f"{API}/compute/jobs/perlmutter")
    route.mock(return_value=httpx.Response(200, json={"status": "OK", "output": [{"state": "R"}]}))
    with pytest.raises(EdgeAPIError) as info:  # no row readable: the shape changed
        client.query(["1"], final=False)
    assert info.value.transient and "jobid" in str(info.value)
    route.mock(return_value=httpx.Response(200, json={"status": "OK", "output": {"a": 1}}))
    with pytest.raises(EdgeAPIError) as info:
        client.query(["1"], final=False)
    assert info.value.transient and "not a list" in str(info.value)


def test_task_parsing():
    ok = {
        "id": "1",
        "status": "completed",
        "result": json.dumps({"status": "ok", "jobid": "42", "error": None}),
    }
    bad = {
        "id": "2",
        "status": "completed",
        "result": json.dumps(
            {
                "status": "error",
                "jobid": None,
                "error": "sbatch: error: Memory specification can not be satisfied",
            }
        ),
    }
    assert parse_submit_task(ok).job_id == "42"
    assert "Memory" in parse_submit_task(bad).error
    assert parse_submit_task({"id": "3", "status": "new", "result": None}).state == "pending"
    assert parse_submit_task({"id": "4", "status": "failed", "result": "boom"}).state == "error"


def test_constructing_a_client_does_no_io(tmp_path):
    settings = SFAPISettings(
        "perlmutter", API, TOKEN, str(tmp_path / "missing.pem"), Timeouts(), RetryPolicy()
    )
    SFAPIClient(settings)  # no key read, no request: nothing raises
