"""S3MClient over ``responses``: paths and bodies of every API version, both job record
shapes, slurmrestd's error answers (JSON in ``detail`` too), the project token's expiry,
refusal and rotation, request counts, and that the token never shows anywhere."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from harvester_edge.config import Secret
from harvester_edge.edge.jobs import JobState
from harvester_edge.edge.retry import RetryPolicy, Timeouts
from harvester_edge.edge.spec import JobSpec
from harvester_edge.edge.states import is_submit_limit
from harvester_edge.errors import EdgeAPIError, EdgeAuthError, EdgeConfigError, EdgeNetworkError
from harvester_edge.facilities.base import CancelOutcome
from harvester_edge.facilities.s3m import (
    INTROSPECT_PATH,
    S3MClient,
    S3MSettings,
    slurm_errors,
)
from harvester_edge.facilities.transport import StatusError

API = "https://s3m.test"
PREFIX = f"{API}/slurm/open/v0.0.43/defiant"
INTROSPECT = f"{API}/{INTROSPECT_PATH}"
STATUS = f"{API}/olcf/v1alpha/status"


def make_token(jti: str = "a1b2c3d4e5f6") -> str:
    """A token shaped like an OLCF project access token: a JWT with no ``exp``."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    payload = {"description": "harvester defiant", "type": "opat", "aud": "api.olcf.ornl.gov",
               "nbf": 1700000000, "iat": 1700000000, "jti": jti}  # fmt: skip
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.c2lnbmF0dXJlLXZhbHVl"


TOKEN = make_token()
OTHER = make_token("ffeeddccbbaa")


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "defiant.token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture()
def clock() -> Clock:
    return Clock()


def settings(token_file: Path, **kw: Any) -> S3MSettings:
    kw.setdefault("timeouts", Timeouts(connect=1, read=1))
    kw.setdefault("policy", RetryPolicy(attempts=3, backoff=0.01, deadline=5))
    return S3MSettings(resource="defiant", token=Secret(f"file:{token_file}"), api_url=API, **kw)


@pytest.fixture()
def client(token_file: Path, clock: Clock):
    c = S3MClient(settings(token_file), clock=clock)
    yield c
    c.close()


@pytest.fixture()
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def introspection(rsps, expires: float | None = None, **extra: Any):
    token = {
        "username": "abc123_auser", "project": "abc123", "securityEnclave": "open",
        "description": "harvester defiant", "oneTimeToken": False, "delayedStart": False,
        "delayDate": None, **extra,
    }  # fmt: skip
    if expires is not None:
        token["plannedExpiration"] = iso(expires)
    return rsps.get(INTROSPECT, json={"token": token})


def valid_token(rsps):
    return introspection(rsps, time.time() + 30 * 86400)


def spec(tag: str = "hedge-q-1") -> JobSpec:
    return JobSpec(
        tag=tag, script="#!/bin/bash\necho hi\n", work_dir="/lustre/w/1", nodes=2,
        walltime_s=3600, account="abc123", partition="batch", submit_dir="/lustre/w",
        stdout_path="/lustre/w/hedge-q-1.out", stderr_path="/lustre/w/hedge-q-1.out",
    )  # fmt: skip


def ctld(job_id: int, state: str, name: str = "", **kw: Any) -> dict[str, Any]:
    """A job as slurmctld's ``GET .../jobs`` lists it."""
    return {
        "job_id": job_id, "name": name or f"hedge-q-{job_id}", "job_state": [state],
        "state_reason": kw.pop("reason", "None"), "nodes": kw.pop("nodes", ""),
        "exit_code": {"status": ["SUCCESS"], "return_code": {"set": True, "infinite": False,
                                                              "number": kw.pop("rc", 0)}},
        **kw,
    }  # fmt: skip


def db(job_id: int, state: str, rc: int = 0, name: str = "", reason: str = "None") -> dict:
    """A job as slurmdb's ``GET .../job/{id}`` answers it."""
    return {
        "job_id": job_id, "name": name or f"hedge-q-{job_id}",
        "state": {"current": [state], "reason": reason},
        "exit_code": {"status": ["EXITED" if rc else "SUCCESS"],
                      "return_code": {"set": True, "infinite": False, "number": rc},
                      "signal": {"id": {"set": False, "infinite": False, "number": 0}}},
        "time": {"elapsed": 10},
    }  # fmt: skip


