"""A DOE IRI site for the plugin tests: the loopback IRI gateway over the real Slurm cluster
(v1 and v2 on one server) and a bearer token file; the SFAPI site's worker and template
helpers serve unchanged.

Every test runs once per API version (the ``version`` fixture); a test about one version
only parametrises ``version`` itself.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
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
from harvester_edge.plugins.throttler import EdgeThrottler

from ..sfapi.conftest import QUEUE, Site

RESOURCE = "perlmutter"


class IRISite(Site):
    """The IRI gateway in place of SFAPI's; ``key`` is the bearer token file and
    ``version`` the API version the plugins are configured for (set per test)."""

    gateway: IRIGateway  # type: ignore[assignment]
    version = "v2"

    def config(self, **overrides: Any) -> dict[str, Any]:
        # the job starts in the fixed part of remoteWorkDir (submit_dir): it must exist
        (self.root / "work").mkdir(exist_ok=True)
        conf: dict[str, Any] = {
            "queueName": QUEUE,
            "siteName": QUEUE,
            "apiUrl": self.gateway.api_url(self.version),
            "resource": RESOURCE,
            "token": f"file:{self.key}",
            "profile": "generic",
            "templateFile": str(self.template()),
            "remoteWorkDir": str(self.root / "work" / "${workerID}"),
            "accessPoint": str(self.root / "ap" / "${workerID}"),
            "walltimeSeconds": 600,
            "connectTimeout": 2,
            "readTimeout": 5,
            "callDeadline": 20,
            "retryBackoff": 0.1,
            "healthCacheSeconds": 0.2,
            "missingGraceSeconds": 30,
            "killConfirmSeconds": 20,
        }
        conf.update(overrides)
        return conf

    def plugins(self, **overrides: Any) -> tuple[IRISubmitter, IRIMonitor, IRISweeper]:  # type: ignore[override]
        conf = self.config(**overrides)
        return IRISubmitter(**conf), IRIMonitor(**conf), IRISweeper(**conf)

    def throttle(self, walltime: int = 600, **overrides: Any) -> tuple[bool, str]:
        """The throttler as the WorkerAdjuster calls it, on this queue's submitter section."""
        section = {"module": "harvester_edge.plugins.iri", "name": "IRISubmitter"}
        section.update(self.config(**overrides))
        queue = SimpleNamespace(queueName=QUEUE, submitter=section, walltimeLimit=walltime)
        return EdgeThrottler(queueName=QUEUE).to_be_throttled(queue)

    def write_token(self, gateway: IRIGateway | None = None, path: Path | None = None) -> Path:
        """A fresh token of ``gateway`` (default: the site's) in ``path`` (default: ``key``)."""
        path = path or self.key
        path.write_text((gateway or self.gateway).issue_token("harvester") + "\n")
        os.chmod(path, 0o600)
        return path


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
    if gw.jobs_created:
        try:
            slurm.scancel(gw.jobs_created)
        except (OSError, subprocess.SubprocessError):
            pass


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
