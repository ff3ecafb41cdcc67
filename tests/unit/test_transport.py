"""The HTTP transport over respx: each auth style, JSON bodies and headers, the error taxonomy
(409, 422, RFC 7807 problems) and that no credential ever shows in a message or a repr."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest
import respx

from harvester_edge.config import Secret
from harvester_edge.edge.retry import RetryPolicy, Timeouts
from harvester_edge.errors import EdgeAPIError, EdgeAuthError, EdgeNetworkError
from harvester_edge.facilities.auth import (
    AuthorizerAuth,
    StaticTokenAuth,
    fingerprint,
    jwt_expiry,
    secret_values,
)
from harvester_edge.facilities.transport import HttpxTransport, StatusError, describe

BASE = "https://edge.test/api"
TOKEN = "opat-7f3c9a1e5b2d8c4f"
OTHER = "opat-0a1b2c3d4e5f6071"


def transport(auth=None, **kw) -> HttpxTransport:
    kw.setdefault("policy", RetryPolicy(attempts=3, backoff=0.01, deadline=5))
    return HttpxTransport("edge", BASE, auth, timeouts=Timeouts(connect=1, read=2), **kw)


@pytest.fixture()
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def static(path: Path, **kw) -> StaticTokenAuth:
    return StaticTokenAuth(Secret(f"file:{path}"), **kw)


# ---------------------------------------------------------------------- auth styles
@respx.mock
def test_static_token_raw_in_authorization_as_s3m_wants(token_file: Path) -> None:
    route = respx.get(f"{BASE}/jobs").mock(return_value=httpx.Response(200, json={"jobs": []}))
    t = transport(static(token_file))
    assert t.request("GET", "jobs") == {"jobs": []}
    request = route.calls[0].request
    assert request.headers["Authorization"] == TOKEN
    assert request.headers["accept"] == "application/json"


@respx.mock
def test_static_token_with_a_scheme_in_a_custom_header(token_file: Path) -> None:
    route = respx.get(f"{BASE}/jobs").mock(return_value=httpx.Response(200, json={}))
    transport(static(token_file, scheme="Bearer")).request("GET", "jobs")
    transport(static(token_file, header="X-Auth-Token")).request("GET", "jobs")
    first, second = (call.request.headers for call in route.calls)
    assert first["Authorization"] == f"Bearer {TOKEN}"
    assert second["X-Auth-Token"] == TOKEN and "Authorization" not in second


@respx.mock
def test_static_token_is_read_at_each_request(token_file: Path, monkeypatch) -> None:
    route = respx.get(f"{BASE}/jobs").mock(return_value=httpx.Response(200, json={}))
    t = transport(static(token_file))
    t.request("GET", "jobs")
    token_file.write_text(OTHER)
    t.request("GET", "jobs")
    monkeypatch.setenv("EDGE_TOKEN", TOKEN)
    transport(StaticTokenAuth(Secret("env:EDGE_TOKEN"))).request("GET", "jobs")
    assert [c.request.headers["Authorization"] for c in route.calls] == [TOKEN, OTHER, TOKEN]


@respx.mock
def test_a_refused_static_token_is_tried_again_only_when_the_secret_changed(
    token_file: Path,
) -> None:
    route = respx.get(f"{BASE}/jobs").mock(
        return_value=httpx.Response(401, json={"detail": "bad token"})
    )
    t = transport(static(token_file))
    with pytest.raises(EdgeAuthError) as info:
        t.request("GET", "jobs")
    assert route.call_count == 1 and info.value.status == 401
    assert f"file {token_file}" in str(info.value) and "HTTP 401" in str(info.value)

    def rotate_then_accept(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == TOKEN:
            token_file.write_text(OTHER)  # renewed by a person while the request was out
            return httpx.Response(401, json={"detail": "expired"})
        return httpx.Response(200, json={"ok": True})

    route.mock(side_effect=rotate_then_accept)
    token_file.write_text(TOKEN)
    assert t.request("GET", "jobs") == {"ok": True} and route.call_count == 3


@respx.mock
def test_a_missing_or_unusable_secret_sends_nothing(tmp_path: Path) -> None:
    route = respx.get(f"{BASE}/jobs").mock(return_value=httpx.Response(200, json={}))
    missing = tmp_path / "none"
    with pytest.raises(EdgeAuthError, match="cannot be read"):
        transport(static(missing)).request("GET", "jobs")
    bad = tmp_path / "bad"
    bad.write_text("two words-of-secret-text")
    with pytest.raises(EdgeAuthError) as info:
        transport(static(bad)).request("GET", "jobs")
    assert "cannot carry" in str(info.value) and "secret-text" not in str(info.value)
    assert route.call_count == 0


def test_static_token_options_are_checked(token_file: Path) -> None:
    with pytest.raises(ValueError):
        static(token_file, header="Bad Header")
    with pytest.raises(ValueError):
        static(token_file, scheme="Bearer x")


def test_static_token_facts_fingerprint_and_jwt_expiry(tmp_path: Path) -> None:
    path = tmp_path / "t"

    def jwt(payload: dict) -> str:
        part = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
        return f"eyJhbGciOiJub25lIn0.{part}.c2ln"

    path.write_text(jwt({"type": "opat", "aud": "api.olcf.ornl.gov"}))  # S3M: no exp
    facts = static(path, kind="s3m-token").facts()
    assert facts.kind == "s3m-token" and facts.expires_at is None and facts.problem is None
    assert facts.identity == fingerprint(path.read_text()) and facts.identity.startswith("sha256:")
    path.write_text(jwt({"exp": 1_900_000_000}))
    assert static(path).facts().expires_at == 1_900_000_000
    assert jwt_expiry("opaque") is None and jwt_expiry("a.!!!.c") is None
    path.unlink()
    assert "cannot be read" in (static(path).facts().problem or "")


class FakeAuthorizer:
    """globus_sdk's authorizer shape: a header value, and a renewal after a 401."""

    def __init__(self) -> None:
        self.token = "globus-token-one"
        self.renewals = 0
        self.fail: Exception | None = None
        self.expires_at = 1_800_000_000

    def get_authorization_header(self) -> str:
        if self.fail:
            raise self.fail
        return f"Bearer {self.token}"

    def handle_missing_authorization(self) -> bool:
        self.renewals += 1
        self.token = "globus-token-two"
        return True


