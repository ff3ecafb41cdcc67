"""An S3M site for the plugin tests: the loopback S3M gateway over the real Slurm cluster and
a project token file; the SFAPI site's worker and template helpers serve unchanged."""

from __future__ import annotations

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
from harvester_edge.plugins.s3m import S3MMonitor, S3MSubmitter, S3MSweeper

from ..sfapi.conftest import Site, cancel_created, write_private

RESOURCE = "defiant"


class S3MSite(Site):
    """The S3M gateway in place of SFAPI's; ``key`` is the project token file."""

    gateway: S3MGateway  # type: ignore[assignment]
    plugin_module = "harvester_edge.plugins.s3m"
    plugin_classes = (S3MSubmitter, S3MMonitor, S3MSweeper)

    def service_config(self) -> dict[str, Any]:
        return {
            "apiUrl": self.gateway.base_url,
            "resource": RESOURCE,
            "apiVersion": "v0.0.43",
            "token": f"file:{self.key}",
            "account": self.gateway.project,
            "walltimeSeconds": 600,
        }

    def write_token(self, **issue: Any) -> str:
        token = self.gateway.issue_token(**issue)
        write_private(self.key, token)
        return token


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3MSite]:
    root = tmp_path_factory.mktemp("s3m-site")
    slurm = LocalSlurm(default_slurm_conf())
    gw = S3MGateway(slurm=slurm, knobs=Knobs(token_lifetime=30 * 86400), workdir=root)
    with gw:
        s = S3MSite(gw, root / "defiant.token", root)  # type: ignore[arg-type]
        s.write_token()
        yield s
    forget_clients()
    GATE.forget()
    cancel_created(slurm, gw.jobs_created)


@pytest.fixture(autouse=True)
def calm_site(site: S3MSite, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts with a healthy site, a fresh token and fresh shared clients."""
    site.gateway.knobs.update(
        latency=0, error_rate=0, error_after_submit=0, post_timeout=0, hang=False,
        machine_status="active", downtimes=[],
    )  # fmt: skip
    site.write_token()
    forget_clients()
    GATE.forget()
    monkeypatch.setattr(throttler_module, "_bindings", {})
    yield
    site.gateway.knobs.update(hang=False, error_rate=0, downtimes=[], machine_status="active")


def token_path(site: S3MSite) -> Path:
    return site.key
