"""SFAPI bulk operations over respx: per-row parsing, cancel and file reads through the command
utility (with the fallbacks), bounded task reads, the transport's retry and deadline rules,
and planned outages.  Request counts are asserted: they are the point."""

from __future__ import annotations

import json
import math
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from harvester_edge.edge.jobs import JobState
from harvester_edge.edge.retry import RetryPolicy, Timeouts, is_retryable
from harvester_edge.edge.spec import JobSpec
from harvester_edge.errors import EdgeAPIError, EdgeNetworkError
from harvester_edge.facilities.base import CancelOutcome
from harvester_edge.facilities.sfapi import (
    SFAPIClient,
    SFAPISettings,
    parse_scancel,
    split_cat_output,
)
from harvester_edge.localsite.sfapi_gateway import make_client_key

API = "https://sfapi.test/api/v1.2"
TOKEN = "https://oidc.test/c2id/token"
JOBS = f"{API}/compute/jobs/perlmutter"
COMMAND = f"{API}/utilities/command/perlmutter"
TASK = rf"^{API}/tasks/(?P<task_id>[^/]+)$"
ACCEPTED = CancelOutcome.accepted()
MAX_IDS = SFAPIClient.capabilities.max_ids_per_query


def spec() -> JobSpec:
    return JobSpec(tag="t", script="#!/bin/bash\n", work_dir="/w", nodes=1, walltime_s=600)


def make_settings(key: Path, **kw: Any) -> SFAPISettings:
    base: dict[str, Any] = {
        "machine": "perlmutter",
        "api_url": API,
        "token_url": TOKEN,
        "key_file": str(key),
        "timeouts": Timeouts(connect=1, read=2),
        "policy": RetryPolicy(attempts=3, backoff=0.01, deadline=10),
        "command_poll": 0.0,
        "command_wait": 2.0,
    }
    base.update(kw)
    return SFAPISettings(**base)


@pytest.fixture()
def key(tmp_path: Path) -> Path:
    path = tmp_path / "key.pem"
    make_client_key(path)
    return path


@pytest.fixture()
def client(key: Path):
    c = SFAPIClient(make_settings(key))
    yield c
    c.close()


def tokens() -> respx.Route:
    return respx.post(TOKEN).mock(
        return_value=httpx.Response(
            200, json={"access_token": "tok-x", "token_type": "Bearer", "expires_in": 600}
        )
    )


def api_calls() -> int:
    """Requests to the API (the token endpoint not counted)."""
    return sum(1 for call in respx.calls if call.request.url.host == "sfapi.test")


class CommandSite:
    """A command utility as the real SFAPI shapes it: a task per command, whose result is the
    JSON string ``{"status", "output", "error", "exit_code"}``.  ``run`` maps the command
    line to ``(exit_code, stdout, stderr)``; stderr goes to ``error`` when exit != 0."""

    def __init__(self, run: Any):
        self.run = run
        self.commands: list[str] = []
        self.tasks: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def post(self, request: httpx.Request) -> httpx.Response:
        line = parse_qs(request.content.decode())["executable"][0]
        with self._lock:
            self.commands.append(line)
            task_id = str(100 + len(self.commands))
        code, out, err = self.run(line)
        if code == 0:
            result = {"status": "ok", "output": out + err, "error": None, "exit_code": 0}
        else:
            result = {"status": "error", "output": out, "error": err, "exit_code": code}
        self.tasks[task_id] = {"id": task_id, "status": "completed", "result": json.dumps(result)}
        return httpx.Response(200, json={"task_id": task_id, "status": "OK", "error": None})

    def task(self, request: httpx.Request, task_id: str) -> httpx.Response:
        task = self.tasks.get(task_id)
        return httpx.Response(200, json=task) if task else httpx.Response(404, json={})

    def task_list(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"tasks": list(self.tasks.values())})

    def mount(self) -> CommandSite:
        respx.post(COMMAND).mock(side_effect=self.post)
        respx.get(url__regex=TASK).mock(side_effect=self.task)
        respx.get(f"{API}/tasks/").mock(side_effect=self.task_list)
        return self


