"""Suite-wide rules.

- Tests marked ``slurm`` need the real local cluster (scripts/slurm-cluster.sh).  On a laptop
  without it they are skipped; with ``CI=true`` they fail: CI must never go green by skipping
  the tests that exercise real scheduler semantics.
- No log record and no exception text of the whole run holds a secret value
  (``tests/secret_scan.py``).
- Every test session has its own Harvester id, so job tags never collide with jobs that
  earlier runs left in the cluster's accounting.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from harvester_edge.credentials import redaction

from .secret_scan import SCAN, SecretScan

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


@pytest.fixture(scope="session", autouse=True)
def secret_scan() -> Iterator[SecretScan]:
    root = logging.getLogger()
    saved = root.level
    root.addHandler(SCAN)
    root.setLevel(1)
    for name in ("harvester_edge", "panda"):
        logging.getLogger(name).setLevel(1)
    # the wiring's own proof: a canary secret logged through a guarded logger
    canary = SCAN.secret("canary-" + os.urandom(12).hex())
    redaction.register(canary)
    redaction.guard_loggers()
    logging.getLogger("harvester_edge.credentials").warning(f"canary {canary}")
    yield SCAN
    root.removeHandler(SCAN)
    root.setLevel(saved)
    assert any("canary [redacted]" in t for t in SCAN.texts), "the scan is not wired"
    leaks = SCAN.leaks()
    assert not leaks, f"secret values in logs or exception texts: {leaks[:5]}"


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> None:
    if call.excinfo is not None:
        SCAN.exception(str(call.excinfo.value))
