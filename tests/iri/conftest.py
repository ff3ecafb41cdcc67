"""A DOE IRI site for the plugin tests: the loopback IRI gateway over the real Slurm cluster
(v1 and v2 on one server) and a bearer token file; the SFAPI site's worker and template
helpers serve unchanged.

Every test runs once per API version (the ``version`` fixture); a test about one version
only parametrises ``version`` itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harvester_edge.edge import limits, watch
from harvester_edge.edge.health import GATE
from harvester_edge.facilities.registry import forget_clients
from harvester_edge.localsite.faults import Knobs
from harvester_edge.localsite.iri_gateway import IRIGateway
from harvester_edge.localsite.slurm import LocalSlurm, default_slurm_conf
from harvester_edge.plugins import throttler as throttler_module
from harvester_edge.plugins.iri import IRIMonitor, IRISubmitter, IRISweeper

from ..sfapi.conftest import Site, cancel_created, write_private

RESOURCE = "perlmutter"


class IRISite(Site):
    """The IRI gateway in place of SFAPI's; ``key`` is the bearer token file and
    ``version`` the API version the plugins are configured for (set per test)."""

    gateway: IRIGateway  # type: ignore[assignment]
    version = "v2"
    plugin_module = "harvester_edge.plugins.iri"
    plugin_classes = (IRISubmitter, IRIMonitor, IRISweeper)

    def service_config(self) -> dict[str, Any]:
        return {
            "apiUrl": self.gateway.api_url(self.version),
            "resource": RESOURCE,
            "token": f"file:{self.key}",
            "walltimeSeconds": 600,
        }

    def write_token(self, gateway: IRIGateway | None = None, path: Path | None = None) -> Path:
        """A fresh token of ``gateway`` (default: the site's) in ``path`` (default: ``key``)."""
        return write_private(path or self.key, (gateway or self.gateway).issue_token("harvester"))


def reset_shared_state() -> None:
    """Shared clients, health cache, submit limits and the orphan watch of earlier tests."""
    forget_clients()
    GATE.forget()
    limits.LIMITS.forget()
    watch.WATCH.forget()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IRISite]:
    root = tmp_path_factory.mktemp("iri-site")
    slurm = LocalSlurm(default_slurm_conf())
    knobs = Knobs(expired_token_status=401, token_lifetime=30 * 86400)
    gw = IRIGateway(slurm=slurm, knobs=knobs, workdir=root, resources=(RESOURCE, "frontier"))
    with gw:
        s = IRISite(gw, root / "iri.token", root)  # type: ignore[arg-type]
        s.write_token()
        yield s
    reset_shared_state()
    cancel_created(slurm, gw.jobs_created)


@pytest.fixture(params=["v1", "v2"])
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def calm_site(site: IRISite, version: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts with a healthy site on its API version and fresh shared state."""
    site.version = version
    site.gateway.knobs.update(
        latency=0, error_rate=0, error_after_submit=0, post_timeout=0, hang=False,
        drop_rate=0, drop_after_submit=0, submit_delay=0, error_paths=[],
        machine_status="active", resource_status={}, incidents=[],
    )  # fmt: skip
    reset_shared_state()
    monkeypatch.setattr(throttler_module, "_bindings", {})
    site.gateway.reset_counters()
    yield
    site.gateway.knobs.update(
        hang=False, error_rate=0, error_after_submit=0, resource_status={}, incidents=[]
    )