# ---------------------------------------------------------------------- D: per-row parsing
@respx.mock
def test_one_odd_row_does_not_blank_the_chunk(client: SFAPIClient) -> None:
    tokens()
    respx.get(JOBS).mock(return_value=httpx.Response(200, json={"status": "OK", "output": [
        {"jobid": "4", "state": "RUNNING", "st": "R", "name": "a"},
        {"jobid": "5", "state": "OUT_OF_ME+", "name": "b"},
        {"state": "RUNNING", "name": "no id"},
        "not a row",
        {"jobid": "6", "state": "PENDING", "st": "PD", "name": "c"},
        {"jobid": "7", "state": "FROBNICATED", "name": "d"},
    ]}))  # fmt: skip
    records = client.poll(["4", "5", "6", "7"])
    assert set(records) == {"4", "5", "6", "7"}
    assert records["4"].state is JobState.ACTIVE and records["6"].state is JobState.QUEUED
    # sacct's truncated name: read as OUT_OF_MEMORY (a final state, so accounting was asked:
    # the same answer here, now confirmed)
    assert records["5"].state is JobState.FAILED and records["5"].cause == "OUT_OF_MEMORY"
    assert records["5"].native == "OUT_OF_ME+" and records["5"].confirmed_final
    assert records["7"].state is JobState.UNKNOWN and records["7"].native == "FROBNICATED"


# ---------------------------------------------------------------------- E: cancel in bulk
@respx.mock
def test_cancel_500_ids_is_one_scancel_and_one_task_read(client: SFAPIClient) -> None:
    tokens()
    site = CommandSite(lambda line: (0, "", "")).mount()
    ids = [str(1000 + i) for i in range(500)]
    assert client.cancel(ids) == dict.fromkeys(ids, ACCEPTED)
    assert site.commands == ["scancel " + " ".join(ids)]
    assert api_calls() == 2 <= math.ceil(500 / MAX_IDS) + 2


@respx.mock
def test_cancel_in_chunks_of_200_stays_within_budget(key: Path) -> None:
    tokens()
    site = CommandSite(lambda line: (0, "", "")).mount()
    client = SFAPIClient(make_settings(key, cancel_chunk=200))
    ids = [str(1000 + i) for i in range(500)]
    assert client.cancel(ids) == dict.fromkeys(ids, ACCEPTED)
    # posted in parallel
    assert sorted(len(c.split()) - 1 for c in site.commands) == [100, 200, 200]
    assert api_calls() == 4 <= math.ceil(500 / 200) + 2  # 3 commands + 1 task list


def test_scancel_messages_for_ended_jobs_are_already_final() -> None:
    err = "\n".join([
        "scancel: error: Kill job error on job id 5: Job/step already completing or completed",
        "scancel: error: Kill job error on job id 6: Invalid job id specified",
        "scancel: error: Kill job error on job id 7: Access/permission denied",
    ])  # fmt: skip
    result = {"status": "error", "output": "", "error": err, "exit_code": 1}
    out = parse_scancel(["4", "5", "6", "7"], result)
    assert out["4"] == ACCEPTED
    assert out["5"].kind == CancelOutcome.ALREADY_FINAL and "completing" in out["5"].text
    assert out["6"].kind == CancelOutcome.ALREADY_FINAL and "Invalid job id" in out["6"].text
    assert out["7"].kind == CancelOutcome.REFUSED and "permission denied" in out["7"].text
    broken = {"status": "error", "output": "", "error": "scancel: error: Socket timed out"}
    for outcome in parse_scancel(["1", "2"], broken).values():
        assert outcome.kind == CancelOutcome.REFUSED and "Socket timed out" in outcome.text
    never_ran = {"status": "error", "output": None, "error": None, "exit_code": None}
    assert parse_scancel(["1"], never_ran)["1"].kind == CancelOutcome.REFUSED
    fine = {"status": "ok", "output": "", "error": None, "exit_code": 0}
    assert parse_scancel(["1", "2"], fine) == {"1": ACCEPTED, "2": ACCEPTED}


