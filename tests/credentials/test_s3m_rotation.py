"""S3M: the project token's expiry comes from introspection; an expiring token is replaced
by a newer one the operator dropped in place, only after S3M's introspection accepted it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harvester_edge.edge.health import GATE
from harvester_edge.facilities.registry import forget_clients
from harvester_edge.localsite.faults import Knobs
from harvester_edge.localsite.s3m_gateway import S3MGateway
from harvester_edge.localsite.slurm import LocalSlurm, default_slurm_conf
from harvester_edge.plugins import throttler as throttler_module
from harvester_edge.plugins.credmanager import EdgeCredManager

from .conftest import SCAN, write_private

DAY = 86400.0


@pytest.fixture
def s3m(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3MGateway]:
    gw = S3MGateway(
        slurm=LocalSlurm(default_slurm_conf()), knobs=Knobs(token_lifetime=30 * DAY),
        workdir=tmp_path,
    )  # fmt: skip
    monkeypatch.setattr(throttler_module, "_bindings", {})
    with gw:
        yield gw
    forget_clients()
    GATE.forget()


def manager(gw: S3MGateway, tmp_path: Path, store_key: Path) -> EdgeCredManager:
    facility: dict[str, Any] = {
        "module": "harvester_edge.plugins.s3m", "name": "S3MSubmitter",
        "apiUrl": gw.base_url, "resource": "defiant", "apiVersion": "v0.0.43",
        "token": f"file:{tmp_path / 'defiant.token'}", "account": gw.project,
        "connectTimeout": 2, "readTimeout": 5, "callDeadline": 20, "retryBackoff": 0.1,
    }  # fmt: skip
    return EdgeCredManager(
        setup_name="defiant", facility=facility, warnDays=7,
        storeDir=str(tmp_path / "store"), storeKeyFile=str(store_key),
    )  # fmt: skip


def token(gw: S3MGateway, path: Path, days: float) -> str:
    value = SCAN.secret(gw.issue_token(expires_in=days * DAY))
    write_private(path, value + "\n")
    return value


def test_expiring_token_replaced_by_verified_newer_one(
    s3m: S3MGateway, tmp_path: Path, store_key: Path
) -> None:
    current = tmp_path / "defiant.token"
    token(s3m, current, days=2)
    cm = manager(s3m, tmp_path, store_key)
    assert cm.check_credential() is False  # introspection says: 2 days left, warnDays 7
    hours = cm.check_credential_lifetime()
    assert hours is not None and 47 < hours <= 48

    ok, message = cm.renew_credential()  # nothing dropped in place yet
    assert not ok and "no newer S3M project token at" in message and "stays in use" in message

    newer = token(s3m, Path(str(current) + ".next"), days=30)
    before = s3m.counters["introspect"]
    ok, message = manager(s3m, tmp_path, store_key).renew_credential()
    assert ok, message
    assert "rotated" in message
    assert s3m.counters["introspect"] > before  # verified by S3M before use
    assert current.read_text().strip() == newer
    assert current.stat().st_mode & 0o777 == 0o600
    assert not Path(str(current) + ".next").exists()
    kinds = [(e["kind"], e["ok"]) for e in cm.keeper().audit.entries()]
    assert ("verify", True) in kinds and ("renew", True) in kinds
    forget_clients()
    cm = manager(s3m, tmp_path, store_key)
    assert cm.check_credential() is True
    hours = cm.check_credential_lifetime()
    assert hours is not None and hours > 29 * 24


def test_unverifiable_newer_token_is_not_used(
    s3m: S3MGateway, tmp_path: Path, store_key: Path
) -> None:
    current = tmp_path / "defiant.token"
    old = token(s3m, current, days=2)
    next_file = Path(str(current) + ".next")
    forged = old[:-6] + ("AAAAAA" if not old.endswith("AAAAAA") else "BBBBBB")
    write_private(next_file, SCAN.secret(forged))
    ok, message = manager(s3m, tmp_path, store_key).renew_credential()
    SCAN.exception(message)
    assert not ok
    assert "not accepted" in message and "stays in use, valid until" in message
    assert current.read_text().strip() == old and not next_file.exists()
    assert Path(str(next_file) + ".rejected").exists()  # set aside: the check stops asking


def test_no_file_api_for_pilots(s3m: S3MGateway, tmp_path: Path, store_key: Path) -> None:
    token(s3m, tmp_path / "defiant.token", days=20)
    write_private(tmp_path / "src" / "tok", SCAN.secret("opaque-pilot-token-123456"))
    cm = manager(s3m, tmp_path, store_key)
    kwargs = dict(cm._kwargs)
    kwargs["pilotCredentials"] = [
        {"name": "tok", "source": str(tmp_path / "src" / "tok"), "remotePath": "/ccs/x/tok"}
    ]
    ok, message = EdgeCredManager(**kwargs).renew_credential()
    assert not ok and "S3M has no file API" in message
    assert "through IRI or Globus Compute" in message
    assert not os.path.exists("/ccs/x/tok")
