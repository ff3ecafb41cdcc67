"""IRI: pilot credentials through the v2 filesystem routes (tasks) of the loopback gateway;
a deployment without them (OLCF's) refused clearly; a newer bearer token dropped in place is
used only after an authenticated request with it succeeded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harvester_edge.edge.health import GATE
from harvester_edge.facilities.registry import forget_clients
from harvester_edge.localsite.iri_gateway import IRIGateway
from harvester_edge.localsite.slurm import LocalSlurm, default_slurm_conf
from harvester_edge.plugins import throttler as throttler_module
from harvester_edge.plugins.credmanager import EdgeCredManager

from .conftest import SCAN, Clock, pilot_token, renewed_to, source_token, write_private


def gateway(tmp_path: Path, files: bool) -> IRIGateway:
    (tmp_path / "site").mkdir(exist_ok=True)
    return IRIGateway(
        resources=("perlmutter",), slurm=LocalSlurm(default_slurm_conf()),
        workdir=tmp_path / "site", file_roots=[tmp_path / "site"] if files else None,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(throttler_module, "_bindings", {})
    yield
    forget_clients()
    GATE.forget()


def manager(gw: IRIGateway, tmp_path: Path, store_key: Path, **extra: Any) -> EdgeCredManager:
    conf: dict[str, Any] = {
        "setup_name": "nersc_iri",
        "facility": {
            "module": "harvester_edge.plugins.iri", "name": "IRISubmitter",
            "apiUrl": gw.api_url("v2"), "resource": "perlmutter",
            "token": f"file:{tmp_path / 'iri.token'}",
            "connectTimeout": 2, "readTimeout": 5, "callDeadline": 20, "retryBackoff": 0.1,
        },
        "storeDir": str(tmp_path / "store"), "storeKeyFile": str(store_key),
        "pilotCredentials": pilot_token(tmp_path),
    }  # fmt: skip
    conf.update(extra)
    return EdgeCredManager(**conf)


def test_delivered_through_iri_filesystem_routes(
    tmp_path: Path, store_key: Path, clock: Clock
) -> None:
    with gateway(tmp_path, files=True) as gw:
        write_private(tmp_path / "iri.token", SCAN.secret(gw.issue_token("alice")))
        token = source_token(tmp_path, clock)
        cm = manager(gw, tmp_path, store_key)
        remote = renewed_to(cm, tmp_path, token)
        assert (remote.parent / ".harvester-edge").stat().st_mode & 0o777 == 0o700
        assert gw.counters["filesystem"] == 7 and gw.counters["task"] >= 7
        assert cm.check_credential() is True


def test_deployment_without_filesystem_routes(
    tmp_path: Path, store_key: Path, clock: Clock
) -> None:
    with gateway(tmp_path, files=False) as gw:
        write_private(tmp_path / "iri.token", SCAN.secret(gw.issue_token("alice")))
        source_token(tmp_path, clock)
        ok, message = manager(gw, tmp_path, store_key).renew_credential()
        assert not ok
        assert "does not serve the filesystem routes (HTTP 404)" in message
        assert "Globus Compute" in message
        assert not (tmp_path / "site" / "pilot" / "panda_token").exists()


def test_newer_bearer_token_used_after_an_authenticated_request(
    tmp_path: Path, store_key: Path, clock: Clock
) -> None:
    with gateway(tmp_path, files=False) as gw:
        current = tmp_path / "iri.token"
        write_private(current, SCAN.secret(gw.issue_token("alice", expires_in=60)))
        kwargs = {"pilotCredentials": []}
        forged = SCAN.secret("not-a-token-the-gateway-issued-0123")
        write_private(Path(str(current) + ".next"), forged)
        clock.t += 120  # the current token is past its life: renewal is due
        cm = manager(gw, tmp_path, store_key, **kwargs)
        ok, message = cm.renew_credential()
        SCAN.exception(message)
        assert not ok and "not accepted" in message and current.read_text().strip() != forged
        newer = SCAN.secret(gw.issue_token("alice", expires_in=86400 * 30))
        write_private(Path(str(current) + ".next"), newer)
        ok, message = manager(gw, tmp_path, store_key, **kwargs).renew_credential()
        assert ok, message
        assert current.read_text().strip() == newer
        assert not Path(str(current) + ".next").exists()


def test_globus_grant_renewed_before_expiry(
    tmp_path: Path, store_key: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import responses

    monkeypatch.setenv("HEDGE_TEST_GLOBUS_SECRET", SCAN.secret("globus-client-secret-value-42"))
    with gateway(tmp_path, files=False) as gw, responses.RequestsMock() as auth:
        minted: list[str] = []

        def token_endpoint(request: Any) -> tuple[int, dict[str, str], str]:
            assert "globus-client-secret-value-42" not in str(request.body)  # basic auth
            minted.append(SCAN.secret(gw.issue_token("svc")))
            answer = {
                "access_token": minted[-1], "token_type": "Bearer", "scope": "iri:compute",
                "resource_server": "iri", "other_tokens": [],
                "expires_in": int(clock.t + 3600 - time.time()),  # on the test's clock
            }  # fmt: skip
            return 200, {"Content-Type": "application/json"}, json.dumps(answer)

        auth.add_callback(
            responses.POST, "https://auth.globus.org/v2/oauth2/token", callback=token_endpoint
        )
        token_file = tmp_path / "iri.token"
        write_private(token_file, SCAN.secret(gw.issue_token("alice")))
        kwargs = {
            "pilotCredentials": [],
            "globusClientId": "5b1a1f2e-0000-4000-8000-000000000001",
            "globusClientSecret": "env:HEDGE_TEST_GLOBUS_SECRET",
            "globusScope": "iri:compute",
        }
        start = clock.t
        cm = manager(gw, tmp_path, store_key, **kwargs)
        assert cm.check_credential() is False  # not minted here yet
        ok, message = cm.renew_credential()
        assert ok, message
        assert token_file.read_text().strip() == minted[0]
        assert token_file.stat().st_mode & 0o777 == 0o600
        support = cm.keeper().support()
        assert support is not None and support.client.resource_id()  # the minted token works

        clock.t = start + 0.2 * 3600  # 80 % left: kept
        assert manager(gw, tmp_path, store_key, **kwargs).check_credential() is True
        clock.t = start + 0.9 * 3600  # 10 % left: a new grant
        cm = manager(gw, tmp_path, store_key, **kwargs)
        assert cm.check_credential() is False
        ok, message = cm.renew_credential()
        assert ok and len(minted) == 2 and token_file.read_text().strip() == minted[1]
        assert cm.check_credential() is True

        auth.replace(
            responses.POST, "https://auth.globus.org/v2/oauth2/token", status=401,
            json={"error": "invalid_client", "errors": [{"code": "UNAUTHORIZED"}]},
        )  # fmt: skip
        clock.t = start + 1.85 * 3600
        ok, message = manager(gw, tmp_path, store_key, **kwargs).renew_credential()
        SCAN.exception(message)
        assert not ok and "Globus Auth refused client" in message
        assert "stays in use, valid until" in message
        assert token_file.read_text().strip() == minted[1]


def test_iri_filesystem_confined_to_roots(tmp_path: Path, store_key: Path, clock: Clock) -> None:
    from harvester_edge.credentials.delivery import DeliveryError
    from harvester_edge.credentials.remote import IRIChannel
    from harvester_edge.plugins.iri import IRIBinding

    with gateway(tmp_path, files=True) as gw:
        write_private(tmp_path / "iri.token", SCAN.secret(gw.issue_token("alice")))
        section = manager(gw, tmp_path, store_key).keeper().options.facility
        client = IRIBinding(
            {k: v for k, v in section.items() if k not in ("module", "name")}, "t"
        ).client()
        outside = tmp_path / "elsewhere" / "tok"
        with pytest.raises(DeliveryError, match="outside the allowed directories"):
            IRIChannel(client).deliver(str(outside), b"data-1234567", setup="s", name="n")
        assert not outside.parent.exists()