def err(number: int, error: str, description: str = "", source: str = "") -> dict:
    return {"error_number": number, "error": error, "description": description,
            "source": source}  # fmt: skip


def count(rsps, pattern: str) -> int:
    return sum(1 for c in rsps.calls if re.search(pattern, c.request.url))


# ------------------------------------------------------------------ paths, bodies, headers
@pytest.mark.parametrize(
    "version, prefix, form",
    [
        ("v0.0.42", "/slurm/open/{version}/{resource}", "job"),
        ("v0.0.43", "/slurm/open/{version}/{resource}", "job"),
        ("v0.0.44", "/slurm/open/{version}/{resource}", "job"),
        ("v0.0.44", "/slurm/open/{version}/{resource}", "jobs"),
        ("v0.0.42", "/slurm/{version}/{resource}", "job"),  # hosts before March 2026
    ],
)
def test_submit_path_and_body_per_api_version(token_file, rsps, version, prefix, form) -> None:
    valid_token(rsps)
    base = API + prefix.format(version=version, resource="defiant")
    route = rsps.post(f"{base}/job/submit", json={"job_id": 4242, "step_id": "batch",
                                                  "errors": [], "warnings": []})  # fmt: skip
    c = S3MClient(settings(token_file, api_version=version, path_prefix=prefix, submit_form=form))
    assert c.submit(spec()).job_id == "4242"
    body = json.loads(route.calls[0].request.body)
    if form == "job":
        assert set(body) == {"job"} and body["job"]["script"].startswith("#!/bin/bash")
        job = body["job"]
    else:
        assert set(body) == {"script", "jobs"} and len(body["jobs"]) == 1
        job = body["jobs"][0]
        assert "script" not in job
    assert job["name"] == "hedge-q-1" and job["account"] == "abc123"
    assert job["partition"] == "batch" and job["minimum_nodes"] == 2
    assert job["time_limit"] == {"number": 60, "set": True, "infinite": False}
    assert job["current_working_directory"] == "/lustre/w" and job["environment"]
    assert route.calls[0].request.headers["Authorization"] == TOKEN  # raw, as OLCF documents


def test_bearer_header_style(token_file, rsps) -> None:
    intro = valid_token(rsps)
    jobs = rsps.get(f"{PREFIX}/jobs", json={"jobs": []})
    c = S3MClient(settings(token_file, auth_header="bearer"))
    assert c.find(["t"]) == {}
    assert jobs.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert intro.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    "change, key",
    [
        ({"api_version": "v0.0.41"}, "apiVersion"),
        ({"api_version": "v0.0.43", "submit_form": "jobs"}, "submitForm"),
        ({"submit_form": "both"}, "submitForm"),
        ({"auth_header": "basic"}, "authHeader"),
        ({"path_prefix": "/slurm/{cluster}/{resource}"}, "pathPrefix"),
        ({"path_prefix": "slurm/{version}"}, "pathPrefix"),
        ({"status_url": "ftp://x"}, "statusUrl"),
        ({"token_margin": -1}, "tokenMarginSeconds"),
    ],
)
def test_settings_are_checked(token_file, change, key) -> None:
    with pytest.raises(EdgeConfigError, match=f"'{key}'"):
        settings(token_file, **change)
    with pytest.raises(EdgeConfigError, match="'resource'"):
        S3MSettings(resource="def/iant", token=Secret(f"file:{token_file}"),
                    timeouts=Timeouts(), policy=RetryPolicy())  # fmt: skip