class GlobusAPIError(Exception):
    def __init__(self, status: int):
        super().__init__(f"auth said {status} for globus-token-one")
        self.http_status = status


@respx.mock
def test_a_globus_style_authorizer_renews_once_after_a_401() -> None:
    authorizer = FakeAuthorizer()
    route = respx.get(f"{BASE}/tasks").mock(
        side_effect=lambda r: (
            httpx.Response(200, json={"ok": 1})
            if r.headers["Authorization"] == "Bearer globus-token-two"
            else httpx.Response(401, json={"detail": "expired"})
        )
    )
    auth = AuthorizerAuth(authorizer)
    assert transport(auth).request("GET", "tasks") == {"ok": 1}
    assert route.call_count == 2 and authorizer.renewals == 1
    assert auth.facts().expires_at == 1_800_000_000 and "globus-token" not in repr(auth)


@pytest.mark.parametrize(
    "error, kind",
    [
        (GlobusAPIError(503), EdgeNetworkError),
        (GlobusAPIError(400), EdgeAuthError),
        (type("NetworkError", (Exception,), {})("down"), EdgeNetworkError),
        (RuntimeError("globus-token-one is bad"), EdgeAuthError),
    ],
)
@respx.mock
def test_authorizer_failures_become_our_errors_without_their_text(error, kind) -> None:
    route = respx.get(f"{BASE}/tasks").mock(return_value=httpx.Response(200, json={}))
    authorizer = FakeAuthorizer()
    authorizer.fail = error
    with pytest.raises(kind) as info:
        transport(AuthorizerAuth(authorizer)).request("GET", "tasks")
    assert type(info.value) is kind and "globus-token" not in str(info.value)
    assert not getattr(info.value, "maybe_sent", False) and route.call_count == 0


class CountingAuth:
    """An OAuth2-style auth (like the Iris credential): a new token after each refusal."""

    def __init__(self) -> None:
        self.n = 1
        self.refused_with: list[int] = []

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer oauth-token-{self.n}"}

    def refresh(self, sent: Mapping[str, str]) -> bool:
        self.n += 1
        return True

    def refused(self, sent: Mapping[str, str], status: int) -> EdgeAuthError:
        self.refused_with.append(status)
        return EdgeAuthError(f"refused (HTTP {status})", status=status)


