"""The loopback facility, one entry per plugin family: which example queue it runs and how
its gateway is started in front of the local Slurm cluster.

``harvester-edge demo`` and ``check --submit-test`` take a queue of the operator's queue
config (etc/panda_queueconfig.example.json for the demo) and point it at a loopback gateway:
only the endpoint and credential keys change (``LoopbackSite.common``); everything else is
the file's.  A new family (Globus Compute) is one more ``LoopbackFamily`` in ``FAMILIES``:
its plugin module, its example queue and a ``start`` function.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .faults import Knobs
from .slurm import LocalSlurm


class Gateway(Protocol):
    """What the demo needs of a loopback gateway (``loopback.GatewayBook`` plus stop)."""

    @property
    def counters(self) -> Any: ...

    @property
    def jobs_created(self) -> list[str]: ...

    def stop(self) -> None: ...


@dataclass
class LoopbackSite:
    """A running gateway and the ``common`` keys that point a queue at it."""

    gateway: Gateway
    common: dict[str, Any]
    #: what the gateway is, for the demo's first lines
    label: str = ""

    def requests(self) -> int:
        return int(sum(self.gateway.counters.values()))


Starter = Callable[[Path, LocalSlurm, Mapping[str, Any]], LoopbackSite]


@dataclass(frozen=True)
class LoopbackFamily:
    """One plugin family on the loopback facility."""

    name: str
    #: the plugin module whose classes the queue names (how a queue is matched to a family)
    module: str
    #: the example queue (etc/panda_queueconfig.example.json) the demo runs
    queue: str
    start: Starter
    #: plugin sections this family's plugins serve
    sections: tuple[str, ...] = field(default=("submitter", "monitor", "sweeper"))


def _secret_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    return path


def start_sfapi(root: Path, slurm: LocalSlurm, queue: Mapping[str, Any]) -> LoopbackSite:
    from .sfapi_gateway import SFAPIGateway, make_client_key

    common = queue.get("common") or {}
    machine = str(common.get("machine") or "perlmutter")
    key = root / "credentials" / "sfapi-client.pem"
    key.parent.mkdir(parents=True, exist_ok=True)
    client_id, public_pem = make_client_key(key)
    gw = SFAPIGateway(machine=machine, slurm=slurm, knobs=Knobs(), workdir=root, file_roots=[root])
    gw.register_client(client_id, public_pem)
    gw.start()
    site = {"apiUrl": gw.api_url, "tokenUrl": gw.token_url, "keyFile": str(key)}
    return LoopbackSite(gw, site, f"SFAPI gateway {gw.api_url} (machine {machine})")


def start_s3m(root: Path, slurm: LocalSlurm, queue: Mapping[str, Any]) -> LoopbackSite:
    from .s3m_gateway import DEFAULT_TOKEN_LIFETIME, S3MGateway

    account = (queue.get("submitter") or {}).get("account") or "proj001"
    gw = S3MGateway(
        slurm=slurm,
        knobs=Knobs(token_lifetime=DEFAULT_TOKEN_LIFETIME),
        workdir=root,
        project=str(account),
    )
    gw.start()
    token = _secret_file(root / "credentials" / "s3m.token", gw.issue_token())
    site = {"apiUrl": gw.base_url, "token": f"file:{token}"}
    return LoopbackSite(gw, site, f"S3M gateway {gw.base_url} (project {account})")


def _start_iri(version: str) -> Starter:
    def start(root: Path, slurm: LocalSlurm, queue: Mapping[str, Any]) -> LoopbackSite:
        from .iri_gateway import IRIGateway

        common = queue.get("common") or {}
        resource = str(common.get("resource") or "perlmutter")
        knobs = Knobs(expired_token_status=401, token_lifetime=30 * 86400)
        gw = IRIGateway(slurm=slurm, knobs=knobs, workdir=root, resources=(resource,))
        gw.start()
        token = _secret_file(root / "credentials" / f"iri-{version}.token", gw.issue_token())
        site = {"apiUrl": gw.api_url(version), "token": f"file:{token}"}
        return LoopbackSite(gw, site, f"IRI gateway {gw.api_url(version)} (resource {resource})")

    return start


def _start_gc(mode: str) -> Starter:
    """The loopback Globus Compute service (one Multi-User Endpoint) on the local Slurm.
    The user endpoint's config is the site's (account, ``worker_init``'s modules): here the
    local provider on this machine (batch mode), or blocks of the local cluster with probes
    on the login node (task mode)."""

    def start(root: Path, slurm: LocalSlurm, queue: Mapping[str, Any]) -> LoopbackSite:
        from .gc_knobs import GCKnobs
        from .gc_service import TOKEN_LIFETIME, start_gc_service

        svc = start_gc_service(
            slurm=slurm, work_dir=root / f"gc-endpoint-{mode}",
            knobs=GCKnobs(token_lifetime=TOKEN_LIFETIME),
        )  # fmt: skip
        secret = _secret_file(root / "credentials" / f"gc-{mode}.secret", svc.client_secret)
        site: dict[str, Any] = {
            "endpointId": svc.endpoint_id, "serviceUrl": svc.url, "authUrl": svc.auth_url,
            "clientId": svc.client_id, "clientSecret": f"file:{secret}", "mode": mode,
            "userEndpointConfig": {"provider": "local"},
        }  # fmt: skip
        if mode == "task":
            site.update(
                userEndpointConfig={"provider": "slurm", "walltime": "00:10:00",
                                    "nodes_per_block": 2},
                probeEndpointConfig={"provider": "local"},
                markerDir=str(root / "site" / "gc-task" / ".gc-tasks"),
            )  # fmt: skip
        label = f"Globus Compute service {svc.url} (endpoint {svc.endpoint_id}, {mode} mode)"
        return LoopbackSite(svc, site, label)

    return start


#: every family, in the demo's order; ``--family`` picks by name or name prefix ("iri")
_P = "harvester_edge.plugins."
FAMILIES: tuple[LoopbackFamily, ...] = (
    LoopbackFamily("sfapi", _P + "sfapi", "NERSC_Perlmutter_GPU_edge", start_sfapi),
    LoopbackFamily("s3m", _P + "s3m", "OLCF_Defiant_edge", start_s3m),
    LoopbackFamily("iri-v2", _P + "iri", "NERSC_Perlmutter_IRI", _start_iri("v2")),
    LoopbackFamily("iri-v1", _P + "iri", "OLCF_Frontier_IRI", _start_iri("v1")),
    LoopbackFamily(
        "gc-batch", _P + "globus_compute", "NERSC_Perlmutter_GC_MEP", _start_gc("batch")
    ),
    LoopbackFamily("gc-task", _P + "globus_compute", "NERSC_Perlmutter_GC_MEP", _start_gc("task")),
)


def pick(names: list[str] | None) -> list[LoopbackFamily]:
    """The families named (exactly, or by prefix: ``iri`` is both IRI versions), in order.
    Raises ValueError naming an unknown one."""
    if not names:
        return list(FAMILIES)
    chosen: list[LoopbackFamily] = []
    for name in names:
        found = [f for f in FAMILIES if f.name == name] or [
            f for f in FAMILIES if f.name.startswith(name + "-")
        ]
        if not found:
            known = ", ".join(f.name for f in FAMILIES)
            raise ValueError(f"unknown family {name!r} (known: {known}, or iri, gc for both)")
        chosen += [f for f in found if f not in chosen]
    return chosen


def family_of(queue: Mapping[str, Any]) -> LoopbackFamily | None:
    """The family whose plugins a (merged) queue's submitter names; for IRI the version
    in its ``apiUrl``/``apiVersion`` picks the entry, for Globus Compute its ``mode``."""
    submitter = queue.get("submitter")
    module = submitter.get("module") if isinstance(submitter, Mapping) else None
    found = [f for f in FAMILIES if f.module == module]
    if len(found) <= 1:
        return found[0] if found else None
    common = queue.get("common") if isinstance(queue.get("common"), Mapping) else {}
    merged = {**common, **submitter}  # type: ignore[dict-item]
    if str(module).endswith(".globus_compute"):  # batch or task mode
        mode = str(merged.get("mode") or "batch")
        return next((f for f in found if f.name == f"gc-{mode}"), found[0])
    url = str(merged.get("apiUrl") or "").rstrip("/")
    version = str(merged.get("apiVersion") or url.rsplit("/", 1)[-1])
    return next((f for f in found if f.name.endswith("-" + version)), found[0])
