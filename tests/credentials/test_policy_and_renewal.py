"""Lifetime policy by time travel (lifecycle.now moved, never slept), through the whole
manager with the local channel: 80 % left is kept, 10 % left is renewed, a failed renewal
keeps the delivered credential and says until when."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from harvester_edge.credentials import delivery
from harvester_edge.credentials.policy import LifetimePolicy
from harvester_edge.plugins.credmanager import EdgeCredManager

from .conftest import Clock, make_jwt, refused_again, write_private

HOUR = 3600.0


def manager(tmp_path: Path, store_key: Path, **extra: Any) -> EdgeCredManager:
    conf: dict[str, Any] = {
        "setup_name": "queueA",
        "channel": "local",
        "storeDir": str(tmp_path / "store"),
        "storeKeyFile": str(store_key),
        "pilotCredentials": [
            {
                "name": "panda_token",
                "source": str(tmp_path / "src" / "panda_token"),
                "remotePath": str(tmp_path / "site" / "queueA" / "panda_token"),
            }
        ],
    }
    conf.update(extra)
    return EdgeCredManager(**conf)


def test_policy_fraction_left() -> None:
    policy = LifetimePolicy(renew_fraction=0.25, min_left=0)
    assert not policy.due(0, 100, 20)  # 80 % left
    assert policy.due(0, 100, 90)  # 10 % left
    assert not policy.due(0, None, 1e12)


def test_time_travel_80_kept_10_renewed(tmp_path: Path, store_key: Path, clock: Clock) -> None:
    start = clock.t
    src = tmp_path / "src" / "panda_token"
    first = make_jwt(start, start + 10 * HOUR)
    write_private(src, first)
    cm = manager(tmp_path, store_key)
    assert cm.check_credential() is False  # nothing delivered yet
    ok, message = cm.renew_credential()
    assert ok, message
    remote = tmp_path / "site" / "queueA" / "panda_token"
    assert remote.read_text() == first
    assert remote.stat().st_mode & 0o777 == 0o600

    clock.t = start + 2 * HOUR  # 80 % of the lifetime left
    assert EdgeCredManager(**cm._kwargs).check_credential() is True

    clock.t = start + 9 * HOUR  # 10 % left
    cm = EdgeCredManager(**cm._kwargs)  # per-queue managers are rebuilt every cycle
    assert cm.check_credential() is False
    second = make_jwt(start + 8 * HOUR, start + 18 * HOUR)
    write_private(src, second)
    ok, message = cm.renew_credential()
    assert ok, message
    assert remote.read_text() == second
    assert cm.check_credential() is True
    hours = cm.check_credential_lifetime()
    assert hours is not None and abs(hours - 9.0) < 0.01
    kinds = [e["kind"] for e in cm.keeper().audit.entries()]
    assert kinds == ["deliver", "verify", "issue", "deliver", "verify", "renew"]


def test_failed_renewal_keeps_old_and_says_until_when(
    tmp_path: Path, store_key: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = clock.t
    token = make_jwt(start, start + 10 * HOUR)
    write_private(tmp_path / "src" / "panda_token", token)
    cm = manager(tmp_path, store_key)
    assert cm.renew_credential()[0]
    clock.t = start + 9.5 * HOUR  # due, but the source was not renewed by its manager
    message = refused_again(cm)
    assert "has not renewed it yet" in message
    assert "stays in place, valid until" in message
    assert (tmp_path / "site" / "queueA" / "panda_token").read_text() == token

    # the delivery itself fails (the facility's disk is full): the old file stays
    write_private(tmp_path / "src" / "panda_token", make_jwt(start + 9 * HOUR, start + 19 * HOUR))

    def full(path: str, data: bytes, mode: int = 0o600) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(delivery.files, "atomic_write", full)
    ok, message = EdgeCredManager(**cm._kwargs).renew_credential()
    assert not ok
    assert "No space left on device" in message
    assert "stays in place, valid until" in message
    assert (tmp_path / "site" / "queueA" / "panda_token").read_text() == token
    assert cm.keeper().audit.entries()[-1]["ok"] is False


def test_audit_lines_hold_no_secret(tmp_path: Path, store_key: Path, clock: Clock) -> None:
    token = make_jwt(clock.t, clock.t + HOUR)
    write_private(tmp_path / "src" / "panda_token", token)
    cm = manager(tmp_path, store_key)
    assert cm.renew_credential()[0]
    text = Path(cm.keeper().audit.path).read_text()
    assert token not in text
    for line in cm.keeper().audit.entries():
        assert set(line) == {
            "time", "setup", "kind", "credential", "expires", "fingerprint", "ok", "detail"
        }  # fmt: skip
        assert line["setup"] == "queueA" and line["fingerprint"].startswith("sha256:")
    assert "s3cr" not in repr(cm) and token not in repr(cm.keeper())
