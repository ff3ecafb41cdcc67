"""An SFAPI site for the plugin tests: the loopback gateway over the real Slurm cluster,
an Iris-style key, and helpers that drive the plugins the way Harvester's agents do."""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harvester_edge.edge.health import GATE
from harvester_edge.facilities.registry import forget_clients
from harvester_edge.harvester import WorkSpec
from harvester_edge.localsite.faults import Knobs
from harvester_edge.localsite.sfapi_gateway import SFAPIGateway, make_client_key
from harvester_edge.localsite.slurm import LocalSlurm, default_slurm_conf
from harvester_edge.plugins.sfapi import SFAPIMonitor, SFAPISubmitter, SFAPISweeper
from harvester_edge.plugins.throttler import EdgeThrottler

QUEUE = "TEST_SFAPI"
_worker_ids = itertools.count(1)

# An operator's own template, stock style: a control file per worker decides what the job does.
TEMPLATE = """#!/bin/bash
#SBATCH --job-name={jobName}
#SBATCH --nodes={nNode}
#SBATCH --time=10
#SBATCH --output=CTLDIR/slurm-%j.out
EXTRA
mkdir -p {accessPoint}
echo {computingSite} > {accessPoint}/site.txt
ctl=CTLDIR/{workerID}
if [ -f "$ctl" ]; then . "$ctl"; fi
"""
#: the plugin options of every site's tests (SFAPI, S3M, IRI): short timeouts and a short
#: health cache, grace periods the tests wait out
TEST_OPTIONS: dict[str, Any] = {
    "connectTimeout": 2,
    "readTimeout": 5,
    "callDeadline": 20,
    "retryBackoff": 0.1,
    "healthCacheSeconds": 0.2,
    "missingGraceSeconds": 30,
    "killConfirmSeconds": 20,
}


def write_private(path: Path, text: str) -> Path:
    """``text`` and a newline in ``path``, mode 0600 (a key or token file, as clients want)."""
    path.write_text(text + "\n")
    os.chmod(path, 0o600)
    return path


def cancel_created(slurm: LocalSlurm, job_ids: Iterable[str]) -> None:
    """Cancel the jobs a site's gateway made (after its module; a failure is not a test's)."""
    ids = list(job_ids)
    if ids:
        try:
            slurm.scancel(ids)
        except (OSError, subprocess.SubprocessError):
            pass


class Site:
    """The gateway plus what tests need to build plugins and workers against it.

    The S3M and IRI sites (``tests/s3m``, ``tests/iri``) are subclasses: each names its
    plugins (``plugin_module``, ``plugin_classes``) and its service's keys
    (``service_config``); the rest of the queue config (``config``), ``plugins`` and
    ``throttle`` serve them all."""

    plugin_module = "harvester_edge.plugins.sfapi"
    plugin_classes: tuple[type, type, type] = (SFAPISubmitter, SFAPIMonitor, SFAPISweeper)

    def __init__(self, gateway: SFAPIGateway, key: Path, root: Path):
        self.gateway = gateway
        self.key = key
        self.root = root
        self.ctl = root / "ctl"
        self.ctl.mkdir()
        self.slurm = gateway.slurm

    def template(self, extra: str = "") -> Path:
        path = self.root / f"template-{abs(hash(extra))}.sh"
        path.write_text(TEMPLATE.replace("CTLDIR", str(self.ctl)).replace("EXTRA", extra))
        return path

    def service_config(self) -> dict[str, Any]:
        """The keys that point the plugins at this site's service."""
        return {
            "apiUrl": self.gateway.api_url,
            "tokenUrl": self.gateway.token_url,
            "keyFile": str(self.key),
            "machine": "perlmutter",
            "chunkSize": 200,
        }

    def config(self, **overrides: Any) -> dict[str, Any]:
        # the fixed part of remoteWorkDir exists at a site: the batch log goes there (and
        # S3M and IRI start the job in it)
        (self.root / "work").mkdir(exist_ok=True)
        conf: dict[str, Any] = {
            "queueName": QUEUE,
            "siteName": QUEUE,
            **self.service_config(),
            "profile": "generic",
            "templateFile": str(self.template()),
            "remoteWorkDir": str(self.root / "work" / "${workerID}"),
            "accessPoint": str(self.root / "ap" / "${workerID}"),
            **TEST_OPTIONS,
        }
        conf.update(overrides)
        return conf

    def plugins(self, **overrides: Any) -> tuple[Any, Any, Any]:
        """New (submitter, monitor, sweeper) on the queue config with ``overrides``."""
        conf = self.config(**overrides)
        submitter_cls, monitor_cls, sweeper_cls = self.plugin_classes
        return submitter_cls(**conf), monitor_cls(**conf), sweeper_cls(**conf)

    def throttle(self, walltime: int = 600, **overrides: Any) -> tuple[bool, str]:
        """The throttler as the WorkerAdjuster calls it, on this queue's submitter section."""
        section = {"module": self.plugin_module, "name": self.plugin_classes[0].__name__}
        section.update(self.config(**overrides))
        queue = SimpleNamespace(queueName=QUEUE, submitter=section, walltimeLimit=walltime)
        return EdgeThrottler(queueName=QUEUE).to_be_throttled(queue)

    def worker(self, behaviour: str = "exit 0") -> WorkSpec:
        ws = WorkSpec()
        ws.workerID = next(_worker_ids)
        ws.computingSite = QUEUE
        ws.mapType = WorkSpec.MT_NoJob
        ws.nCore = 1
        ws.maxWalltime = 600
        ws.status = WorkSpec.ST_pending
        ws.accessPoint = str(self.root / "ap" / str(ws.workerID))
        Path(ws.accessPoint).mkdir(parents=True)
        (self.ctl / str(ws.workerID)).write_text(behaviour + "\n")
        return ws

    def jobs_named(self, name: str, settle: float = 10.0) -> list[dict[str, str]]:
        """Every job Slurm knows by this name, live or accounted (the duplicate check).

        Slurm 22.05's accounting names a new job ``allocation`` for a few seconds, so a job
        that already left the queue may need a moment to show up under its name.
        """
        deadline = time.monotonic() + settle
        while True:
            rows = {r["jobid"]: r for r in self.slurm.sacct(names=[name])}
            rows.update({r["jobid"]: r for r in self.slurm.squeue(names=[name])})
            if rows or time.monotonic() > deadline:
                return list(rows.values())
            time.sleep(0.5)