@respx.mock
def test_cancel_validates_ids_and_reports_scancel_errors_per_id(client: SFAPIClient) -> None:
    tokens()
    err = "scancel: error: Kill job error on job id 12_3: Access/permission denied\n"
    site = CommandSite(lambda line: (1, "", err)).mount()
    out = client.cancel(["11", "12_3", "13+1", "14; rm -rf /", "x"])
    assert site.commands == ["scancel 11 12_3 13+1"]
    assert out["11"] == ACCEPTED and out["13+1"] == ACCEPTED
    assert out["12_3"].kind == CancelOutcome.REFUSED and "denied" in out["12_3"].text
    for bad in ("14; rm -rf /", "x"):
        assert out[bad].kind == CancelOutcome.REFUSED and "not a Slurm job id" in out[bad].text


@pytest.mark.parametrize("refusal", ["http404", "http405", "http403", "task"])
def test_refused_command_utility_falls_back_to_deletes_for_good(key: Path, refusal: str) -> None:
    client = SFAPIClient(make_settings(key))
    with respx.mock:
        tokens()
        if refusal.startswith("http"):
            status = int(refusal[4:])
            command = respx.post(COMMAND).mock(
                return_value=httpx.Response(status, json={"detail": "no"})
            )
        else:
            site = CommandSite(lambda line: (1, "", "")).mount()

            def not_allowed(request: httpx.Request) -> httpx.Response:
                answer = site.post(request)
                task_id = answer.json()["task_id"]
                result = {"status": "error", "output": None, "exit_code": None,
                          "error": "scancel: command not allowed for this client"}  # fmt: skip
                site.tasks[task_id]["result"] = json.dumps(result)
                return answer

            command = respx.post(COMMAND).mock(side_effect=not_allowed)
        deletes = respx.delete(url__regex=rf"^{JOBS}/\d+$").mock(
            side_effect=lambda request: httpx.Response(
                200, json={"task_id": "d" + request.url.path.rsplit("/", 1)[1], "status": "OK"}
            )
        )
        respx.get(f"{API}/tasks/").mock(return_value=httpx.Response(200, json={"tasks": []}))
        respx.get(url__regex=rf"^{API}/tasks/d\d+$").mock(return_value=httpx.Response(404, json={}))
        assert client.cancel(["1", "2", "3"]) == dict.fromkeys(["1", "2", "3"], ACCEPTED)
        assert client.cancel(["4", "5"]) == dict.fromkeys(["4", "5"], ACCEPTED)
    assert command.call_count == (2 if refusal == "http403" else 1)  # 403: one token retry
    assert deletes.call_count == 5 and client.commands_refused


@respx.mock
def test_delete_fallback_outcomes_per_job(key: Path) -> None:
    tokens()
    client = SFAPIClient(make_settings(key))
    client.commands_refused = "HTTP 404"  # as after a refused command utility
    errors = {
        "1": None,
        "2": "scancel: error: Kill job error on job id 2: Invalid job id specified",
        "3": "scancel: error: Kill job error on job id 3: Access/permission denied",
    }

    def delete(request: httpx.Request) -> httpx.Response:
        job = request.url.path.rsplit("/", 1)[1]
        if job == "4":
            return httpx.Response(400, json={"detail": "Job/step already completing or completed"})
        if job == "5":
            return httpx.Response(200, json={"status": "ERROR", "error": "not your job"})
        return httpx.Response(200, json={"task_id": f"d{job}", "status": "OK", "error": None})

    def task(request: httpx.Request, task_id: str) -> httpx.Response:
        error = errors[task_id[1:]]
        result = {"status": "error" if error else "ok", "error": error}
        return httpx.Response(
            200, json={"id": task_id, "status": "completed", "result": json.dumps(result)}
        )

    deletes = respx.delete(url__regex=rf"^{JOBS}/\d+$").mock(side_effect=delete)
    respx.get(url__regex=TASK).mock(side_effect=task)
    respx.get(f"{API}/tasks/").mock(
        side_effect=lambda request: httpx.Response(200, json={"tasks": [
            task(request, f"d{j}").json() for j in errors
        ]})
    )  # fmt: skip
    out = client.cancel(["1", "2", "3", "4", "5"])
    assert deletes.call_count == 5
    assert out["1"] == ACCEPTED
    assert out["2"].kind == CancelOutcome.ALREADY_FINAL and "Invalid job id" in out["2"].text
    assert out["3"].kind == CancelOutcome.REFUSED and "permission denied" in out["3"].text
    assert out["4"].kind == CancelOutcome.ALREADY_FINAL and "HTTP 400" in out["4"].text
    assert out["5"].kind == CancelOutcome.REFUSED and "not your job" in out["5"].text


