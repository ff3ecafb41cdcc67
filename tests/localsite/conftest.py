"""Fixtures for the loopback-site tests (the Slurm gate is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harvester_edge.localsite.faults import Knobs
from harvester_edge.localsite.sfapi_gateway import SFAPIGateway, make_client_key
from harvester_edge.localsite.slurm import LocalSlurm, default_slurm_conf

from ..conftest import slurm_reachable


@pytest.fixture
def slurm() -> LocalSlurm:
    return LocalSlurm(default_slurm_conf())


@pytest.fixture
def client_key(tmp_path: Path) -> tuple[Path, str, str]:
    """A fresh sfapi_client key file: (path, client_id, public PEM)."""
    path = tmp_path / "sfapi-key.pem"
    client_id, public_pem = make_client_key(path)
    return path, client_id, public_pem


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    path = tmp_path / "site"
    path.mkdir()
    return path


@pytest.fixture
def gateway(
    client_key: tuple[Path, str, str], site_dir: Path, slurm: LocalSlurm
) -> Iterator[SFAPIGateway]:
    """A running gateway with the test client registered; its jobs are cancelled afterwards."""
    gw = SFAPIGateway(slurm=slurm, knobs=Knobs(), workdir=site_dir, file_roots=[site_dir])
    gw.register_client(client_key[1], client_key[2])
    with gw:
        yield gw
    if gw.jobs_created and slurm_reachable():
        slurm.scancel(gw.jobs_created)  # leave the shared cluster clean


@pytest.fixture
def sfapi(gateway: SFAPIGateway, client_key: tuple[Path, str, str]) -> Iterator[Any]:
    """The official sfapi_client, authenticating with the key file against the gateway."""
    from sfapi_client import Client

    with Client(
        key=client_key[0],
        api_base_url=gateway.api_url,
        token_url=gateway.token_url,
        wait_interval=1,
    ) as client:
        yield client


@pytest.fixture
def api(gateway: SFAPIGateway, sfapi: Any) -> Iterator[httpx.Client]:
    """A raw HTTP client on the API base with a valid bearer token (for exact wire checks)."""
    headers = {"Authorization": f"Bearer {sfapi.token}"}
    with httpx.Client(base_url=gateway.api_url, headers=headers, timeout=10) as client:
        yield client
