"""Gate for tests that need the local Slurm cluster (``@pytest.mark.slurm``).

Without a reachable cluster they are skipped on a developer machine, but in CI (``CI=true``)
they fail: a CI run that silently skipped the real-Slurm acceptance tests would prove nothing.
"""

from __future__ import annotations

import functools
import os

import pytest

from .slurm_helpers import slurm_available


@functools.lru_cache(maxsize=1)
def _cluster_up() -> bool:
    return slurm_available()


@pytest.fixture(autouse=True)
def _slurm_gate(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("slurm") is None or _cluster_up():
        return
    message = "Slurm cluster unreachable (sinfo failed); start it: scripts/slurm-cluster.sh start"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
