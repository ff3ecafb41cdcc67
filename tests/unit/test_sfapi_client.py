"""SFAPIClient over respx: the wire rules that the gateway tests cannot isolate."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from harvester_edge.edge.jobs import JobState
from harvester_edge.edge.retry import RetryPolicy, Timeouts
from harvester_edge.edge.spec import JobSpec
from harvester_edge.errors import EdgeAPIError, EdgeAuthError, EdgeNetworkError
from harvester_edge.facilities.sfapi import SFAPIClient, SFAPISettings, parse_submit_task
from harvester_edge.localsite.sfapi_gateway import make_client_key

API = "https://sfapi.test/api/v1.2"
TOKEN = "https://oidc.test/c2id/token"
JOBS = f"{API}/compute/jobs/perlmutter"


def spec(script: str = "#!/bin/bash\n", tag: str = "t") -> JobSpec:
    return JobSpec(tag=tag, script=script, work_dir="/w", nodes=1, walltime_s=600)


def running(job_id: str = "1") -> httpx.Response:
    return httpx.Response(
        200, json={"status": "OK", "output": [{"jobid": job_id, "state": "RUNNING", "name": "t"}]}
    )


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
    jobs = respx.get(JOBS).mock(
        side_effect=[httpx.Response(403, json={"detail": "expired"}), running()]
    )
    assert client.poll(["1"])["1"].state is JobState.ACTIVE
    assert tokens.call_count == 2 and jobs.call_count == 2


@respx.mock
def test_second_403_fails_without_leaking_the_token(client):
    token_route(respx)
    respx.get(f"{API}/compute/jobs/perlmutter").mock(
        return_value=httpx.Response(403, json={"detail": "no"})
    )
    with pytest.raises(EdgeAuthError) as info:
        client.poll(["1"])
    assert "403" in str(info.value) and "tok-secret-value" not in str(info.value)


@respx.mock
def test_poll_is_one_squeue_request_then_one_sacct_request_for_the_rest(client):
    token_route(respx)
    queue = [
        {"jobid": "1", "state": "RUNNING", "st": "R", "name": "a"},
        {"jobid": "2", "state": "PENDING", "st": "PD", "name": "b", "reason": "Priority"},
        {"jobid": "4", "state": "COMPLETED", "st": "CD", "name": "d"},
    ]
    accounting = [
        {"jobid": "3", "state": "CANCELLED by 42", "exitcode": "0:15", "jobname": "c"},
        {"jobid": "3.batch", "state": "CANCELLED", "exitcode": "0:15", "jobname": "batch"},
        {"jobid": "4", "state": "FAILED", "exitcode": "3:0", "jobname": "d"},
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        rows = accounting if request.url.params["sacct"] == "true" else queue
        return httpx.Response(200, json={"status": "OK", "output": rows})

    route = respx.get(JOBS).mock(side_effect=answer)
    records = client.poll(["1", "2", "3", "4", "5"])
    assert route.call_count == 2
    live, acct = (call.request.url.params for call in route.calls)
    assert (live["kwargs"], live["cached"], live["sacct"]) == ("jobid=1,2,3,4,5", "false", "false")
    # the gone ones (3, 5) and the one final in the queue (4), nothing else
    assert (acct["kwargs"], acct["cached"], acct["sacct"]) == ("jobid=3,4,5", "false", "true")
    assert set(records) == {"1", "2", "3", "4"}  # 5: seen nowhere
    assert records["1"].state is JobState.ACTIVE and not records["1"].confirmed_final
    assert records["2"].state is JobState.QUEUED and records["2"].reason == "Priority"
    three = records["3"]
    assert (three.state, three.native, three.name) == (JobState.CANCELED, "CANCELLED by 42", "c")
    assert three.confirmed_final and (three.exit_code, three.signal) == (0, 15)
    four = records["4"]  # accounting wins over the queue's word
    assert four.state is JobState.FAILED and four.exit_code == 3 and four.confirmed_final


@respx.mock
def test_poll_of_live_jobs_is_one_request_and_of_nothing_none(client):
    token_route(respx)
    route = respx.get(JOBS).mock(return_value=running("7"))
    assert client.poll([]) == {} and route.call_count == 0
    assert list(client.poll(["7"])) == ["7"] and route.call_count == 1


@respx.mock
def test_find_groups_live_and_accounting_jobs_by_tag(client):
    token_route(respx)
    queue = [{"jobid": "10", "state": "RUNNING", "name": "tag-a"}]
    accounting = [
        {"jobid": "10", "state": "RUNNING", "jobname": "tag-a"},
        {"jobid": "9", "state": "COMPLETED", "exitcode": "0:0", "jobname": "tag-a"},
        {"jobid": "11", "state": "FAILED", "exitcode": "1:0", "jobname": "tag-b"},
        {"jobid": "12", "state": "FAILED", "exitcode": "1:0", "jobname": "other"},
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        rows = accounting if request.url.params["sacct"] == "true" else queue
        return httpx.Response(200, json={"status": "OK", "output": rows})

    route = respx.get(JOBS).mock(side_effect=answer)
    found = client.find(["tag-a", "tag-b", "tag-c"])
    assert route.call_count == 2
    assert {c.request.url.params["kwargs"] for c in route.calls} == {"name=tag-a,tag-b,tag-c"}
    assert sorted(found) == ["tag-a", "tag-b"]
    by_id = {r.job_id: r for r in found["tag-a"]}
    assert sorted(by_id) == ["10", "9"]
    assert not by_id["10"].confirmed_final and by_id["10"].state is JobState.ACTIVE  # live wins
    assert by_id["9"].confirmed_final and by_id["9"].state is JobState.COMPLETED
    assert found["tag-b"][0].exit_code == 1
    assert client.find([]) == {} and route.call_count == 2


def test_capabilities():
    caps = SFAPIClient.capabilities
    assert caps.async_submit and caps.files and caps.max_ids_per_query == 500
    assert not caps.idempotent_submit and not caps.deferred_queries


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
        client.submit(spec())
    assert info.value.maybe_sent and route.call_count == 1


@respx.mock
def test_submit_posts_the_specs_script_and_answers_the_task(client):
    token_route(respx)
    route = respx.post(JOBS).mock(
        return_value=httpx.Response(200, json={"task_id": "31", "status": "OK", "error": None})
    )
    script = "#!/bin/bash\n#SBATCH -J tag-1\necho 'a & b' \u00e9\n"
    receipt = client.submit(spec(script, tag="tag-1"))
    assert (receipt.handle, receipt.job_id) == ("31", None) and route.call_count == 1
    form = parse_qs(route.calls[0].request.content.decode())
    assert form == {"job": [script], "isPath": ["false"]}


@respx.mock
def test_submit_error_answer_is_a_refusal(client):
    token_route(respx)
    respx.post(f"{API}/compute/jobs/perlmutter").mock(
        return_value=httpx.Response(
            200, json={"status": "ERROR", "error": "bad machine", "task_id": None}
        )
    )
    with pytest.raises(EdgeAPIError) as info:
        client.submit(spec())
    assert not info.value.transient and "bad machine" in str(info.value)


@respx.mock
def test_malformed_answers_are_transient_errors_not_crashes(client):
    token_route(respx)
    route = respx.get(JOBS)
    route.mock(return_value=httpx.Response(200, json={"status": "OK", "output": [{"state": "R"}]}))
    with pytest.raises(EdgeAPIError) as info:  # no row readable: the shape changed
        client.poll(["1"])
    assert info.value.transient and "jobid" in str(info.value)
    route.mock(return_value=httpx.Response(200, json={"status": "OK", "output": {"a": 1}}))
    with pytest.raises(EdgeAPIError) as info:
        client.poll(["1"])
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
