"""One transport, two senders: the same answers give the same errors over httpx (respx) and
over requests (responses); the ``refusal`` reading and whole-URL paths work on both."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import requests
import responses
import respx
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from harvester_edge.edge.retry import RetryPolicy, Timeouts
from harvester_edge.errors import EdgeAPIError, EdgeNetworkError
from harvester_edge.facilities.transport import (
    HttpxTransport,
    RefusedError,
    RequestsTransport,
    StatusError,
    Transport,
)

BASE = "https://edge.test/api"


def make(kind: str) -> Transport:
    cls = HttpxTransport if kind == "httpx" else RequestsTransport
    return cls(
        "edge", BASE, None, timeouts=Timeouts(connect=1, read=1),
        policy=RetryPolicy(attempts=2, backoff=0.01, deadline=5),
    )  # fmt: skip


def mocking(kind: str) -> Any:
    if kind == "httpx":
        return respx.mock()
    return responses.RequestsMock(assert_all_requests_are_fired=False)


def answer(mock: Any, status: int, body: Any, url: str = f"{BASE}/x") -> Callable[[], int]:
    """Mock ``url`` (every method) with one answer; returns a call counter."""
    if isinstance(mock, respx.MockRouter):
        route = mock.route(url=url).mock(return_value=httpx.Response(status, json=body))
        return lambda: route.call_count
    calls = [mock.upsert(m, url, status=status, json=body) for m in ("GET", "POST", "DELETE")]
    return lambda: sum(c.call_count for c in calls)


def outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("ok", call())
    except EdgeAPIError as exc:
        return (
            type(exc).__name__, exc.status, exc.transient, getattr(exc, "maybe_sent", None),
            str(exc),
        )  # fmt: skip


CASES = [
    (200, {"jobs": []}),
    (404, {"errors": [{"error": "Invalid job id specified", "error_number": 2017}]}),
    (409, {"detail": "in flight"}),
    (422, {"title": "Unprocessable", "status": 422, "detail": "bad field"}),
    (500, {"detail": json.dumps({"errors": [{"error": "Invalid account"}]})}),
    (502, {"errors": [{"error": "Unable to contact slurm controller"}]}),
    (429, {"detail": "slow down"}),
]


@pytest.mark.parametrize("status, body", CASES)
@pytest.mark.parametrize("method, idempotent", [("GET", True), ("POST", False)])
def test_both_senders_give_the_same_outcome(status, body, method, idempotent) -> None:
    seen = {}
    for kind in ("httpx", "requests"):
        with mocking(kind) as mock:
            calls = answer(mock, status, body)
            t = make(kind)
            seen[kind] = outcome(lambda t=t: t.request(method, "x", json={}, idempotent=idempotent))
            seen[kind] += (calls(),)
    assert seen["httpx"] == seen["requests"]


@pytest.mark.parametrize("kind", ["httpx", "requests"])
def test_a_refusal_reading_makes_a_final_error(kind) -> None:
    def refusal(status: int, body: Any) -> str | None:
        return "Invalid account (Slurm error 2045)" if "2045" in json.dumps(body) else None

    body = {"errors": [{"error": "Invalid account", "error_number": 2045}]}
    with mocking(kind) as mock:
        calls = answer(mock, 500, body)
        with pytest.raises(RefusedError) as info:
            make(kind).request("POST", "x", json={}, idempotent=False, refusal=refusal)
        assert calls() == 1
    e = info.value
    assert e.status is None and e.http_status == 500 and not e.transient
    assert str(e) == "edge POST /x: HTTP 500: Invalid account (Slurm error 2045)"


@pytest.mark.parametrize("kind", ["httpx", "requests"])
def test_a_whole_url_path_goes_there(kind) -> None:
    url = "https://status.test/olcf/v1alpha/status"
    with mocking(kind) as mock:
        answer(mock, 200, {"resources": []}, url=url)
        assert make(kind).request("GET", url) == {"resources": []}
        answer(mock, 503, {"detail": "down"}, url=url)
        with pytest.raises(StatusError, match=r"edge GET /olcf/v1alpha/status: HTTP 503"):
            make(kind).request("GET", url)


@responses.activate
def test_requests_network_failures() -> None:
    t = make("requests")
    refused = requests.exceptions.ConnectionError(
        MaxRetryError(None, "/x", NewConnectionError(None, "refused"))  # type: ignore[arg-type]
    )
    reset = requests.exceptions.ConnectionError(ProtocolError("aborted", ConnectionResetError()))
    for body, maybe_sent, silent, calls in (
        (refused, False, True, 2),  # surely not sent: even a POST is retried
        (requests.exceptions.ReadTimeout(), True, True, 1),
        (reset, True, False, 1),
    ):
        responses.upsert(responses.POST, f"{BASE}/x", body=body)
        before = len(responses.calls)
        with pytest.raises(EdgeNetworkError) as info:
            t.request("POST", "x", json={}, idempotent=False)
        assert (info.value.maybe_sent, info.value.silent) == (maybe_sent, silent)
        assert len(responses.calls) - before == calls
        assert "edge POST /x" in str(info.value)


@responses.activate
def test_requests_sends_no_redirect_and_no_netrc(tmp_path, monkeypatch) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine edge.test login someone password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    route = responses.get(f"{BASE}/x", status=302, headers={"Location": "https://elsewhere/"})
    assert make("requests").request("GET", "x", authenticated=False) is None
    assert "Authorization" not in route.calls[0].request.headers
    assert len(responses.calls) == 1  # the redirect was not followed


@pytest.mark.parametrize("kind", ["httpx", "requests"])
def test_both_senders_carry_bytes_and_answer_a_reply(kind) -> None:
    """``content=`` goes out byte for byte on every attempt (IRI's canonical JSON under an
    ``Idempotency-Key``) and ``with_response`` gives the status and headers with the body."""
    body = b'{"name":"w1","executable":"bash"}'
    seen: list[bytes] = []
    with mocking(kind) as mock:
        if isinstance(mock, respx.MockRouter):
            answers = iter([httpx.Response(503), httpx.Response(
                200, json={"id": "7"}, headers={"Idempotency-Key-Reply": "hit"}
            )])  # fmt: skip

            def reply(request: httpx.Request) -> httpx.Response:
                seen.append(request.content)
                return next(answers)

            mock.route(url=f"{BASE}/x").mock(side_effect=reply)
        else:
            statuses = iter([503, 200])

            def callback(request: Any) -> tuple[int, dict[str, str], str]:
                seen.append(request.body)
                status = next(statuses)
                if status != 200:
                    return status, {}, ""
                return 200, {"Idempotency-Key-Reply": "hit"}, json.dumps({"id": "7"})

            mock.add_callback("POST", f"{BASE}/x", callback=callback)
        reply_ = make(kind).request(
            "POST", "/x", content=body, headers={"content-type": "application/json"},
            with_response=True,
        )  # fmt: skip
    assert seen == [body, body]
    assert reply_.status == 200 and reply_.body == {"id": "7"}
    assert reply_.headers["idempotency-key-reply"] == "hit"  # case-insensitive


def test_one_body_at_most() -> None:
    with pytest.raises(ValueError, match="one body"):
        make("httpx").request("POST", "/x", json={}, content=b"{}")