@respx.mock
def test_a_command_request_that_fails_refuses_its_chunk(key: Path) -> None:
    tokens()
    client = SFAPIClient(make_settings(key, policy=RetryPolicy(attempts=1)))
    respx.post(COMMAND).mock(return_value=httpx.Response(500, json={"detail": "boom"}))
    out = client.cancel(["1", "2"])
    assert {o.kind for o in out.values()} == {CancelOutcome.REFUSED}
    assert all("HTTP 500" in o.text for o in out.values()) and client.commands_refused is None


# ---------------------------------------------------------------------- F: files in bulk
def summary(i: int) -> str:
    doc = {"version": 1, "worker_id": i, "expected_pilots": 4, "pilots": [{"node": "n1"}]}
    return json.dumps(doc, indent=None) + "\n"


def cat_site(files: dict[str, str], prefix: str = "/bin/cat") -> CommandSite:
    """``cat`` like GNU cat run by the gateway: files in order, stderr for missing ones."""

    def run(line: str) -> tuple[int, str, str]:
        name, *paths = line.split()
        assert name == "cat"
        out, err = [], []
        for p in paths:
            if p in files:
                out.append(files[p])
            else:
                err.append(f"{prefix}: {p}: No such file or directory\n")
        return (1 if err else 0), "".join(out), "".join(err)

    return CommandSite(run)


@respx.mock
@pytest.mark.parametrize("cat_chunk, cats", [(500, 1), (200, 3)])
def test_read_texts_500_paths_in_one_cat_per_chunk_and_one_task_read(
    key: Path, cat_chunk: int, cats: int
) -> None:
    client = SFAPIClient(make_settings(key, cat_chunk=cat_chunk))
    tokens()
    paths = [f"/pscratch/w/{i}/worker-summary.json" for i in range(500)]
    files = {p: summary(i) for i, p in enumerate(paths) if i % 7}
    site = cat_site(files).mount()
    texts = client.read_texts(paths)
    client.close()
    assert len(site.commands) == cats and api_calls() == cats + 1
    assert api_calls() <= math.ceil(500 / cat_chunk) + 2
    assert set(texts) == set(paths)
    for i, p in enumerate(paths):
        if i % 7:
            assert json.loads(texts[p] or "") == json.loads(files[p])
        else:
            assert texts[p] is None


@respx.mock
def test_read_texts_with_stderr_in_the_output_of_a_successful_cat(client: SFAPIClient) -> None:
    tokens()
    paths = ["/w/a.json", "/w/b.json"]
    files = {"/w/a.json": '{"a": 1}', "/w/b.json": '{"b": [1, {"c": "}"}]}'}  # no newlines
    cat_site(files).mount()
    texts = client.read_texts(paths)
    assert {p: json.loads(t or "") for p, t in texts.items()} == {
        "/w/a.json": {"a": 1},
        "/w/b.json": {"b": [1, {"c": "}"}]},
    }
    mixed = {"status": "ok", "exit_code": 0, "error": None,
             "output": '{"a": 1}\ncat: /w/x: No such file or directory\n{"b": 2}\n'}  # fmt: skip
    split, missing = split_cat_output(["/w/a", "/w/x", "/w/b"], mixed)
    assert missing == {"/w/x"} and split == {"/w/a": '{"a": 1}', "/w/b": '{"b": 2}'}