# ------------------------------------------------------------------ poll: both shapes
def test_poll_reads_both_shapes_and_asks_history_only_for_gone_or_final(client, rsps) -> None:
    valid_token(rsps)
    rsps.get(f"{PREFIX}/jobs", json={"jobs": [
        ctld(1, "RUNNING", nodes="defiant[01-02]"),
        ctld(2, "COMPLETED", rc=0),
        ctld(7, "PENDING", reason="Priority"),
        ctld(99, "RUNNING", name="someone-else"),
    ], "errors": [], "warnings": []})  # fmt: skip
    rsps.get(f"{PREFIX}/job/2", json={"jobs": [db(2, "COMPLETED")]})
    rsps.get(f"{PREFIX}/job/3", json={"jobs": [db(3, "FAILED", rc=3, reason="NonZeroExitCode")]})
    rsps.get(
        f"{PREFIX}/job/4",
        status=404,
        json={
            "jobs": [],
            "errors": [
                err(2017, "Invalid job id specified", "Unable to query JobId=4", "_handle_job_get")
            ],
        },
    )
    got = client.poll(["1", "2", "3", "4", "7"])
    assert set(got) == {"1", "2", "3", "7"}  # 4: seen nowhere
    assert got["1"].state is JobState.ACTIVE and got["1"].nodes == "defiant[01-02]"
    assert not got["1"].confirmed_final
    assert got["7"].state is JobState.QUEUED and got["7"].reason == "Priority"
    assert got["2"].state is JobState.COMPLETED and got["2"].confirmed_final
    assert got["3"].state is JobState.FAILED and got["3"].exit_code == 3
    assert got["3"].confirmed_final and got["3"].reason == "NonZeroExitCode"
    assert count(rsps, r"/jobs$") == 1 and count(rsps, r"/job/\d+$") == 3


def test_poll_of_1000_ids_is_one_list_plus_history_for_the_gone_ones(client, rsps) -> None:
    valid_token(rsps)
    ids = [str(1000 + i) for i in range(1000)]
    gone = set(ids[::100])  # 10 jobs left the live list
    rsps.get(f"{PREFIX}/jobs", json={"jobs": [ctld(int(j), "RUNNING") for j in ids
                                              if j not in gone]})  # fmt: skip
    rsps.add_callback(
        responses.GET, re.compile(rf"{re.escape(PREFIX)}/job/\d+$"),
        callback=lambda r: (200, {}, json.dumps({"jobs": [db(int(r.url.rsplit("/", 1)[1]),
                                                                "COMPLETED")]})),
    )  # fmt: skip
    got = client.poll(ids)
    assert len(got) == 1000 and all(got[j].confirmed_final for j in gone)
    assert count(rsps, r"/jobs$") == 1 and count(rsps, r"/job/\d+$") == len(gone)
    assert count(rsps, "introspect") == 1


def test_concurrent_polls_share_one_list_and_find_asks_afresh(client, rsps) -> None:
    valid_token(rsps)
    rsps.get(f"{PREFIX}/jobs", json={"jobs": [ctld(i, "RUNNING") for i in range(1, 9)]})
    barrier = threading.Barrier(4)
    results: list[Any] = []

    def poll(part: list[str]) -> None:
        barrier.wait()
        results.append(client.poll(part))

    threads = [threading.Thread(target=poll, args=([str(2 * i + 1), str(2 * i + 2)],))
               for i in range(4)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(r) for r in results) == 8
    assert count(rsps, r"/jobs$") == 1
    found = client.find(["hedge-q-3", "hedge-q-77"])
    assert [r.job_id for r in found["hedge-q-3"]] == ["3"] and "hedge-q-77" not in found
    assert count(rsps, r"/jobs$") == 2  # a lookup never trusts a list begun before it
    assert client.live_tags("hedge-q-") and count(rsps, r"/jobs$") == 2  # shared again


def test_a_failing_history_request_is_could_not_check_not_gone(client, rsps) -> None:
    valid_token(rsps)
    rsps.get(f"{PREFIX}/jobs", json={"jobs": []})
    rsps.get(f"{PREFIX}/job/5", json={"jobs": [db(5, "COMPLETED")]})
    rsps.get(
        f"{PREFIX}/job/6",
        status=502,
        json={"errors": [err(1800, "Unable to contact slurm controller (connect failure)")]},
    )
    with pytest.raises(StatusError) as info:
        client.poll(["5", "6"])
    assert info.value.status == 502 and "Unable to contact slurm controller" in str(info.value)
    assert count(rsps, r"/job/6$") == 3  # an idempotent GET: retried by the policy


def test_live_list_without_jobs_but_with_errors_is_transient(client, rsps) -> None:
    valid_token(rsps)
    rsps.get(
        f"{PREFIX}/jobs",
        json={
            "jobs": [],
            "errors": [err(1001, "Communication connection failure", "Unable to query jobs")],
        },
    )
    with pytest.raises(EdgeAPIError) as info:
        client.poll(["1"])
    assert info.value.transient and "Communication connection failure" in str(info.value)


