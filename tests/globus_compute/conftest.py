"""A Globus Compute site for the plugin tests: the loopback GC web service
(``localsite.gc_service``) over the real Slurm cluster, a confidential client's secret file;
the SFAPI site's worker and template helpers serve unchanged."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harvester_edge.edge.health import GATE
from harvester_edge.facilities import gc_functions, gc_http
from harvester_edge.facilities.registry import forget_clients
from harvester_edge.localsite.gc_knobs import GCKnobs
from harvester_edge.localsite.gc_service import GCService, start_gc_service
from harvester_edge.localsite.slurm import LocalSlurm, default_slurm_conf
from harvester_edge.plugins import throttler as throttler_module
from harvester_edge.plugins.globus_compute import GCMonitor, GCSubmitter, GCSweeper
from harvester_edge.plugins.throttler import EdgeThrottler

from ..sfapi.conftest import QUEUE, TEST_OPTIONS, Site


class GCSite(Site):
    """The GC service in place of SFAPI's gateway; ``key`` is the client secret file."""

    gateway: GCService  # type: ignore[assignment]

    def config(self, **overrides: Any) -> dict[str, Any]:
        (self.root / "work").mkdir(exist_ok=True)
        conf: dict[str, Any] = {
            "queueName": QUEUE,
            "siteName": QUEUE,
            "endpointId": self.gateway.endpoint_id,
            "serviceUrl": self.gateway.url,
            "authUrl": self.gateway.auth_url,
            "clientId": self.gateway.client_id,
            "clientSecretFile": str(self.key),
            "userEndpointConfig": {"provider": "local"},
            "profile": "generic",
            "templateFile": str(self.template()),
            "remoteWorkDir": str(self.root / "work" / "${workerID}"),
            "accessPoint": str(self.root / "ap" / "${workerID}"),
            "walltimeSeconds": 600,
            **TEST_OPTIONS,
            "killConfirmSeconds": 5,
            "statusShareSeconds": 0,
        }
        conf.update(overrides)
        return conf

    def task_config(self, **overrides: Any) -> dict[str, Any]:
        """Task mode: pilots on Slurm blocks of a user endpoint, probes on the login node."""
        conf = self.config(
            mode="task",
            userEndpointConfig={"provider": "slurm", "walltime": "00:10:00"},
            probeEndpointConfig={"provider": "local"},
            markerDir=str(self.root / "work" / ".gc-tasks"),
        )
        conf.update(overrides)
        return conf

    def plugins(self, **overrides: Any) -> tuple[GCSubmitter, GCMonitor, GCSweeper]:  # type: ignore[override]
        conf = self.config(**overrides)
        return GCSubmitter(**conf), GCMonitor(**conf), GCSweeper(**conf)

    def task_plugins(self, **overrides: Any) -> tuple[GCSubmitter, GCMonitor, GCSweeper]:
        conf = self.task_config(**overrides)
        return GCSubmitter(**conf), GCMonitor(**conf), GCSweeper(**conf)

    def throttle(self, walltime: int = 600, **overrides: Any) -> tuple[bool, str]:
        section = {"module": "harvester_edge.plugins.globus_compute", "name": "GCSubmitter"}
        section.update(self.config(**overrides))
        queue = SimpleNamespace(queueName=QUEUE, submitter=section, walltimeLimit=walltime)
        return EdgeThrottler(queueName=QUEUE).to_be_throttled(queue)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSite]:
    root = tmp_path_factory.mktemp("gc-site")
    slurm = LocalSlurm(default_slurm_conf())
    svc = start_gc_service(slurm=slurm, work_dir=root / "endpoint", knobs=GCKnobs())
    key = root / "gc-client.secret"
    key.write_text(str(svc.client_secret) + "\n")
    os.chmod(key, 0o600)
    try:
        yield GCSite(svc, key, root)  # type: ignore[arg-type]
    finally:
        svc.stop()
        forget_clients()
        GATE.forget()
        if svc.jobs_created:
            try:
                slurm.scancel(list(svc.jobs_created))
            except (OSError, subprocess.SubprocessError):
                pass


@pytest.fixture(autouse=True)
def calm_site(site: GCSite, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts with a healthy service and fresh shared clients and caches."""
    calm = {"latency": 0, "error_rate": 0, "error_after_submit": 0, "hang": False,
            "endpoint_offline": False, "burst_429": 0}  # fmt: skip
    site.gateway.knobs.update(**calm)
    forget_clients()
    gc_functions.forget_functions()
    gc_http.forget_buckets()
    GATE.forget()
    monkeypatch.setattr(throttler_module, "_bindings", {})
    yield
    site.gateway.knobs.update(**calm)


def secret_path(site: GCSite) -> Path:
    return site.key
