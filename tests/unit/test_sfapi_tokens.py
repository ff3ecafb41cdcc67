"""SFAPI credentials over respx with a fake clock: one grant per token lifetime, one grant
after concurrent refusals, the refusal back-off, key rotation, and no secret anywhere."""

from __future__ import annotations

import itertools
import logging
import os
import threading
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
import respx

from harvester_edge.edge.retry import RetryPolicy, Timeouts
from harvester_edge.edge.spec import JobSpec
from harvester_edge.errors import EdgeAPIError, EdgeAuthError, EdgeNetworkError
from harvester_edge.facilities import sfapi as sfapi_module
from harvester_edge.facilities.sfapi import SFAPIClient, SFAPISettings
from harvester_edge.localsite.sfapi_gateway import make_client_key

API = "https://sfapi.test/api/v1.2"
TOKEN = "https://oidc.test/c2id/token"
JOBS = f"{API}/compute/jobs/perlmutter"
#: job 1 is running: a poll of it is one squeue request (no sacct follow-up)
OK_JOBS = {"status": "OK", "output": [{"jobid": "1", "state": "RUNNING", "name": "t"}]}


def spec() -> JobSpec:
    return JobSpec(tag="t", script="#!/bin/bash\n", work_dir="/w", nodes=1, walltime_s=600)


def ask(client: SFAPIClient) -> bool:
    """One authenticated API request: poll job 1, seen running."""
    return "1" in client.poll(["1"])