def test_live_tags_are_the_live_jobs_with_the_prefix(client, rsps) -> None:
    valid_token(rsps)
    rsps.get(f"{PREFIX}/jobs", json={"jobs": [
        ctld(1, "RUNNING", name="hedge-q-1"), ctld(2, "COMPLETED", name="hedge-q-2"),
        ctld(3, "PENDING", name="hedge-q-3"), ctld(4, "RUNNING", name="other-4")]})  # fmt: skip
    assert sorted(client.live_tags("hedge-q-")) == ["hedge-q-1", "hedge-q-3"]


# ------------------------------------------------------------------ submit answers
def test_submit_refused_by_slurm_is_final_with_slurms_words(client, rsps) -> None:
    valid_token(rsps)
    route = rsps.post(
        f"{PREFIX}/job/submit",
        status=500,
        json={
            "job_id": 0,
            "errors": [
                err(
                    2045,
                    "Invalid account or account/partition combination specified",
                    "Batch job submission failed",
                    "slurm_submit_batch_job()",
                )
            ],
            "warnings": [],
        },
    )
    with pytest.raises(EdgeAPIError) as info:
        client.submit(spec())
    e = info.value
    assert not e.transient and e.status is None and not isinstance(e, StatusError)
    assert "Batch job submission failed: Invalid account" in str(e) and "2045" in str(e)
    assert route.call_count == 1


def test_a_qos_submit_limit_reads_as_one(client, rsps) -> None:
    valid_token(rsps)
    rsps.post(f"{PREFIX}/job/submit", status=500, json={"errors": [err(
        2050, "Job violates accounting/QOS policy (job submit limit, user's size and/or time "
        "limits)", "Batch job submission failed")]})  # fmt: skip
    with pytest.raises(EdgeAPIError) as info:
        client.submit(spec())
    assert not info.value.transient and is_submit_limit(str(info.value))


def test_json_in_detail_is_read(client, rsps) -> None:
    valid_token(rsps)
    inner = {"errors": [err(2066, "Invalid qos specification", "Batch job submission failed")]}
    rsps.post(f"{PREFIX}/job/submit", status=500, json={"detail": json.dumps(inner)})
    with pytest.raises(EdgeAPIError) as info:
        client.submit(spec())
    assert not info.value.transient and "Invalid qos specification" in str(info.value)
    assert slurm_errors({"detail": {"errors": inner["errors"]}})[0]["error_number"] == 2066
    rsps.get(
        f"{PREFIX}/jobs",
        status=503,
        json={
            "detail": json.dumps(
                {"errors": [err(1800, "Unable to contact slurm controller (connect failure)")]}
            )
        },
    )
    with pytest.raises(StatusError) as status_info:
        client.poll(["1"])
    assert "Unable to contact slurm controller" in str(status_info.value)


@pytest.mark.parametrize("status, number", [(502, 1800), (504, 5004), (500, None)])
def test_ambiguous_submit_answers_are_maybe_sent_and_not_retried(
    client, rsps, status, number
) -> None:
    valid_token(rsps)
    errors = [err(number, "Socket timed out on send/recv operation")] if number else []
    route = rsps.post(f"{PREFIX}/job/submit", status=status, json={"errors": errors})
    with pytest.raises(StatusError) as info:
        client.submit(spec())
    assert info.value.maybe_sent and info.value.status == status and route.call_count == 1