def cycle(monitor: SFAPIMonitor, workers: list[WorkSpec]) -> list[tuple[str | None, str]]:
    """One monitor pass, applied like Harvester does; checks the answer's shape."""
    ok, answers = monitor.check_workers(workers)
    assert ok is True and len(answers) == len(workers)
    for ws, (status, diag) in zip(workers, answers, strict=True):
        assert status is None or status in WorkSpec.ST_LIST, status
        assert isinstance(diag, str)
        if status is not None:
            ws.status = status
    return answers


def never_failed_for(monitor: SFAPIMonitor, workers: list[WorkSpec], seconds: float) -> None:
    """Monitor passes every half second for ``seconds``: none may give up on a worker (the
    service's errors while it runs are retried or waited out, never a worker's failure)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for status, _ in cycle(monitor, workers):
            assert status not in ("failed", "missed", "cancelled")
        time.sleep(0.5)


def run_until(
    monitor: SFAPIMonitor,
    workers: list[WorkSpec],
    done: Callable[[list[WorkSpec]], bool],
    timeout: float = 90,
    interval: float = 1.0,
    seen: list[list[str | None]] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        answers = cycle(monitor, workers)
        if seen is not None:
            seen.append([a[0] for a in answers])
        if done(workers):
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                "timed out: "
                + ", ".join(f"{w.workerID}:{w.status}:{w.batchID}" for w in workers)
                + f" last answers {answers}"
            )
        time.sleep(interval)


def all_final(workers: list[WorkSpec]) -> bool:
    return all(w.status in ("finished", "failed", "cancelled") for w in workers)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("sfapi-site")
    key = root / "iris-client.pem"
    client_id, public_pem = make_client_key(key)
    slurm = LocalSlurm(default_slurm_conf())
    gw = SFAPIGateway(slurm=slurm, knobs=Knobs(), workdir=root, file_roots=[root])
    gw.register_client(client_id, public_pem)
    with gw:
        yield Site(gw, key, root)
    forget_clients()
    GATE.forget()
    cancel_created(slurm, gw.jobs_created)


@pytest.fixture(autouse=True)
def calm_site(site: Site) -> Iterator[None]:
    """Every test starts with a healthy site and fresh shared clients."""
    site.gateway.knobs.update(
        latency=0,
        task_delay=0,
        error_rate=0,
        post_timeout=0,
        hang=False,
        machine_status="active",
        maintenance=False,
    )
    forget_clients()
    GATE.forget()
    yield
    site.gateway.knobs.update(hang=False, error_rate=0, post_timeout=0, machine_status="active")