class FakeClock:
    """A monotonic clock the test moves; safe to advance from several threads."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def settings(key: Path, **kw: object) -> SFAPISettings:
    base: dict[str, object] = {
        "machine": "perlmutter",
        "api_url": API,
        "token_url": TOKEN,
        "key_file": str(key),
        "timeouts": Timeouts(connect=1, read=2),
        "policy": RetryPolicy(attempts=3, backoff=0.01, deadline=10),
        "command_poll": 0.0,
    }
    base.update(kw)
    return SFAPISettings(**base)  # type: ignore[arg-type]


@pytest.fixture()
def key(tmp_path: Path) -> Path:
    path = tmp_path / "key.pem"
    make_client_key(path)
    return path


class TokenServer:
    """Issues numbered tokens with a lifetime and checks bearer headers against the clock."""

    def __init__(self, clock: FakeClock, lifetime: float = 600.0):
        self.clock = clock
        self.lifetime = lifetime
        self.issued: dict[str, float] = {}  # token -> expiry (fake clock)
        self.assertions: list[str] = []
        self.issuers: list[str] = []
        self._n = itertools.count(1)
        self._lock = threading.Lock()
        self.refuse_with: str | None = None
        self.refused_api_calls = 0

    def token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        assertion = form["client_assertion"]
        self.assertions.append(assertion)
        self.issuers.append(jwt.decode(assertion, options={"verify_signature": False})["iss"])
        if self.refuse_with:
            return httpx.Response(
                401, json={"error": self.refuse_with, "error_description": "client is disabled"}
            )
        with self._lock:
            value = f"tok-secret-{next(self._n)}"
            self.issued[value] = self.clock() + self.lifetime
        body = {"access_token": value, "token_type": "Bearer", "expires_in": self.lifetime}
        return httpx.Response(200, json=body)

    def valid(self, request: httpx.Request) -> bool:
        value = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return self.clock() < self.issued.get(value, float("-inf"))

    def api(self, request: httpx.Request) -> httpx.Response:
        if not self.valid(request):
            with self._lock:
                self.refused_api_calls += 1
            return httpx.Response(403, json={"detail": "token expired"})
        return httpx.Response(200, json=OK_JOBS)


def test_one_grant_per_lifetime_with_three_threads_and_short_tokens(key: Path) -> None:
    clock = FakeClock()
    server = TokenServer(clock, lifetime=20.0)
    client = SFAPIClient(settings(key), clock=clock)
    errors: list[BaseException] = []
    rounds = 300
    # Lockstep: in each round the three threads send one request together, then the clock
    # moves 0.25 s (fake time must not run on while a thread signs its assertion).
    step = threading.Barrier(4, timeout=30)

    def work() -> None:
        for _ in range(rounds):
            step.wait()
            try:
                ask(client)
            except BaseException as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)
            step.wait()

    with respx.mock:
        tokens = respx.post(TOKEN).mock(side_effect=server.token)
        jobs = respx.get(JOBS).mock(side_effect=server.api)
        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        for _ in range(rounds):
            step.wait()
            step.wait()
            clock.advance(0.25)
        for t in threads:
            t.join(timeout=30)
    client.close()
    elapsed = rounds * 0.25  # 75 s of fake time, 900 requests
    assert not errors and jobs.call_count == 3 * rounds and server.refused_api_calls == 0
    # renewed 5 s (a quarter of the lifetime) before expiry: one grant per 15 s
    assert elapsed / 20 <= tokens.call_count <= elapsed / 15 + 1, tokens.call_count


@respx.mock
def test_leeway_is_a_quarter_of_a_short_lifetime_and_60s_of_a_long_one(key: Path) -> None:
    clock = FakeClock()
    server = TokenServer(clock, lifetime=30.0)
    tokens = respx.post(TOKEN).mock(side_effect=server.token)
    respx.get(JOBS).mock(side_effect=server.api)
    client = SFAPIClient(settings(key), clock=clock)
    ask(client)
    clock.advance(22.0)  # renewal due at 30 - 7.5 = 22.5
    ask(client)
    assert tokens.call_count == 1
    clock.advance(1.0)
    ask(client)
    assert tokens.call_count == 2
    server.lifetime = 600.0
    clock.advance(30.0)
    ask(client)  # the 30 s token expired: a 600 s one now
    clock.advance(539.0)
    ask(client)
    assert tokens.call_count == 3
    clock.advance(2.0)  # 541 s > 600 - 60
    ask(client)
    assert tokens.call_count == 4


def test_concurrent_refusals_of_one_token_cause_one_new_grant(key: Path) -> None:
    clock = FakeClock()
    server = TokenServer(clock)
    barrier = threading.Barrier(3, timeout=10)
    first = "tok-secret-1"

    def api(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == f"Bearer {first}":
            barrier.wait()  # all three threads are in flight with the same token
            return httpx.Response(403, json={"detail": "token expired"})
        return server.api(request)

    client = SFAPIClient(settings(key), clock=clock)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            ask(client)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    with respx.mock:
        tokens = respx.post(TOKEN).mock(side_effect=server.token)
        jobs = respx.get(JOBS).mock(side_effect=api)
        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert not errors and jobs.call_count == 6
    assert tokens.call_count == 2  # the first grant and ONE after the refusals


@respx.mock
def test_token_endpoint_refusal_backs_off_and_names_the_oauth_error(key: Path) -> None:
    clock = FakeClock()
    server = TokenServer(clock)
    server.refuse_with = "invalid_client"
    tokens = respx.post(TOKEN).mock(side_effect=server.token)
    jobs = respx.get(JOBS).mock(side_effect=server.api)
    client = SFAPIClient(settings(key, refusal_backoff=60.0), clock=clock)
    failures = []
    results: list[BaseException] = []

    def work() -> None:
        try:
            ask(client)
        except EdgeAPIError as exc:
            results.append(exc)

    threads = [threading.Thread(target=work) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    failures = [e for e in results if isinstance(e, EdgeAuthError)]
    assert len(failures) == 20 and tokens.call_count == 1 and jobs.call_count == 0
    assert all("invalid_client" in str(e) for e in failures)
    facts = client.credential()
    assert facts.kind == "sfapi-iris-key" and "invalid_client" in (facts.problem or "")
    assert len(facts.identity) == 13 and facts.expires_at is None
    clock.advance(59.0)
    with pytest.raises(EdgeAuthError):
        ask(client)
    assert tokens.call_count == 1  # still backing off: no request
    clock.advance(2.0)
    server.refuse_with = None
    assert ask(client)
    assert tokens.call_count == 2 and client.credential().problem is None


@respx.mock
def test_api_refusing_a_fresh_token_backs_off_too(key: Path) -> None:
    clock = FakeClock()
    server = TokenServer(clock)
    tokens = respx.post(TOKEN).mock(side_effect=server.token)
    jobs = respx.get(JOBS).mock(return_value=httpx.Response(401, json={"detail": "revoked"}))
    client = SFAPIClient(settings(key), clock=clock)
    with pytest.raises(EdgeAuthError) as info:
        ask(client)
    assert info.value.status == 401 and tokens.call_count == 2 and jobs.call_count == 2
    for _ in range(5):
        with pytest.raises(EdgeAuthError):
            ask(client)
    assert tokens.call_count == 2 and jobs.call_count == 2  # no network while refused
    assert "HTTP 401" in (client.credential().problem or "")


@respx.mock
def test_unreachable_or_failing_token_endpoint_is_transient_not_a_refusal(key: Path) -> None:
    clock = FakeClock()
    server = TokenServer(clock)
    tokens = respx.post(TOKEN).mock(
        side_effect=[
            httpx.ConnectError("refused"),
            httpx.Response(503, text="down"),
            httpx.Response(502, text="bad gateway"),
            server.token,
        ]
    )
    submit = respx.post(JOBS).mock(
        return_value=httpx.Response(200, json={"task_id": "9", "status": "OK", "error": None})
    )
    jobs = respx.get(JOBS).mock(side_effect=server.api)
    client = SFAPIClient(settings(key, policy=RetryPolicy(attempts=1)), clock=clock)
    with pytest.raises(EdgeNetworkError) as info:
        ask(client)
    assert "unreachable" in str(info.value) and not info.value.maybe_sent
    with pytest.raises(EdgeNetworkError) as info:
        client.submit(spec())
    # the submit itself was never sent: the submitter may simply try again
    assert not info.value.maybe_sent and "503" in str(info.value) and submit.call_count == 0
    assert client.credential().problem is None  # transient: no back-off
    with pytest.raises(EdgeNetworkError):
        ask(client)
    assert ask(client)
    assert tokens.call_count == 4 and jobs.call_count == 1


def test_credential_facts_stat_only_and_key_file_problems(
    key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    client = SFAPIClient(settings(key, key_check_seconds=5.0), clock=clock)
    facts = client.credential()
    client_id = key.read_text().split("\n", 1)[0]
    assert (facts.kind, facts.identity, facts.problem) == ("sfapi-iris-key", client_id, None)

    def no_read(path: str) -> None:
        raise AssertionError("the key must not be read again while it is cached")

    monkeypatch.setattr(sfapi_module, "_read_key", no_read)
    os.chmod(key, 0o644)
    assert client.credential().problem is None  # not checked again before 5 s
    clock.advance(5.0)
    problem = client.credential().problem or ""
    assert "mode 0644" in problem and "chmod 600" in problem
    os.chmod(key, 0o600)
    clock.advance(5.0)
    assert client.credential().problem is None
    os.unlink(key)
    clock.advance(5.0)
    assert "does not exist" in (client.credential().problem or "")
    assert client.credential().identity == client_id


def test_missing_or_foreign_key_file_is_a_problem_before_any_request(tmp_path: Path) -> None:
    missing = SFAPIClient(settings(tmp_path / "missing.pem"))
    assert "does not exist" in (missing.credential().problem or "")
    with pytest.raises(EdgeAuthError):
        ask(missing)
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not-a-client-id\nhello\n")
    bogus.chmod(0o600)
    facts = SFAPIClient(settings(bogus)).credential()
    assert "not an Iris client key" in (facts.problem or "") and "hello" not in facts.problem


def rotate(path: Path) -> str:
    """Replace the key file by a new key (new inode, like an editor or a deploy tool)."""
    new = path.with_name("new-key.pem")
    client_id, _ = make_client_key(new)
    os.replace(new, path)
    return client_id


@respx.mock
def test_a_rotated_key_file_is_picked_up_without_breaking_the_current_token(key: Path) -> None:
    clock = FakeClock()
    server = TokenServer(clock, lifetime=100.0)
    tokens = respx.post(TOKEN).mock(side_effect=server.token)
    respx.get(JOBS).mock(side_effect=server.api)
    client = SFAPIClient(settings(key, key_check_seconds=5.0), clock=clock)
    old_id = client.credential().identity
    ask(client)
    new_id = rotate(key)
    clock.advance(6.0)
    ask(client)  # the current token still serves
    assert tokens.call_count == 1 and client.credential().identity == new_id
    clock.advance(70.0)  # renewal due (75 s): the grant uses the new key
    ask(client)
    assert server.issuers == [old_id, new_id]


@respx.mock
def test_rotation_clears_the_refusal_back_off(key: Path) -> None:
    clock = FakeClock()
    server = TokenServer(clock)
    server.refuse_with = "invalid_client"
    tokens = respx.post(TOKEN).mock(side_effect=server.token)
    respx.get(JOBS).mock(side_effect=server.api)
    client = SFAPIClient(settings(key, key_check_seconds=5.0), clock=clock)
    with pytest.raises(EdgeAuthError):
        ask(client)
    server.refuse_with = None
    rotate(key)
    clock.advance(5.0)  # well inside the 60 s back-off
    assert ask(client) and tokens.call_count == 2


def test_settings_are_hashable_and_keyed_on_every_field(key: Path) -> None:
    a, b = settings(key), settings(key)
    assert hash(a) == hash(b) and a == b
    assert {a: 1}[b] == 1
    assert settings(key, refusal_backoff=30.0) != a
    assert settings(key, policy=RetryPolicy(deadline=5)) != a


@respx.mock
def test_no_secret_in_messages_logs_or_reprs(key: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    server = TokenServer(clock)
    respx.post(TOKEN).mock(side_effect=server.token)
    respx.get(JOBS).mock(return_value=httpx.Response(403, json={"detail": "no"}))
    client = SFAPIClient(settings(key), clock=clock)
    texts = [repr(client), repr(client.credentials), repr(client.settings), repr(client.transport)]
    for _ in range(2):
        with pytest.raises(EdgeAuthError) as info:
            ask(client)
        texts += [str(info.value), repr(info.value)]
    clock.advance(100.0)
    server.refuse_with = "invalid_grant"
    with pytest.raises(EdgeAuthError) as info:
        ask(client)
    assert "invalid_grant" in str(info.value) and "client is disabled" not in str(info.value)
    texts += [str(info.value), repr(client.credential()), caplog.text, repr(client.credentials)]
    pem_lines = [line for line in key.read_text().splitlines()[2:-1] if len(line) > 20]
    secrets = list(server.issued) + server.assertions + pem_lines
    assert secrets and len(server.assertions) == 3
    for text in texts:
        for secret in secrets:
            assert secret not in text