def test_submit_429_is_retried_and_network_failures_follow_the_core_rule(client, rsps) -> None:
    valid_token(rsps)
    url = f"{PREFIX}/job/submit"
    rsps.post(url, status=429, headers={"Retry-After": "0"})
    rsps.post(url, json={"job_id": 7})
    assert client.submit(spec()).job_id == "7"
    rsps.replace(responses.POST, url, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(EdgeNetworkError) as info:
        client.submit(spec())
    assert info.value.maybe_sent
    reset = requests.exceptions.ConnectionError(
        ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
    )
    rsps.replace(responses.POST, url, body=reset)
    with pytest.raises(EdgeNetworkError) as info:
        client.submit(spec())
    assert info.value.maybe_sent and not info.value.silent
    refused = requests.exceptions.ConnectionError(
        MaxRetryError(None, "/x", NewConnectionError(None, "Connection refused"))  # type: ignore[arg-type]
    )
    rsps.replace(responses.POST, url, body=refused)
    before = count(rsps, "job/submit")
    with pytest.raises(EdgeNetworkError) as info:
        client.submit(spec())
    assert not info.value.maybe_sent
    assert count(rsps, "job/submit") - before == 3  # surely not sent: retried


def test_submit_answers_with_warnings_or_without_a_job_id(client, rsps, caplog) -> None:
    caplog.set_level(logging.INFO)
    valid_token(rsps)
    url = f"{PREFIX}/job/submit"
    rsps.post(
        url,
        json={
            "job_id": 11,
            "step_id": "batch",
            "errors": [],
            "warnings": [
                {"description": "Job submitted in held state", "source": "slurm_submit_batch_job()"}
            ],
        },
    )
    assert client.submit(spec()).job_id == "11" and "held state" in caplog.text
    rsps.replace(responses.POST, url, json={"result": {"job_id": 12}, "errors": []})
    assert client.submit(spec()).job_id == "12"
    rsps.replace(responses.POST, url, json={"errors": [], "warnings": []})
    with pytest.raises(StatusError) as info:
        client.submit(spec())
    assert info.value.maybe_sent and "no job id" in str(info.value)
    rsps.replace(responses.POST, url, json={"errors": [err(2001, "No partition specified")]})
    with pytest.raises(EdgeAPIError) as refused:
        client.submit(spec())
    assert not refused.value.transient and "No partition specified" in str(refused.value)


def test_parser_refusals_are_final(client, rsps) -> None:
    valid_token(rsps)
    rsps.post(
        f"{PREFIX}/job/submit",
        status=422,
        json={"errors": [err(9000, "Query empty or not RFC7320 compliant", "unexpected field")]},
    )
    with pytest.raises(EdgeAPIError) as info:
        client.submit(spec())
    assert not info.value.transient and "RFC7320" in str(info.value)


def test_a_spec_slurmrestd_cannot_carry_is_refused_without_a_request(client, rsps) -> None:
    valid_token(rsps)
    route = rsps.post(f"{PREFIX}/job/submit", json={"job_id": 1})
    bad = JobSpec(tag="t", script="#!/bin/bash\n", work_dir="/w", nodes=1, walltime_s=60,
                  header_problem="unreadable #SBATCH line")  # fmt: skip
    with pytest.raises(EdgeAPIError) as info:
        client.submit(bad)
    assert not info.value.transient and route.call_count == 0


# ------------------------------------------------------------------ cancel
def test_cancel_outcomes(client, rsps) -> None:
    valid_token(rsps)
    rsps.delete(f"{PREFIX}/job/1", json={"errors": [], "warnings": []})
    rsps.delete(
        f"{PREFIX}/job/2",
        json={
            "warnings": [
                {
                    "description": "Job was already sent signal Killed",
                    "source": "_handle_job_delete",
                }
            ]
        },
    )
    rsps.delete(
        f"{PREFIX}/job/3",
        status=404,
        json={
            "errors": [
                err(2017, "Invalid job id specified", "unable to send signal", "slurm_kill_job2()")
            ]
        },
    )
    rsps.delete(
        f"{PREFIX}/job/4",
        status=500,
        json={"errors": [err(2021, "Job/step already completing or completed")]},
    )
    rsps.delete(
        f"{PREFIX}/job/5",
        status=500,
        json={"errors": [err(2002, "Access/permission denied", "unable to send signal")]},
    )
    rsps.delete(f"{PREFIX}/job/6", json={"status": [{"error": {
        "string": "Job/step already completing or completed", "code": 2021, "message": ""},
        "job_id": 6, "step_id": "batch"}], "errors": []})  # fmt: skip
    rsps.delete(f"{PREFIX}/job/8", status=503)
    got = client.cancel(["1", "2", "3", "4", "5", "6", "8", "x;rm"])
    assert got["1"].kind == got["2"].kind == CancelOutcome.ACCEPTED
    assert got["3"].kind == CancelOutcome.ALREADY_FINAL and "Invalid job id" in got["3"].text
    assert got["4"].kind == got["6"].kind == CancelOutcome.ALREADY_FINAL
    assert got["5"].kind == CancelOutcome.REFUSED and "permission denied" in got["5"].text
    assert got["8"].kind == CancelOutcome.REFUSED and "503" in got["8"].text
    assert got["x;rm"].kind == CancelOutcome.REFUSED
    assert count(rsps, r"job/x") == 0 and count(rsps, r"/job/5$") == 1  # final: no retry


def test_cancel_is_bounded_and_makes_the_next_poll_ask_again(token_file, rsps) -> None:
    valid_token(rsps)
    c = S3MClient(settings(token_file, concurrency=3))
    lock = threading.Lock()
    flight = {"now": 0, "max": 0}

    def slow(request):
        with lock:
            flight["now"] += 1
            flight["max"] = max(flight["max"], flight["now"])
        time.sleep(0.02)
        with lock:
            flight["now"] -= 1
        return 200, {}, "{}"

    rsps.add_callback(responses.DELETE, re.compile(rf"{re.escape(PREFIX)}/job/\d+$"), slow)
    rsps.get(f"{PREFIX}/jobs", json={"jobs": [ctld(i, "RUNNING") for i in range(1, 21)]})
    c.poll(["1"])
    got = c.cancel([str(i) for i in range(1, 21)])
    assert all(o.kind == CancelOutcome.ACCEPTED for o in got.values()) and len(got) == 20
    assert flight["max"] <= 3
    c.poll(["1"])
    assert count(rsps, r"/jobs$") == 2  # the list from before the cancel is not reused


# ------------------------------------------------------------------ health
def status_answer(state: str = "OPERATIONAL", downtimes: list | None = None) -> dict:
    return {"resources": [
        {"name": "frontier", "status": "OPERATIONAL", "upcomingDowntimes": []},
        {"name": "defiant", "description": "Defiant", "systemType": "compute",
         "securityEnclave": "open", "status": state, "downtimeScheduleAvailable": True,
         "upcomingDowntimes": downtimes or [], "retrievedAt": iso(time.time())},
    ]}  # fmt: skip


def test_health_from_the_public_status(client, rsps) -> None:
    intro = valid_token(rsps)
    route = rsps.get(STATUS, json=status_answer())
    h = client.health()
    assert h.available and h.outages == ()
    assert "Authorization" not in route.calls[0].request.headers  # public route
    assert intro.call_count == 1 and client.credential().expires_at is not None  # primed
    client.health()
    assert intro.call_count == 1  # once per tokenCheckSeconds
    now = time.time()
    ahead = {"resourceName": "defiant", "status": "UNAVAILABLE", "start": iso(now + 7200),
             "end": iso(now + 4 * 3600), "description": "OS upgrade"}  # fmt: skip
    rsps.replace(responses.GET, STATUS, json=status_answer(downtimes=[ahead]))
    h = client.health()
    assert h.available and len(h.outages) == 1 and h.outages[0].text == "OS upgrade"
    assert abs(h.outages[0].start - (now + 7200)) < 2
    under_way = dict(ahead, start=iso(now - 60))
    rsps.replace(responses.GET, STATUS, json=status_answer(downtimes=[under_way]))
    h = client.health()
    assert not h.available and h.planned is not None and h.planned.text == "OS upgrade"
    rsps.replace(responses.GET, STATUS, json=status_answer("UNAVAILABLE"))
    h = client.health()
    assert not h.available and h.state == "unavailable"
    rsps.replace(responses.GET, STATUS, json={"resources": [{"name": "odo", "status": "x"}]})
    h = client.health()
    assert not h.available and "defiant" in h.message


def test_a_separate_status_url(token_file, rsps) -> None:
    valid_token(rsps)
    rsps.get("https://status.test/v1alpha/status", json=status_answer())
    c = S3MClient(settings(token_file, status_url="https://status.test/v1alpha/status"))
    assert c.health().available


# ------------------------------------------------------------------ the token
def test_introspection_once_per_interval(client, rsps, clock) -> None:
    intro = valid_token(rsps)
    rsps.get(f"{PREFIX}/jobs", json={"jobs": []})
    for _ in range(5):
        client.find(["t"])
    assert intro.call_count == 1
    facts = client.credential()
    assert facts.kind == "olcf-project-token" and facts.problem is None
    assert facts.identity.startswith("sha256:") and "harvester defiant" in facts.identity
    clock.now += 601
    client.find(["t"])
    assert intro.call_count == 2


def test_an_expired_token_sends_nothing_and_says_when(client, rsps, clock) -> None:
    planned = time.time() - 3600
    intro = introspection(rsps, planned)
    submit = rsps.post(f"{PREFIX}/job/submit", json={"job_id": 1})
    jobs = rsps.get(f"{PREFIX}/jobs", json={"jobs": []})
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(planned))
    for _ in range(20):
        with pytest.raises(EdgeAuthError) as info:
            client.submit(spec())
        assert f"expired {when}" in str(info.value)
        with pytest.raises(EdgeAuthError):
            client.poll(["1"])
    assert submit.call_count == 0 and jobs.call_count == 0 and intro.call_count == 1
    facts = client.credential()
    assert facts.expires_at == pytest.approx(planned, abs=1)
    assert facts.problem is not None and f"expired {when}" in facts.problem
    assert str(facts.problem).endswith(f"put a new project access token in {client.token.source}")


