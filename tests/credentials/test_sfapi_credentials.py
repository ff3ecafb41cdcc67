"""SFAPI: the Iris client's own expiry (warned before, refused after, the date named), access
tokens minted on the shared client, and pilot credentials delivered through the loopback
gateway's upload and command utilities: 0600, atomic, read back."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harvester_edge.credentials.remote import SFAPIChannel
from harvester_edge.edge.health import GATE
from harvester_edge.facilities.registry import forget_clients
from harvester_edge.localsite.sfapi_gateway import SFAPIGateway, make_client_key
from harvester_edge.plugins import throttler as throttler_module
from harvester_edge.plugins.credmanager import EdgeCredManager
from harvester_edge.plugins.sfapi import SFAPIBinding
from harvester_edge.plugins.throttler import EdgeThrottler

from .conftest import SCAN, Clock, make_jwt, reading, write_private

DAY = 86400.0


class Site(SimpleNamespace):
    gateway: SFAPIGateway
    key: Path
    root: Path

    def facility(self, **extra: Any) -> dict[str, Any]:
        section = {
            "module": "harvester_edge.plugins.sfapi", "name": "SFAPISubmitter",
            "machine": "perlmutter", "apiUrl": self.gateway.api_url,
            "tokenUrl": self.gateway.token_url, "keyFile": str(self.key),
            "connectTimeout": 2, "readTimeout": 5, "callDeadline": 20, "retryBackoff": 0.1,
        }  # fmt: skip
        section.update(extra)
        return section

    def manager(self, setup: str, store_key: Path, **extra: Any) -> EdgeCredManager:
        conf: dict[str, Any] = {
            "setup_name": setup,
            "facility": self.facility(),
            "storeDir": str(self.root / "store"),
            "storeKeyFile": str(store_key),
            "pilotCredentials": [
                {"name": "panda_token", "source": str(self.root / "src" / setup),
                 "remotePath": str(self.root / "site" / "pilot" / setup / "panda_token")}
            ],
        }  # fmt: skip
        conf.update(extra)
        return EdgeCredManager(**conf)


@pytest.fixture
def sfapi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    key = tmp_path / "iris.pem"
    client_id, public = make_client_key(key)
    SCAN.secret(key.read_text().partition("\n")[2])
    (tmp_path / "site").mkdir()
    gateway = SFAPIGateway(workdir=tmp_path / "site", file_roots=[tmp_path / "site"])
    gateway.register_client(client_id, public)
    monkeypatch.setattr(throttler_module, "_bindings", {})
    with gateway:
        yield Site(gateway=gateway, key=key, root=tmp_path)
    forget_clients()
    GATE.forget()


def test_delivered_through_sfapi_upload(sfapi: Site, store_key: Path, clock: Clock) -> None:
    token = make_jwt(clock.t, clock.t + 6 * 3600)
    write_private(sfapi.root / "src" / "queueA", token)
    cm = sfapi.manager("queueA", store_key)
    assert cm.check_credential() is False
    ok, message = cm.renew_credential()
    assert ok, message
    remote = sfapi.root / "site" / "pilot" / "queueA" / "panda_token"
    assert remote.read_text() == token
    assert remote.stat().st_mode & 0o777 == 0o600
    staging = remote.parent / ".harvester-edge"
    assert staging.stat().st_mode & 0o777 == 0o700 and not list(staging.iterdir())
    assert cm.check_credential() is True
    counts = sfapi.gateway.counters
    assert counts["utilities"] >= 3 and counts["command"] == 4  # upload, download, ls


def test_reader_never_sees_partial_file(sfapi: Site) -> None:
    client = SFAPIBinding(sfapi.facility(), "test").client()
    channel = SFAPIChannel(client)
    dest = sfapi.root / "site" / "pilot" / "r" / "tok"
    contents = [b"x" * 200000, b"y" * 7, b"z" * 50000]
    channel.deliver(str(dest), contents[0], setup="r", name="tok")
    with reading(dest) as seen:
        for i in range(6):
            receipt = channel.deliver(str(dest), contents[i % 3], setup="r", name="tok")
            assert receipt.mode == "0600"
    assert len(seen) > 10 and all(s in contents for s in seen)


def test_access_token_minted_on_the_shared_client(sfapi: Site, store_key: Path) -> None:
    cm = sfapi.manager("queueA", store_key, pilotCredentials=[])
    support = cm.keeper().support()
    assert support is not None
    ok, message = support.renew(time.time())
    assert ok and "access token minted" in message
    shared = SFAPIBinding(sfapi.facility(), "SFAPISubmitter").client()
    assert shared is support.client and shared.credentials.grant_count == 1
    assert cm.keeper().audit.entries()[-1]["credential"] == "sfapi-access-token"


def test_expired_client_names_the_date(sfapi: Site, store_key: Path) -> None:
    cm = sfapi.manager(
        "queueA", store_key, pilotCredentials=[],
        facility=sfapi.facility(clientExpires="2026-01-15T00:00:00Z"),
    )  # fmt: skip
    assert cm.check_credential() is False
    ok, message = cm.renew_credential()
    SCAN.exception(message)
    assert not ok
    assert "expired on 2026-01-15 00:00 UTC" in message
    assert "make a new client in Iris" in message and str(sfapi.key) in message
    assert sfapi.gateway.counters.get("token", 0) == 0  # nothing was asked of NERSC
    # the throttler reads the same facts: no new workers
    section = sfapi.facility(clientExpires="2026-01-15T00:00:00Z")
    queue = SimpleNamespace(queueName="queueA", submitter=section, walltimeLimit=600)
    throttled, reason = EdgeThrottler(queueName="queueA").to_be_throttled(queue)
    assert throttled and "expired on 2026-01-15" in reason


def test_client_expiry_by_time_travel(
    sfapi: Site, store_key: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.t + 3 * DAY))
    facility = sfapi.facility(clientExpires=expires)
    kwargs = {"pilotCredentials": [], "facility": facility, "warnDays": 7}
    with caplog.at_level(logging.WARNING):
        assert sfapi.manager("queueA", store_key, **kwargs).check_credential() is True
    assert any("expires on" in r.getMessage() and "Iris" in r.getMessage() for r in caplog.records)
    clock.t += 4 * DAY
    cm = sfapi.manager("queueA", store_key, **kwargs)
    assert cm.check_credential() is False
    ok, message = cm.renew_credential()
    assert not ok and f"expired on {expires[:10]}" in message
    assert cm.check_credential_lifetime() is not None and cm.check_credential_lifetime() < 0


def test_queue_a_cannot_use_queue_b_remote_path(sfapi: Site, store_key: Path, clock: Clock) -> None:
    write_private(sfapi.root / "src" / "queueB", make_jwt(clock.t, clock.t + 3600))
    b = sfapi.manager("queueB", store_key)
    assert b.renew_credential()[0]
    b_remote = sfapi.root / "site" / "pilot" / "queueB" / "panda_token"
    write_private(sfapi.root / "src" / "queueA", make_jwt(clock.t, clock.t + 3600))
    a = sfapi.manager(
        "queueA", store_key,
        pilotCredentials=[{"name": "panda_token", "source": str(sfapi.root / "src" / "queueA"),
                           "remotePath": str(b_remote)}],
    )  # fmt: skip
    before = b_remote.read_bytes()
    ok, message = a.renew_credential()
    assert not ok and "belongs to setup queueB" in message
    assert b_remote.read_bytes() == before
    assert "panda_token" not in a.keeper().store().load()  # A's store never saw B's


def test_key_file_mode_and_validity(sfapi: Site, store_key: Path) -> None:
    sfapi.key.chmod(0o644)
    cm = sfapi.manager("queueA", store_key, pilotCredentials=[])
    assert cm.check_credential() is False
    ok, message = cm.renew_credential()
    assert not ok and f"chmod 600 {sfapi.key}" in message
    forget_clients()
    sfapi.key.write_text("not-an-iris-client-key\n")
    sfapi.key.chmod(0o600)
    ok, message = sfapi.manager("queueA", store_key, pilotCredentials=[]).renew_credential()
    assert not ok and "is not an Iris client key" in message


def test_throttler_reads_pilot_credential_facts(sfapi: Site, store_key: Path) -> None:
    """A queue whose pilots would find no credential, or one about to expire, makes no new
    workers; a fresh one lets it run."""
    from harvester_edge.credentials import facts

    facts.forget()
    section = sfapi.facility()
    queue = SimpleNamespace(queueName="queueA", submitter=section, walltimeLimit=600)
    throttle = EdgeThrottler(queueName="queueA")
    assert throttle.to_be_throttled(queue) == (False, "")  # nobody published: no opinion
    now = time.time()
    write_private(sfapi.root / "src" / "queueA", make_jwt(now, now + 1800))
    cm = sfapi.manager("queueA", store_key, queueName="queueA")
    assert cm.check_credential() is False
    throttled, reason = throttle.to_be_throttled(queue)
    assert throttled and "pilot credential panda_token: not delivered" in reason
    assert cm.renew_credential()[0]
    throttled, reason = throttle.to_be_throttled(queue)  # 30 min left < 1 h margin
    assert throttled and "pilot credential panda_token sha256:" in reason and "expires" in reason
    write_private(sfapi.root / "src" / "queueA", make_jwt(now, now + 10 * 3600))
    assert sfapi.manager("queueA", store_key, queueName="queueA").renew_credential()[0]
    assert throttle.to_be_throttled(queue) == (False, "")
    facts.forget()
