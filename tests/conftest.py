"""Suite-wide rules.

- Tests marked ``slurm`` need the real local cluster (scripts/slurm-cluster.sh).  On a laptop
  without it they are skipped; with ``CI=true`` they fail: CI must never go green by skipping
  the tests that exercise real scheduler semantics.
- Every test session has its own Harvester id, so job tags never collide with jobs that
  earlier runs left in the cluster's accounting.
"""

from __future__ import annotations

import os
import uuid

import pytest

os.environ["HARVESTER_ID"] = f"t{uuid.uuid4().hex[:8]}"
os.environ.setdefault("SLURM_CONF", "/tmp/hedge-slurm/etc/slurm.conf")

_state: dict[str, bool] = {}


def slurm_reachable() -> bool:
    if "ok" not in _state:
        from harvester_edge.localsite.slurm import LocalSlurm, default_slurm_conf

        _state["ok"] = LocalSlurm(default_slurm_conf(), timeout=10).available()
    return _state["ok"]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("slurm") is None or slurm_reachable():
        return
    message = (
        "local Slurm cluster unreachable (run `bash scripts/slurm-cluster.sh start` and "
        "export SLURM_CONF=/tmp/hedge-slurm/etc/slurm.conf)"
    )
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