def test_a_token_within_the_margin_counts_as_expired(token_file, rsps, clock) -> None:
    introspection(rsps, time.time() + 120)
    c = S3MClient(settings(token_file, token_margin=300), clock=clock)
    with pytest.raises(EdgeAuthError, match="within tokenMarginSeconds=300"):
        c.find(["t"])


def test_a_refused_token_backs_off_without_a_request_storm(client, rsps, clock) -> None:
    valid_token(rsps)
    jobs = rsps.get(f"{PREFIX}/jobs", status=401, json={"detail": "invalid authorization token"})
    with pytest.raises(EdgeAuthError):
        client.poll(["1"])
    assert jobs.call_count == 1  # nothing new in the file: no second try
    for _ in range(50):
        with pytest.raises(EdgeAuthError, match="not sent again"):
            client.poll(["1"])
    assert jobs.call_count == 1
    assert "refused" in str(client.credential().problem)
    clock.now += 61  # the back-off is over, but the refusal stands for the throttler ...
    assert "asked again at next use" in str(client.credential().problem)
    intro = count(rsps, "introspect")
    with pytest.raises(EdgeAuthError):
        client.poll(["1"])
    # ... until the next use: the token is introspected again, then sent once
    assert jobs.call_count == 2 and count(rsps, "introspect") == intro + 1
    clock.now += 61
    rsps.replace(responses.GET, f"{PREFIX}/jobs", json={"jobs": []})
    assert client.find(["t"]) == {} and client.credential().problem is None


