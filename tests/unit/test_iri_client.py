"""IRIClient over respx: the wire rules of the DOE IRI facility API, v1 and v2.

Submit bodies and idempotency answers, the bulk status call (paging, ``historical``, filter
keys, request counts), PSI/J states through the verdict, cancel outcomes, health and
incidents, RFC 7807 problems, resource discovery, and that the token never shows."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from pathlib import Path

import httpx
import pytest
import respx

from harvester_edge.config import Secret
from harvester_edge.edge.encoders import canonical_json, psij_job_spec
from harvester_edge.edge.jobs import JobState
from harvester_edge.edge.retry import RetryPolicy, Timeouts
from harvester_edge.edge.spec import JobSpec
from harvester_edge.edge.states import ErrorCode, verdict_of
from harvester_edge.errors import EdgeAPIError, EdgeAuthError, EdgeNetworkError
from harvester_edge.facilities.base import CancelOutcome
from harvester_edge.facilities.iri import IRIClient, IRISettings, record_of
from harvester_edge.facilities.transport import StatusError
from harvester_edge.harvester import WorkSpec

V2 = "https://iri.test/api/v2"
V1 = "https://olcf.test/api/v1"
RID = "9f3b2c1e-7a4d-4e8b-9c2f-1d2e3f4a5b6c"
TOKEN = "gl0bus-AgTkN-7f3c9a1e5b2d8c4f0a1b"
RESOURCES = [
    {"id": "0c1d2e3f-aaaa-bbbb-cccc-000000000001", "name": "dtns", "supported_endpoints": []},
    {"id": RID, "name": "perlmutter", "supported_endpoints": ["compute", "filesystem"]},
]


def spec(tag: str = "hedge-t1-Q-w7", script: str = "#!/bin/bash\necho hi\n") -> JobSpec:
    return JobSpec(
        tag=tag, script=script, work_dir="/scratch/w/7", nodes=2, walltime_s=3600,
        account="m0000", partition="regular", qos="regular", submit_dir="/scratch/w",
        stdout_path="/scratch/w/t.out", stderr_path="/scratch/w/t.out", processes_per_node=4,
    )  # fmt: skip


def job(job_id: str, state: str = "active", name: str | None = None, **status) -> dict:
    out: dict = {"id": job_id, "status": {"state": state, "time": 1.0, **status}}
    if name is not None:
        out["job_spec"] = {"name": name, "executable": "bash"}
    return out


def problem(status: int, detail: str, title: str = "Error") -> httpx.Response:
    body = {"type": "https://iri.test/problems/x", "title": title, "status": status,
            "detail": detail, "instance": "https://iri.test/api/v2/x"}  # fmt: skip
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


@pytest.fixture()
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "iri-token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def make(token_file: Path, api: str = V2, **kw) -> IRIClient:
    settings = IRISettings(
        api_url=api,
        api_version=api.rsplit("/", 1)[1],
        resource=kw.pop("resource", "perlmutter"),
        token=Secret(f"file:{token_file}"),
        timeouts=Timeouts(connect=1, read=1),
        policy=kw.pop("policy", RetryPolicy(attempts=3, backoff=0.01, deadline=5)),
        **kw,
    )
    return IRIClient(settings)


@pytest.fixture()
def client(token_file: Path):
    c = make(token_file)
    yield c
    c.close()


@pytest.fixture()
def v1(token_file: Path):
    c = make(token_file, V1)
    yield c
    c.close()


def resources(mock, api: str = V2):
    return mock.get(f"{api}/status/resources").mock(
        return_value=httpx.Response(200, json=RESOURCES)
    )


def sent(route, i: int = -1) -> httpx.Request:
    return route.calls[i].request


# ---------------------------------------------------------------------------------- submit
@respx.mock
def test_submit_posts_the_canonical_psij_bytes_with_the_tag_as_key(client):
    resources(respx)
    route = respx.post(f"{V2}/compute/job/{RID}").mock(
        return_value=httpx.Response(
            200, json=job("4242", "new"), headers={"Idempotency-Key-Reply": "miss"}
        )  # fmt: skip
    )
    receipt = client.submit(spec())
    assert receipt.job_id == "4242" and receipt.handle is None
    request = sent(route)
    assert request.content == canonical_json(psij_job_spec(spec()))
    assert request.headers["content-type"] == "application/json"
    assert request.headers["Idempotency-Key"] == "hedge-t1-Q-w7"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert client.capabilities.idempotent_submit is True


@respx.mock
def test_submit_resends_are_byte_identical_under_the_same_key_and_never_nested(client):
    """One ``submit`` is one request (the submitter resends, ``retryAttempts`` in all: no
    transport retries inside each resend); every resend carries the same bytes and key."""
    resources(respx)
    route = respx.post(f"{V2}/compute/job/{RID}").mock(
        side_effect=[
            httpx.ReadTimeout("lost"),
            problem(502, "Bad Gateway"),
            problem(409, "A request with this Idempotency-Key is already in progress."),
            httpx.Response(200, json=job("77", "new"), headers={"Idempotency-Key-Reply": "hit"}),
        ]
    )
    with pytest.raises(EdgeNetworkError) as lost:
        client.submit(spec())
    assert lost.value.maybe_sent and route.call_count == 1  # not sent again after a timeout
    with pytest.raises(StatusError) as gateway:
        client.submit(spec())
    assert gateway.value.status == 502 and route.call_count == 2
    with pytest.raises(StatusError):
        client.submit(spec())
    assert route.call_count == 3
    assert client.submit(spec()).job_id == "77"
    bodies = {call.request.content for call in route.calls}
    keys = {call.request.headers["Idempotency-Key"] for call in route.calls}
    assert route.call_count == 4 and len(bodies) == 1 and keys == {"hedge-t1-Q-w7"}
    assert bodies == {canonical_json(psij_job_spec(spec()))}


@respx.mock
def test_idempotency_hit_is_the_original_job_and_is_logged(client, caplog):
    resources(respx)
    respx.post(f"{V2}/compute/job/{RID}").mock(
        return_value=httpx.Response(
            200, json=job("77", "new"), headers={"Idempotency-Key-Reply": "hit"}
        )  # fmt: skip
    )
    with caplog.at_level(logging.INFO, logger="harvester_edge.facilities.iri"):
        assert client.submit(spec()).job_id == "77"
    assert "idempotency hit, the original job 77" in caplog.text


@respx.mock
def test_409_in_flight_is_transient_and_left_to_the_submitter(client):
    """The same key still in flight: transient (the submitter sends it again after its
    back-off, same key and bytes), one request per ``submit``."""
    resources(respx)
    route = respx.post(f"{V2}/compute/job/{RID}").mock(
        return_value=problem(409, "A request with this Idempotency-Key is already in progress.")
    )
    with pytest.raises(StatusError) as info:
        client.submit(spec())
    assert info.value.status == 409 and info.value.transient
    assert route.call_count == 1


@respx.mock
def test_422_same_key_other_body_is_a_loud_bug_never_retried(client, caplog):
    resources(respx)
    route = respx.post(f"{V2}/compute/job/{RID}").mock(
        return_value=problem(422, "Idempotency-Key reused with a different request body.")
    )
    with caplog.at_level(logging.ERROR), pytest.raises(EdgeAPIError) as info:
        client.submit(spec())
    assert route.call_count == 1
    assert info.value.status == 422 and not info.value.transient
    assert "not deterministic" in str(info.value) and "a bug" in str(info.value)
    assert any(r.levelno == logging.ERROR and "hedge-t1-Q-w7" in r.message for r in caplog.records)


@respx.mock
def test_422_unknown_query_parameter_is_an_ordinary_refusal(client):
    resources(respx)
    respx.post(f"{V2}/compute/job/{RID}").mock(
        return_value=problem(422, "Unexpected query parameter: foo")
    )
    with pytest.raises(EdgeAPIError) as info:
        client.submit(spec())
    assert info.value.status == 422 and "Unexpected query parameter: foo" in str(info.value)
    assert "not deterministic" not in str(info.value)


@respx.mock
def test_501_no_store_falls_back_to_plain_submits_and_turns_the_capability_off(client, caplog):
    resources(respx)
    route = respx.post(f"{V2}/compute/job/{RID}").mock(
        side_effect=[
            problem(501, "Idempotency-Key provided but no idempotency store is configured."),
            httpx.Response(200, json=job("5", "queued")),
            httpx.Response(200, json=job("6", "queued")),
        ]
    )
    with caplog.at_level(logging.WARNING):
        assert client.submit(spec()).job_id == "5"
        assert client.submit(spec(tag="hedge-t1-Q-w8")).job_id == "6"
    first, second, third = (c.request for c in route.calls)
    assert first.headers["Idempotency-Key"] == "hedge-t1-Q-w7"
    assert "Idempotency-Key" not in second.headers and "Idempotency-Key" not in third.headers
    assert first.content == second.content
    assert client.capabilities.idempotent_submit is False
    assert client.no_idempotency_store and "no idempotency store" in caplog.text
    assert sum("keeps no idempotency store" in r.message for r in caplog.records) == 1


@respx.mock
def test_after_501_a_5xx_is_maybe_sent_and_not_resent(client):
    resources(respx)
    route = respx.post(f"{V2}/compute/job/{RID}").mock(
        side_effect=[problem(501, "no idempotency store"), problem(502, "bad gateway")]
    )
    with pytest.raises(StatusError) as info:
        client.submit(spec())
    assert info.value.maybe_sent and info.value.status == 502 and route.call_count == 2


@respx.mock
def test_v1_sends_no_key_and_a_5xx_is_maybe_sent_once(v1):
    resources(respx, V1)
    route = respx.post(f"{V1}/compute/job/{RID}").mock(return_value=problem(500, "sbatch hung"))
    with pytest.raises(StatusError) as info:
        v1.submit(spec())
    assert route.call_count == 1 and info.value.maybe_sent
    assert "Idempotency-Key" not in sent(route).headers
    assert v1.capabilities.idempotent_submit is False
    assert v1.capabilities.max_ids_per_query == 1000 and not v1.capabilities.files


@respx.mock
def test_v1_read_timeout_is_maybe_sent_and_not_retried(v1):
    resources(respx, V1)
    route = respx.post(f"{V1}/compute/job/{RID}").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(EdgeNetworkError) as info:
        v1.submit(spec())
    assert info.value.maybe_sent and route.call_count == 1


@pytest.mark.parametrize("status", [400, 404])
@respx.mock
def test_sbatch_refusals_are_not_transient_with_the_problem_detail(client, status):
    resources(respx)
    respx.post(f"{V2}/compute/job/{RID}").mock(
        return_value=problem(status, "sbatch: error: Invalid account or account/partition")
    )
    with pytest.raises(EdgeAPIError) as info:
        client.submit(spec())
    assert info.value.status == status and not info.value.transient
    assert "sbatch: error: Invalid account" in str(info.value)


@respx.mock
def test_a_2xx_without_a_job_id_is_ambiguous(client):
    resources(respx)
    respx.post(f"{V2}/compute/job/{RID}").mock(return_value=httpx.Response(200, json={}))
    with pytest.raises(EdgeAPIError) as info:
        client.submit(spec())
    assert info.value.transient and info.value.status == 502


def test_a_spec_that_cannot_be_encoded_is_refused_before_any_request(client):
    bad = JobSpec(tag="t", script="x", work_dir="/w", nodes=1, walltime_s=60,
                  header_problem="#SBATCH --nodes=lots")  # fmt: skip
    with respx.mock(assert_all_called=False) as mock:
        with pytest.raises(EdgeAPIError) as info:
            client.submit(bad)
        assert not mock.calls
    assert not info.value.transient and "cannot encode" in str(info.value)


# ---------------------------------------------------------------------------------- status
@respx.mock
def test_poll_of_1000_ids_is_one_request_with_historical_and_the_id_filter(client):
    resources(respx)
    ids = [str(10_000 + i) for i in range(1000)]
    route = respx.post(f"{V2}/compute/status/{RID}").mock(
        return_value=httpx.Response(200, json=[job(i, "completed", exit_code=0) for i in ids])
    )
    records = client.poll(ids)
    assert route.call_count == 1 and len(records) == 1000
    request = sent(route)
    assert dict(request.url.params) == {"offset": "0", "limit": "1000", "historical": "true"}
    assert json.loads(request.content) == {"id": ids}
    assert all(r.confirmed_final and r.state is JobState.COMPLETED for r in records.values())


@respx.mock
def test_poll_pages_while_a_page_is_full_and_ids_are_unseen(client):
    resources(respx)
    others = [job(f"x{i}", "active") for i in range(1000)]  # a facility ignoring the filter
    route = respx.post(f"{V2}/compute/status/{RID}").mock(
        side_effect=[
            httpx.Response(200, json=others),
            httpx.Response(200, json=[job("7", "failed", exit_code=3)]),
        ]
    )
    records = client.poll(["7"])
    assert list(records) == ["7"] and records["7"].exit_code == 3
    assert [c.request.url.params["offset"] for c in route.calls] == ["0", "1000"]


@respx.mock
def test_more_than_1000_ids_go_in_chunks_of_1000(client):
    resources(respx)

    def answer(request: httpx.Request) -> httpx.Response:
        ids = json.loads(request.content)["id"]
        return httpx.Response(200, json=[job(i, "queued") for i in ids])

    route = respx.post(f"{V2}/compute/status/{RID}").mock(side_effect=answer)
    ids = [str(i) for i in range(1500)]
    assert len(client.poll(ids)) == 1500 and route.call_count == 2


@respx.mock
def test_poll_omits_ids_the_service_did_not_name_and_records_it_did_not_ask(client):
    resources(respx)
    respx.post(f"{V2}/compute/status/{RID}").mock(
        return_value=httpx.Response(200, json=[job("1"), job("999"), {"status": {}}])
    )
    assert list(client.poll(["1", "2"])) == ["1"]


@respx.mock
def test_unreadable_status_answers_are_transient_never_empty(client):
    resources(respx)
    route = respx.post(f"{V2}/compute/status/{RID}")
    route.mock(return_value=httpx.Response(200, json={"jobs": []}))
    with pytest.raises(EdgeAPIError) as info:
        client.poll(["1"])
    assert info.value.transient
    route.mock(return_value=httpx.Response(200, json=[{"state": "x"}, "?"]))
    with pytest.raises(EdgeAPIError) as info:
        client.poll(["1"])
    assert info.value.transient


@respx.mock
def test_find_filters_by_name_with_specs_and_groups_by_tag(client):
    resources(respx)
    route = respx.post(f"{V2}/compute/status/{RID}").mock(
        return_value=httpx.Response(
            200,
            json=[
                job("11", "completed", name="tag-a", exit_code=0),
                job("12", "active", name="tag-a"),
                job("13", "active", name="someone-else"),
                job("14", "queued", name="tag-b"),
            ],
        )
    )
    found = client.find(["tag-a", "tag-b", "tag-c"])
    assert {t: sorted(r.job_id for r in rs) for t, rs in found.items()} == {
        "tag-a": ["11", "12"], "tag-b": ["14"]
    }  # fmt: skip
    request = sent(route)
    assert request.url.params["historical"] == "true"
    assert request.url.params["include_spec"] == "true"
    assert json.loads(request.content) == {"name": ["tag-a", "tag-b", "tag-c"]}


@respx.mock
def test_names_learned_at_submit_and_lookup_fill_poll_records(client):
    resources(respx)
    respx.post(f"{V2}/compute/job/{RID}").mock(return_value=httpx.Response(200, json=job("1")))
    status = respx.post(f"{V2}/compute/status/{RID}").mock(
        side_effect=[
            httpx.Response(200, json=[job("2", "queued", name="tag-2")]),
            httpx.Response(200, json=[job("1"), job("2"), job("3")]),
        ]
    )
    client.submit(spec(tag="tag-1"))
    client.find(["tag-2"])
    records = client.poll(["1", "2", "3"])
    assert {k: r.name for k, r in records.items()} == {"1": "tag-1", "2": "tag-2", "3": ""}
    assert "include_spec" not in sent(status).url.params  # poll never asks for the specs


@respx.mock
def test_live_tags_reads_live_jobs_with_specs_and_matches_the_prefix(client):
    resources(respx)
    route = respx.post(f"{V2}/compute/status/{RID}").mock(
        return_value=httpx.Response(
            200,
            json=[
                job("1", "active", name="hedge-h-Q-w1"),
                job("2", "queued", name="other-3"),
                job("3", "held", name="hedge-h-Q-w9"),
            ],
        )  # fmt: skip
    )
    assert client.live_tags("hedge-h-Q-w") == ["hedge-h-Q-w1", "hedge-h-Q-w9"]
    params = sent(route).url.params
    assert params["historical"] == "false" and params["include_spec"] == "true"
    assert json.loads(sent(route).content) == {}


@respx.mock
def test_configured_filter_keys_are_used(token_file):
    c = make(token_file, id_filter_key="job_ids", name_filter_key="job_names")
    resources(respx)
    route = respx.post(f"{V2}/compute/status/{RID}").mock(return_value=httpx.Response(200, json=[]))
    c.poll(["1"])
    c.find(["t"])
    assert [json.loads(call.request.content) for call in route.calls] == [
        {"job_ids": ["1"]}, {"job_names": ["t"]}
    ]  # fmt: skip


# ---------------------------------------------------------------------------- PSI/J states
@pytest.mark.parametrize(
    "state,extra,status,code,words",
    [
        ("new", {}, WorkSpec.ST_submitted, None, ""),
        ("queued", {"message": "Priority"}, WorkSpec.ST_submitted, None, "Priority"),
        ("held", {}, WorkSpec.ST_submitted, None, ""),
        ("active", {}, WorkSpec.ST_running, None, ""),
        ("completed", {"exit_code": 0}, WorkSpec.ST_finished, None, ""),
        ("failed", {"exit_code": 3}, WorkSpec.ST_failed, ErrorCode.NONZERO_EXIT, "exit code 3"),
        ("failed", {"exit_code": 0, "message": "Job state TIMEOUT"}, WorkSpec.ST_finished, None,
         "TIMEOUT"),
        ("failed", {"message": "ended: NODE_FAIL"}, WorkSpec.ST_failed, ErrorCode.NODE_FAIL,
         "NODE_FAIL"),
        ("failed", {"exit_code": 0, "meta_data": {"slurm_state": "OUT_OF_MEMORY"}},
         WorkSpec.ST_failed, ErrorCode.OUT_OF_MEMORY, "OUT_OF_MEMORY"),
        ("canceled", {"message": "CANCELLED by 51234"}, WorkSpec.ST_cancelled,
         ErrorCode.CANCELLED, "by uid 51234"),
        ("canceled", {"message": "PREEMPTED"}, WorkSpec.ST_finished, None, "PREEMPTED"),
        ("canceled", {"message": "Slurm state CANCELLED",
                      "meta_data": {"slurm_state": "CANCELLED by 0"}}, WorkSpec.ST_cancelled,
         ErrorCode.CANCELLED, "by uid 0"),
        ("failed", {"message": "Slurm state TIMEOUT, exit code 0:15", "exit_code": 143},
         WorkSpec.ST_finished, None, "TIMEOUT"),
        ("failed", {"message": "no Slurm word: timeout of the launcher"}, WorkSpec.ST_failed,
         ErrorCode.SLURM_FAILED, "reason: no Slurm word"),
        ("suspended", {}, None, None, "unrecognised"),
    ],
)  # fmt: skip
def test_psij_states_through_the_verdict(state, extra, status, code, words):
    record = record_of(job("9", state, **extra))
    verdict = verdict_of(record)
    assert verdict.status == status
    assert verdict.error_code == code
    assert words in verdict.diagnosis
    assert record.confirmed_final


def test_record_reads_exit_codes_names_and_nodes():
    record = record_of(
        {
            "id": 12,
            "status": {
                "state": "completed",
                "exit_code": "0",
                "meta_data": {"name": "t", "nodes": "nid[001-002]"},
            },
        }  # fmt: skip
    )
    assert (record.job_id, record.exit_code, record.name, record.nodes) == (
        "12", 0, "t", "nid[001-002]"
    )  # fmt: skip
    assert (
        record_of({"id": "1", "status": {"state": "active", "exit_code": True}}).exit_code is None
    )
    assert record_of({"id": "1"}).state is JobState.UNKNOWN
    with pytest.raises(ValueError):
        record_of({"status": {"state": "active"}})


# ---------------------------------------------------------------------------------- cancel
@respx.mock
def test_cancel_outcomes(client):
    resources(respx)
    base = f"{V2}/compute/cancel/{RID}"
    respx.delete(f"{base}/1").mock(return_value=httpx.Response(204))
    respx.delete(f"{base}/2").mock(return_value=problem(404, "Job 2 not found"))
    respx.delete(f"{base}/3").mock(
        return_value=problem(
            400,
            "scancel: error: Kill job error on job id 3: Job/step already completing or completed",
        )  # fmt: skip
    )
    respx.delete(f"{base}/4").mock(return_value=problem(400, "Access/permission denied"))
    respx.delete(f"{base}/5").mock(side_effect=httpx.RemoteProtocolError("reset"))
    out = client.cancel(["1", "2", "3", "4", "5", "1"])
    assert {k: v.kind for k, v in out.items()} == {
        "1": CancelOutcome.ACCEPTED, "2": CancelOutcome.ALREADY_FINAL,
        "3": CancelOutcome.ALREADY_FINAL, "4": CancelOutcome.REFUSED, "5": CancelOutcome.REFUSED,
    }  # fmt: skip
    assert "invalid job id" in out["2"].text.lower()  # the sweeper's word for "never ran"
    assert "permission denied" in out["4"].text


@respx.mock
def test_cancel_raises_when_no_request_got_an_answer(client):
    resources(respx)
    respx.delete(url__startswith=f"{V2}/compute/cancel/{RID}/").mock(
        side_effect=httpx.ConnectError("down")
    )
    with pytest.raises(EdgeNetworkError):
        client.cancel(["1", "2"])


@respx.mock
def test_cancel_stops_at_the_first_unanswered_delete_and_raises_it(token_file):
    """A silent service costs one timeout: once a DELETE got no answer in time, no other is
    started in this call, and the timeout is raised (the sweeper then asks nothing more)."""
    c = make(token_file, cancel_concurrency=1)
    resources(respx)
    base = f"{V2}/compute/cancel/{RID}"
    first = respx.delete(f"{base}/1").mock(return_value=httpx.Response(204))
    lost = respx.delete(f"{base}/2").mock(side_effect=httpx.ReadTimeout("no answer"))
    rest = respx.delete(url__regex=rf"{base}/[3-6]\Z").mock(return_value=httpx.Response(204))
    with pytest.raises(EdgeNetworkError) as info:
        c.cancel(["1", "2", "3", "4", "5", "6"])
    assert info.value.maybe_sent and info.value.silent
    assert (first.call_count, lost.call_count, rest.call_count) == (1, 1, 0)


@respx.mock
def test_cancel_goes_on_after_a_reset_connection(token_file):
    """A dropped connection is not a silent service: the other jobs are still cancelled."""
    c = make(token_file, cancel_concurrency=1)
    resources(respx)
    base = f"{V2}/compute/cancel/{RID}"
    respx.delete(f"{base}/1").mock(side_effect=httpx.RemoteProtocolError("reset"))
    rest = respx.delete(url__regex=rf"{base}/[23]\Z").mock(return_value=httpx.Response(204))
    out = c.cancel(["1", "2", "3"])
    assert {k: v.kind for k, v in out.items()} == {
        "1": CancelOutcome.REFUSED, "2": CancelOutcome.ACCEPTED, "3": CancelOutcome.ACCEPTED,
    }  # fmt: skip
    assert rest.call_count == 2


@respx.mock
def test_cancel_runs_concurrently_but_bounded(token_file):
    c = make(token_file, cancel_concurrency=3)
    resources(respx)
    active = {"now": 0, "max": 0}
    lock = threading.Lock()

    def slow(request: httpx.Request) -> httpx.Response:
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        time.sleep(0.05)
        with lock:
            active["now"] -= 1
        return httpx.Response(204)

    respx.delete(url__startswith=f"{V2}/compute/cancel/{RID}/").mock(side_effect=slow)
    out = c.cancel([str(i) for i in range(9)])
    assert len(out) == 9 and 1 < active["max"] <= 3


# ---------------------------------------------------------------------------------- health
def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def incident(kind: str, start: float, end: float | None, name: str, **kw) -> dict:
    return {"id": name, "name": name, "type": kind, "status": "down", "start": iso(start),
            "end": iso(end) if end else None, "resolution": kw.pop("resolution", "pending"),
            "resource_uris": [f"{V2}/status/resources/{RID}"], **kw}  # fmt: skip


def health_routes(mock, status: str, incidents: list | None):
    resources(mock)
    mock.get(f"{V2}/status/resources/{RID}").mock(
        return_value=httpx.Response(200, json={"id": RID, "current_status": status})
    )
    answer = (
        problem(404, "No incidents found")
        if incidents is None
        else httpx.Response(200, json=incidents)
    )
    return mock.get(f"{V2}/status/incidents").mock(return_value=answer)


@respx.mock
def test_health_up_with_no_incidents(client):
    route = health_routes(respx, "up", None)
    h = client.health()
    assert (h.available, h.state, h.planned, h.outages) == (True, "up", None, ())
    assert sent(route).url.params["resource_id"] == RID


@respx.mock
def test_health_degraded_is_available_with_the_incident_text(client):
    now = time.time()
    health_routes(respx, "degraded", [incident("unplanned", now - 60, None, "Lustre slow")])
    h = client.health()
    assert h.available and h.state == "degraded" and "Lustre slow" in h.message


@respx.mock
def test_health_down_is_unavailable(client):
    health_routes(respx, "down", [])
    h = client.health()
    assert not h.available and h.state == "down" and "perlmutter is down" in h.message


@respx.mock
def test_planned_incident_under_way_gates_like_maintenance(client):
    now = time.time()
    health_routes(
        respx, "up",
        [incident("planned", now - 600, now + 3600, "Perlmutter maintenance"),
         incident("planned", now + 86400, now + 90000, "Next month's upgrade"),
         incident("planned", now - 7200, now - 3600, "Over already"),
         incident("planned", now - 60, now + 60, "Called off", resolution="cancelled"),
         incident("planned", now - 60, now + 60, "Another system",
                  resource_uris=[f"{V2}/status/resources/other"])],
    )  # fmt: skip
    h = client.health()
    assert not h.available and h.state == "maintenance"
    assert h.planned is not None and h.planned.text == "Perlmutter maintenance"
    assert [o.text for o in h.outages] == ["Perlmutter maintenance", "Next month's upgrade"]
    assert "planned outage until" in h.message


@respx.mock
def test_upcoming_planned_incident_is_an_outage_for_the_throttler(client):
    now = time.time()
    health_routes(respx, "up", [incident("planned", now + 3600, now + 7200, "Upgrade")])
    h = client.health()
    assert h.available and h.planned is None
    assert len(h.outages) == 1 and abs(h.outages[0].start - (now + 3600)) < 2


@respx.mock
def test_unreadable_incidents_leave_the_resource_status_in_charge(client):
    resources(respx)
    respx.get(f"{V2}/status/resources/{RID}").mock(
        return_value=httpx.Response(200, json={"id": RID, "current_status": "up"})
    )
    respx.get(f"{V2}/status/incidents").mock(return_value=problem(500, "boom"))
    assert client.health().available


# ------------------------------------------------------------------------------- discovery
@respx.mock
def test_resource_discovery_is_one_request_cached_per_client(client):
    route = health_routes(respx, "up", None)
    listing = respx.routes[0]
    client.health()
    client.health()
    assert listing.call_count == 1 and route.call_count == 2
    assert dict(sent(listing).url.params) == {"offset": "0", "limit": "1000"}


@respx.mock
def test_discovery_prefers_the_compute_resource_and_reads_names_case_blind(token_file):
    respx.get(f"{V2}/status/resources").mock(
        return_value=httpx.Response(
            200,
            json=[
                {"id": "a", "name": "Frontier", "supported_endpoints": ["filesystem"]},
                {"id": "b", "name": "Frontier", "supported_endpoints": ["compute"]},
            ],
        )  # fmt: skip
    )
    assert make(token_file, resource="frontier").resource_id() == "b"
    assert make(token_file, resource="a").resource_id() == "a"


@respx.mock
def test_unknown_resource_names_what_the_facility_lists(client, token_file):
    respx.get(f"{V2}/status/resources").mock(return_value=httpx.Response(200, json=RESOURCES))
    with pytest.raises(EdgeAPIError, match="no resource named 'nope'.*dtns, perlmutter"):
        make(token_file, resource="nope").resource_id()


@respx.mock
def test_a_404_on_a_resource_route_drops_the_cached_id(client):
    listing = resources(respx)
    respx.post(f"{V2}/compute/job/{RID}").mock(return_value=problem(404, "Invalid resource"))
    for _ in range(2):
        with pytest.raises(EdgeAPIError):
            client.submit(spec())
    assert listing.call_count == 2


@respx.mock
def test_a_404_during_discovery_is_an_error_not_a_hang(client):
    respx.get(f"{V2}/status/resources").mock(return_value=problem(404, "Not Found"))
    with pytest.raises(EdgeAPIError) as info:
        client.health()
    assert info.value.status == 404


# --------------------------------------------------------------------------------- problems
@respx.mock
def test_rfc7807_problems_become_clear_errors(client):
    resources(respx)
    respx.post(f"{V2}/compute/status/{RID}").mock(
        return_value=problem(
            400, "Invalid boolean value. Expected 'true' or 'false'.", title="Invalid parameter"
        )  # fmt: skip
    )
    with pytest.raises(EdgeAPIError) as info:
        client.poll(["1"])
    text = str(info.value)
    assert text.startswith("iri POST /compute/status/")
    assert "HTTP 400: Invalid parameter: Invalid boolean value" in text
    assert info.value.status == 400 and not info.value.transient


@respx.mock
def test_s3m_wrapped_problem_detail_is_read_one_level_down(v1):
    resources(respx, V1)
    inner = json.dumps({"detail": "Frontier rejected: Invalid qos specification"})
    respx.post(f"{V1}/compute/job/{RID}").mock(return_value=problem(400, inner))
    with pytest.raises(EdgeAPIError, match="Invalid qos specification"):
        v1.submit(spec())


# ---------------------------------------------------------------------- credential, secrecy
def jwt(exp: float) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part({'exp': exp, 'sub': 'u'})}.c2lnbmF0dXJl"


def test_credential_facts_name_the_token_by_fingerprint(client, token_file):
    facts = client.credential()
    assert facts.kind == "bearer-token" and facts.identity.startswith("sha256:")
    assert facts.expires_at is None and facts.problem is None
    exp = time.time() + 7200
    token_file.write_text(jwt(exp))
    assert client.credential().expires_at == pytest.approx(exp)
    token_file.write_text(jwt(time.time() - 10))
    assert "expired" in (client.credential().problem or "")


def test_a_token_file_others_may_read_is_refused_before_sending(client, token_file):
    token_file.chmod(0o644)
    assert "chmod 600" in (client.credential().problem or "")
    with respx.mock(assert_all_called=False) as mock:
        with pytest.raises(EdgeAuthError, match="mode 0644"):
            client.health()
        assert not mock.calls


@respx.mock
def test_a_refused_token_is_not_sent_again_until_the_secret_changes(client, token_file):
    listing = respx.get(f"{V2}/status/resources").mock(
        return_value=httpx.Response(401, json={"detail": f"bad token {TOKEN}"})
    )
    with pytest.raises(EdgeAuthError) as info:
        client.resource_id()
    assert listing.call_count == 1 and TOKEN not in str(info.value)
    with pytest.raises(EdgeAuthError, match="not sent again"):
        client.resource_id()
    assert listing.call_count == 1
    assert "refused (HTTP 401)" in (client.credential().problem or "")
    token_file.write_text("another-token-0123456789")
    listing.mock(return_value=httpx.Response(200, json=RESOURCES))
    assert client.resource_id() == RID and client.credential().problem is None


@respx.mock
def test_no_token_in_logs_exceptions_or_reprs(client, token_file, caplog):
    caplog.set_level(logging.DEBUG)
    resources(respx)
    respx.post(f"{V2}/compute/job/{RID}").mock(
        side_effect=[
            problem(501, f"no store for {TOKEN}"),
            problem(400, f"sbatch: error: token Bearer {TOKEN} echoed"),
        ]  # fmt: skip
    )
    respx.post(f"{V2}/compute/status/{RID}").mock(
        return_value=httpx.Response(403, json={"detail": f"denied {TOKEN}"})
    )
    texts = [repr(client), repr(client.settings), repr(client.credentials), repr(client.transport),
             str(client.credential())]  # fmt: skip
    errors = []
    for call in (lambda: client.submit(spec()), lambda: client.poll(["1"])):
        with pytest.raises(EdgeAPIError) as info:
            call()
        errors.append(str(info.value))
    assert "sbatch: error: token *** echoed" in errors[0]
    texts += errors + [r.getMessage() for r in caplog.records]
    assert not [t for t in texts if TOKEN in t]