@respx.mock
def test_a_chunk_that_does_not_add_up_is_read_file_by_file_not_guessed(
    client: SFAPIClient,
) -> None:
    tokens()
    paths = ["/w/1.json", "/w/2.json", "/w/3.json", "/w/4.json"]
    files = {"/w/1.json": summary(1), "/w/2.json": "half a summary {", "/w/3.json": summary(3)}
    cat_site(files).mount()
    downloads = respx.get(url__regex=rf"^{API}/utilities/download/perlmutter/.*$").mock(
        side_effect=lambda request: httpx.Response(
            200, json={"status": "OK", "file": files[request.url.path.split("perlmutter/")[1]]}
        )
    )
    texts = client.read_texts(paths)
    assert texts == {**files, "/w/4.json": None}  # 4 is known missing: not downloaded
    assert downloads.call_count == 3


@respx.mock
def test_refused_cat_falls_back_to_downloads_at_most_8_at_a_time(key: Path) -> None:
    tokens()
    client = SFAPIClient(make_settings(key))
    command = respx.post(COMMAND).mock(return_value=httpx.Response(404, json={"detail": "x"}))
    active, peak = [0], [0]
    lock = threading.Lock()

    def download(request: httpx.Request) -> httpx.Response:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        path = request.url.path.split("perlmutter/")[1]
        if path.endswith("missing"):
            return httpx.Response(200, json={"status": "ERROR", "error": "no such file"})
        if path.endswith("broken"):
            return httpx.Response(500, json={"detail": "boom"})
        return httpx.Response(200, json={"status": "OK", "file": f"text of {path}"})

    respx.get(url__regex=rf"^{API}/utilities/download/perlmutter/.*$").mock(side_effect=download)
    paths = [f"/w/{i}" for i in range(40)] + ["/w/missing", "/w/broken", "/w/with space"]
    texts = client.read_texts(paths)
    assert texts["/w/3"] == "text of /w/3" and texts["/w/missing"] is None
    assert "/w/broken" not in texts  # could not read now
    assert texts["/w/with space"] == "text of /w/with space"
    assert command.call_count == 1 and 1 < peak[0] <= 8
    client.read_texts(["/w/1"])
    assert command.call_count == 1  # remembered


@respx.mock
def test_unsafe_paths_are_never_put_on_a_command_line(client: SFAPIClient) -> None:
    tokens()
    site = cat_site({"/w/ok.json": '{"x": 1}'}).mount()
    respx.get(url__regex=rf"^{API}/utilities/download/perlmutter/.*$").mock(
        return_value=httpx.Response(200, json={"status": "OK", "file": '{"y": 2}'})
    )
    texts = client.read_texts(["/w/ok.json", "/w/$(id).json", "-n", "/w/a b"])
    assert site.commands == ["cat /w/ok.json"]
    assert texts["/w/ok.json"] == '{"x": 1}' and texts["/w/$(id).json"] == '{"y": 2}'


# ---------------------------------------------------------------------- G: bounded task reads
@respx.mock
def test_few_handles_are_read_one_by_one_many_with_one_list(client: SFAPIClient) -> None:
    tokens()
    result = json.dumps({"status": "ok", "jobid": "42", "error": None})
    one = respx.get(url__regex=TASK).mock(
        side_effect=lambda request, task_id: (
            httpx.Response(200, json={"id": task_id, "status": "completed", "result": result})
            if task_id != "404"
            else httpx.Response(404, json={"detail": "task not found"})
        )
    )
    listing = respx.get(f"{API}/tasks/").mock(
        return_value=httpx.Response(200, json={"tasks": [
            {"id": str(i), "status": "completed", "result": result} for i in range(50)
        ]})
    )  # fmt: skip
    got = client.resolve(["1", "404"])
    assert set(got) == {"1"} and got["1"].job_id == "42"
    assert one.call_count == 2 and listing.call_count == 0
    got = client.resolve([str(i) for i in range(20)])
    assert len(got) == 20 and listing.call_count == 1 and one.call_count == 2