def test_a_refused_introspection_backs_off_and_names_the_services_words(client, rsps) -> None:
    intro = rsps.get(
        INTROSPECT,
        status=403,
        json={"detail": "token expired at 2024-11-08T14:45:38Z (plannedExpiration)"},
    )
    for _ in range(10):
        with pytest.raises(EdgeAuthError) as info:
            client.find(["t"])
    assert intro.call_count == 1 and "2024-11-08T14:45:38Z" in str(info.value)
    assert "2024-11-08T14:45:38Z" in str(client.credential().problem)


def test_a_new_token_in_the_file_is_introspected_before_use(client, rsps, token_file) -> None:
    intro = valid_token(rsps)
    jobs = rsps.get(f"{PREFIX}/jobs", json={"jobs": []})
    client.find(["t"])
    old = client.credential().identity
    token_file.write_text(OTHER)
    client.find(["t"])
    assert intro.call_count == 2 and intro.calls[1].request.headers["Authorization"] == OTHER
    assert jobs.calls[1].request.headers["Authorization"] == OTHER
    assert client.credential().identity != old


def test_a_refused_token_is_replaced_in_place(client, rsps, token_file) -> None:
    valid_token(rsps)
    rsps.get(f"{PREFIX}/jobs", status=401, json={"detail": "invalid authorization token"})
    with pytest.raises(EdgeAuthError):
        client.find(["t"])
    token_file.write_text(OTHER)  # the operator drops a new token in: no wait for the back-off
    rsps.replace(responses.GET, f"{PREFIX}/jobs", json={"jobs": []})
    assert client.find(["t"]) == {}