@respx.mock
def test_bearer_auth_refresh_once_then_refused_and_forbidden_modes() -> None:
    route = respx.get(f"{BASE}/x").mock(return_value=httpx.Response(403, json={"detail": "no"}))
    auth = CountingAuth()
    t = transport(auth)
    with pytest.raises(EdgeAuthError):
        t.request("GET", "x")
    assert route.call_count == 2 and auth.refused_with == [403] and auth.n == 2
    with pytest.raises(EdgeAPIError) as info:
        t.request("GET", "x", forbidden="either")
    assert type(info.value) is EdgeAPIError and route.call_count == 4 and auth.refused_with == [403]
    with pytest.raises(EdgeAPIError) as info:
        t.request("GET", "x", forbidden="resource")
    assert type(info.value) is EdgeAPIError and route.call_count == 5
    route.mock(return_value=httpx.Response(200, json={}))
    t.request("GET", "x", authenticated=False)
    assert "Authorization" not in route.calls[-1].request.headers


# ---------------------------------------------------------------------- bodies and headers
@respx.mock
def test_json_body_and_extra_headers(token_file: Path) -> None:
    route = respx.post(f"{BASE}/job/submit").mock(
        return_value=httpx.Response(200, json={"job_id": 12345, "errors": []})
    )
    body = {"job": {"name": "tag-1", "environment": ["PATH=/usr/bin"], "script": "#!/bin/bash\n"}}
    t = transport(static(token_file), headers={"User-Agent": "harvester-edge-test"})
    answer = t.request(
        "POST", "job/submit", json=body, headers={"Idempotency-Key": "tag-1"}, idempotent=False
    )
    assert answer["job_id"] == 12345
    request = route.calls[0].request
    assert json.loads(request.content) == body
    assert request.headers["content-type"] == "application/json"
    assert request.headers["Idempotency-Key"] == "tag-1"
    assert request.headers["User-Agent"] == "harvester-edge-test"
    assert request.headers["Authorization"] == TOKEN


@respx.mock
def test_auth_headers_win_over_request_headers(token_file: Path) -> None:
    route = respx.get(f"{BASE}/x").mock(return_value=httpx.Response(200, json={}))
    t = transport(static(token_file))
    t.request("GET", "x", headers={"Authorization": "forged"})
    t.request("GET", "x", headers={"authorization": "forged", "X-Trace": "1"})
    for call in route.calls:
        assert call.request.headers.get_list("Authorization") == [TOKEN]
    assert route.calls[1].request.headers["X-Trace"] == "1"


def test_form_and_json_bodies_are_exclusive() -> None:
    with pytest.raises(ValueError, match="not both"):
        transport().request("POST", "x", data={"a": "1"}, json={"a": 1})


@respx.mock
def test_an_empty_answer_is_none() -> None:
    respx.delete(f"{BASE}/job/1").mock(return_value=httpx.Response(204))
    assert transport().request("DELETE", "job/1") is None


# ---------------------------------------------------------------------- error taxonomy
@respx.mock
def test_409_in_flight_is_transient_and_retried_after_retry_after() -> None:
    route = respx.get(f"{BASE}/job/1").mock(
        side_effect=[
            httpx.Response(409, headers={"Retry-After": "1"}, json={"detail": "in flight"}),
            httpx.Response(409, json={"detail": "in flight"}),  # no Retry-After: back-off
            httpx.Response(200, json={"id": "1"}),
        ]
    )
    start = time.monotonic()
    assert transport().request("GET", "job/1") == {"id": "1"}
    assert route.call_count == 3 and time.monotonic() - start >= 0.9


@respx.mock
def test_409_on_a_submit_is_not_retried_and_may_have_created_the_job() -> None:
    problem = {
        "type": "about:blank", "title": "Conflict", "status": 409,
        "detail": "a request with this Idempotency-Key is in progress",
    }  # fmt: skip
    route = respx.post(f"{BASE}/compute/job/r1").mock(
        return_value=httpx.Response(409, headers={"Retry-After": "2"}, json=problem)
    )
    with pytest.raises(StatusError) as info:
        transport().request("POST", "compute/job/r1", json={}, idempotent=False)
    err = info.value
    assert route.call_count == 1 and err.status == 409 and err.transient and err.maybe_sent
    assert err.retry_after == 2 and "conflict" in str(err) and "in progress" in str(err)