# ---------------------------------------------------------------------- H: retries, deadline
def test_retry_rules_for_non_idempotent_requests() -> None:
    for status in (500, 502, 503, 504):
        assert not is_retryable(EdgeAPIError("x", status=status), idempotent=False)
        assert is_retryable(EdgeAPIError("x", status=status), idempotent=True)
    assert is_retryable(EdgeAPIError("x", status=429), idempotent=False)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@respx.mock
def test_submit_answered_5xx_is_not_retried_and_says_maybe_sent(
    client: SFAPIClient, status: int
) -> None:
    tokens()
    route = respx.post(JOBS).mock(return_value=httpx.Response(status, json={"detail": "x"}))
    with pytest.raises(EdgeAPIError) as info:
        client.submit(spec())
    assert route.call_count == 1 and info.value.status == status and info.value.transient
    assert getattr(info.value, "maybe_sent", None) is True


@respx.mock
def test_submit_answered_429_is_retried(client: SFAPIClient) -> None:
    tokens()
    route = respx.post(JOBS).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "0"}),
            httpx.Response(200, json={"task_id": "5", "status": "OK", "error": None}),
        ]
    )
    assert client.submit(spec()).handle == "5"
    assert route.call_count == 2


@respx.mock
def test_no_attempt_outlives_the_call_deadline(key: Path) -> None:
    tokens()
    policy = RetryPolicy(attempts=50, backoff=0.05, max_backoff=0.05, deadline=1.0, jitter=0)
    client = SFAPIClient(make_settings(key, policy=policy, timeouts=Timeouts(connect=5, read=30)))
    timeouts: list[float] = []

    def slow(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"]["read"])
        time.sleep(0.2)
        return httpx.Response(503, json={"detail": "busy"})

    respx.get(JOBS).mock(side_effect=slow)
    start = time.monotonic()
    with pytest.raises(EdgeAPIError):
        client.poll(["1"])
    elapsed = time.monotonic() - start
    assert elapsed < 1.5 and 2 <= len(timeouts) <= 5
    assert all(t <= 1.0 for t in timeouts) and timeouts == sorted(timeouts, reverse=True)


@respx.mock
def test_submit_that_cannot_connect_is_retried(client: SFAPIClient) -> None:
    tokens()
    route = respx.post(JOBS).mock(
        side_effect=[
            httpx.ConnectError("refused"),
            httpx.Response(200, json={"task_id": "6", "status": "OK", "error": None}),
        ]
    )
    assert client.submit(spec()).handle == "6"
    assert route.call_count == 2
    route.mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(EdgeNetworkError) as info:
        client.submit(spec())
    assert info.value.maybe_sent and route.call_count == 3


# ---------------------------------------------------------------------- planned outages
def outage(start: datetime, end: datetime, description: str) -> dict[str, Any]:
    return {
        "name": "perlmutter",
        "start_at": start.isoformat(),
        "end_at": end.isoformat(),
        "description": description,
        "notes": None,
        "status": "Active",
        "swo": "swo",
        "update_at": start.isoformat(),
    }


@respx.mock
def test_health_reports_planned_outages(client: SFAPIClient) -> None:
    now = datetime.now(timezone.utc)
    respx.get(f"{API}/status/perlmutter").mock(
        return_value=httpx.Response(200, json={"name": "perlmutter", "status": "active"})
    )
    planned = respx.get(f"{API}/status/outages/planned/perlmutter")
    later = outage(now + timedelta(hours=5), now + timedelta(hours=9), "OS upgrade")
    planned.mock(return_value=httpx.Response(200, json=[later]))
    health = client.health()
    assert health.available and health.planned is None
    assert [o.text for o in health.outages] == ["OS upgrade"]
    assert abs(health.outages[0].start - (now + timedelta(hours=5)).timestamp()) < 1
    current = outage(now - timedelta(hours=1), now + timedelta(hours=2), "maintenance")
    planned.mock(return_value=httpx.Response(200, json=[later, current]))
    health = client.health()
    assert not health.available and health.state == "maintenance"
    assert health.planned is not None and health.planned.text == "maintenance"
    assert "planned outage" in health.message
    assert [o.text for o in health.outages] == ["maintenance", "OS upgrade"]