def test_the_token_file_must_be_private(client, rsps, token_file) -> None:
    intro = valid_token(rsps)
    token_file.chmod(0o644)
    with pytest.raises(EdgeAuthError, match="chmod 600"):
        client.find(["t"])
    assert intro.call_count == 0 and "chmod 600" in str(client.credential().problem)


def test_a_token_from_the_environment(token_file, rsps, monkeypatch) -> None:
    monkeypatch.setenv("S3M_TEST_TOKEN", TOKEN)
    valid_token(rsps)
    jobs = rsps.get(f"{PREFIX}/jobs", json={"jobs": []})
    s = S3MSettings(resource="defiant", token=Secret("env:S3M_TEST_TOKEN"), api_url=API,
                    timeouts=Timeouts(1, 1), policy=RetryPolicy(attempts=1))  # fmt: skip
    S3MClient(s).find(["t"])
    assert jobs.calls[0].request.headers["Authorization"] == TOKEN


def test_an_unreadable_introspection_is_retried_after_a_minute(client, rsps, clock) -> None:
    intro = rsps.get(INTROSPECT, status=503)
    jobs = rsps.get(f"{PREFIX}/jobs", json={"jobs": []})
    client.find(["t"])
    client.find(["t"])
    assert jobs.call_count == 2 and intro.call_count == 3  # one call, its three attempts
    clock.now += 61
    client.find(["t"])
    assert intro.call_count == 6


# ------------------------------------------------------------------ no token anywhere
def test_no_token_in_any_log_exception_or_repr(token_file, rsps, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    echo = {"detail": f"token {TOKEN} refused", "errors": [err(2045, f"echo {TOKEN}")]}
    c = S3MClient(settings(token_file, policy=RetryPolicy(attempts=1)))
    texts = [repr(c), repr(c.settings), repr(c.token), repr(c.transport), str(c.__dict__)]
    valid_token(rsps)
    for status in (400, 401, 403, 404, 409, 422, 429, 500, 502):
        for method, path in (("POST", "job/submit"), ("GET", "jobs"), ("DELETE", "job/1"),
                             ("GET", "job/1")):  # fmt: skip
            rsps.upsert(method, f"{PREFIX}/{path}", status=status, json=echo)
        for call in (lambda: c.submit(spec()), lambda: c.poll(["1"]), lambda: c.find(["t"])):
            try:
                call()
            except EdgeAPIError as exc:
                texts += [str(exc), repr(exc), str(exc.args)]
        texts += [str(o) for o in c.cancel(["1"]).values()]
        texts.append(str(c.credential()))
        c.token._refused.clear()
    rsps.upsert("POST", f"{PREFIX}/job/submit", json={"job_id": 3, "warnings": [echo]})
    c.submit(spec())
    texts.append(caplog.text)
    assert any("***" in t for t in texts)  # the echo was there, and masked
    for text in texts:
        assert TOKEN not in text
        assert TOKEN.split(".")[2] not in text


def test_requests_failures_map_onto_the_three_kinds() -> None:
    from harvester_edge.facilities.transport import SendFailure, _requests_failure

    exc = requests.exceptions
    refused = exc.ConnectionError(MaxRetryError(None, "/", NewConnectionError(None, "refused")))  # type: ignore[arg-type]
    cases = [
        (exc.ConnectTimeout("c"), SendFailure.NOT_SENT),
        (refused, SendFailure.NOT_SENT),
        (exc.SSLError("handshake"), SendFailure.NOT_SENT),
        (exc.InvalidURL("u"), SendFailure.NOT_SENT),
        (exc.ReadTimeout("r"), SendFailure.TIMEOUT),
        (exc.ConnectionError(ProtocolError("aborted", ConnectionResetError())), SendFailure.BROKEN),
        (exc.ChunkedEncodingError("c"), SendFailure.BROKEN),
    ]
    for error, kind in cases:
        assert _requests_failure(error).kind == kind, error


def test_the_session_is_made_lazily_with_a_sized_pool(token_file) -> None:
    c = S3MClient(settings(token_file, pool_size=48))
    assert c.sender._session is None  # no I/O, no session in the constructor
    session = c.sender._http()
    adapter = session.get_adapter("https://s3m.test/")
    assert adapter._pool_maxsize == 48 and adapter.max_retries.total == 0
    c.close()
    assert c.sender._session is None