@respx.mock
def test_422_is_final_with_the_services_detail() -> None:
    problem = {
        "type": "https://iri.example/problems/idempotency", "title": "Unprocessable Entity",
        "status": 422, "detail": "Idempotency-Key reused with a different body",
        "instance": "/api/v2/compute/job/r1",
    }  # fmt: skip
    route = respx.post(f"{BASE}/compute/job/r1").mock(
        return_value=httpx.Response(
            422, json=problem, headers={"content-type": "application/problem+json"}
        )
    )
    with pytest.raises(EdgeAPIError) as info:
        transport().request("POST", "compute/job/r1", json={}, idempotent=True)
    err = info.value
    assert route.call_count == 1 and err.status == 422 and not err.transient
    assert "HTTP 422 unprocessable" in str(err)
    assert "Unprocessable Entity: Idempotency-Key reused with a different body" in str(err)


@respx.mock
def test_other_4xx_keep_their_status_and_5xx_are_transient() -> None:
    route = respx.route(url=f"{BASE}/x").mock(
        return_value=httpx.Response(404, json={"title": "Not Found", "status": 404})
    )
    with pytest.raises(EdgeAPIError) as info:
        transport().request("GET", "x")
    assert info.value.status == 404 and not info.value.transient and "Not Found" in str(info.value)
    route.mock(return_value=httpx.Response(501, text="no idempotency store"))
    with pytest.raises(StatusError) as status_info:
        transport().request("POST", "x", headers={"Idempotency-Key": "k"}, idempotent=False)
    assert status_info.value.status == 501 and "no idempotency store" in str(status_info.value)


@pytest.mark.parametrize(
    "body, text",
    [
        ({"type": "about:blank", "title": "Bad Request", "status": 400, "detail": "no partition"},
         "Bad Request: no partition"),
        ({"type": "https://x/limits", "status": 400, "detail": "too many"},
         "https://x/limits: too many"),
        ({"type": "about:blank", "status": 400, "title": "Bad Request"}, "Bad Request"),
        ({"detail": [{"loc": ["query", "historical"], "msg": "Input should be a valid boolean"}]},
         "query.historical: Input should be a valid boolean"),
        ({"detail": '{"errors": [{"error": "Invalid account", "error_number": 2045}]}'},
         "Invalid account"),
        ({"error": "sbatch: error: invalid partition"}, "sbatch: error: invalid partition"),
        ({"status": "ERROR", "message": "later"}, "later"),
        (["one", "two"], "one; two"),
    ],
)  # fmt: skip
def test_error_bodies_are_described(body, text) -> None:
    assert describe(body) == text


# ---------------------------------------------------------------------- no secret anywhere
@respx.mock
def test_no_token_in_any_exception_text_or_repr(
    token_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = {"detail": f"token {TOKEN} is not valid here (Bearer {TOKEN})"}
    route = respx.get(f"{BASE}/x")
    texts: list[str] = []
    for style in (static(token_file), static(token_file, scheme="Bearer")):
        t = transport(style, policy=RetryPolicy(attempts=1))
        texts += [repr(t), str(t.__dict__), repr(style), str(style.facts())]
        for status in (401, 403, 409, 422, 400, 500, 429):
            route.mock(return_value=httpx.Response(status, json=echo))
            for kw in ({}, {"forbidden": "resource"}, {"forbidden": "either"}):
                with pytest.raises(EdgeAPIError) as info:
                    t.request("GET", "x", **kw)
                texts += [str(info.value), repr(info.value), str(info.value.args)]
        route.mock(return_value=httpx.Response(400, text=f"plain text echo {TOKEN}"))
        with pytest.raises(EdgeAPIError) as info:
            t.request("GET", "x")
        texts += [str(info.value)]
    texts.append(caplog.text)
    assert any("***" in text for text in texts)  # the echo was there, and masked
    for text in texts:
        assert TOKEN not in text


def test_secret_values_cover_the_header_and_the_bare_token() -> None:
    assert secret_values({"Authorization": f"Bearer {TOKEN}"}) == (f"Bearer {TOKEN}", TOKEN)
    assert secret_values({"Authorization": TOKEN}) == (TOKEN,)
    assert secret_values({"Authorization": "short"}) == ()
