"""Byte identity: the job spec's script is exactly what the submitter sent before the spec.

``golden/*.sh`` were written by the code before ``edge/spec.py`` existed (the submitter's
``ensure_tag(render_batch_script(cfg, worker), tag)``, at commit b6a665e); their digests are
pinned here so a regeneration cannot pass unnoticed.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from pathlib import Path
from typing import Any

import pytest

from harvester_edge._quiet import quiet_imports
from harvester_edge.edge.batch import render_batch_script
from harvester_edge.edge.spec import build_job_spec, ensure_tag
from harvester_edge.harvester import WorkSpec

from .golden_cases import BASE, CASES, GOLDEN, NOW, case, write_templates

GOLDEN_SHA256 = {
    "frontier-gpu-level-1": "d4f7640c23b9495bb0a0499cbc0de4d8b155d76c8a0922381a71ab6e281d3f48",
    "generic-defaults": "d1b5ee94b460c6a6967e21c4625749d4841fb78e8f7c5fe96550132326db31eb",
    "generic-shared-node": "154bdadfee1253561e58038cb86ab610ce2adf7d9476335b0415385d4a48a2f9",
    "operator-no-name": "ed255a34af838fa9681ca3a862b656fe348d4feca118fc1038c821ede6d02f4b",
    "operator-no-shebang": "16e542922c20e8c60f0ec36c6e9ea07ac2c6cec153f8bd5b0db111ba6bfdbce2",
    "operator-template": "0e3ad1a1b2be8e79c527686cb894420457e3296720d00f2b6e4b102f2b2efcb4",
    "perlmutter-cpu-container": "11a1bc2696dba087538133b10f73367bf4e551441dc3a38b0642492f2f0147f0",
    "perlmutter-gpu-level-2": "019f0dcf9286acf61b09502d68d9270b0b8f388cc997fcbfee01376330b0c9da",
}


def golden(name: str) -> str:
    text = (GOLDEN / f"{name}.sh").read_text()
    assert hashlib.sha256(text.encode()).hexdigest() == GOLDEN_SHA256[name], "golden changed"
    return text


def test_every_case_is_pinned() -> None:
    assert set(GOLDEN_SHA256) == set(CASES)
    assert {p.stem for p in GOLDEN.glob("*.sh")} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_job_spec_script_is_the_script_sent_before(name: str, tmp_path: Path) -> None:
    write_templates(tmp_path)
    cfg, worker = case(name, tmp_path)
    expected = golden(name)
    assert build_job_spec(cfg, dataclasses.replace(worker, created=NOW)).script == expected
    # the facade's old path still gives the same bytes
    assert ensure_tag(render_batch_script(cfg, worker, now=NOW), worker.job_name) == expected


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_script_whatever_the_hour_of_the_worker_time(name: str, tmp_path: Path) -> None:
    """Scripts without ``{logSubDir}`` do not depend on the worker's time at all."""
    write_templates(tmp_path)
    cfg, worker = case(name, tmp_path)
    later = dataclasses.replace(worker, created=NOW + datetime.timedelta(hours=5))
    script = build_job_spec(cfg, later).script
    assert (script == golden(name)) == ("{logSubDir}" not in _template_of(name))


def _template_of(name: str) -> str:
    from .golden_cases import TEMPLATES

    template = str(CASES[name][0].get("templateFile", ""))
    return TEMPLATES.get(template, "")


def test_submitter_prepares_the_spec_script(tmp_path: Path) -> None:
    """What the submitter sends today equals the spec's script for the same WorkSpec."""
    with quiet_imports():
        from harvester_edge.plugins.sfapi import SFAPISubmitter
    from harvester_edge.edge.batch import BatchConfig, WorkerInfo
    from harvester_edge.harvester import harvester_id

    conf: dict[str, Any] = {
        "queueName": "Q", "apiUrl": "http://127.0.0.1:9/api", "tokenUrl": "http://127.0.0.1:9",
        "keyFile": "/nonexistent/key.pem", "machine": "perlmutter", "profile": "perlmutter-gpu",
        "remoteWorkDir": BASE, "account": "m1234_g", "pilotsPerNode": 4, "logDir": BASE + "/l",
    }  # fmt: skip
    submitter = SFAPISubmitter(**conf)
    ws = WorkSpec()
    ws.workerID, ws.computingSite, ws.mapType = 17, "Q", WorkSpec.MT_NoJob
    ws.maxWalltime, ws.creationTime = 3600, datetime.datetime(2025, 6, 1, 12, 30)
    request = submitter._prepare(ws)
    cfg = BatchConfig.from_config(conf)
    hid = harvester_id()
    worker = WorkerInfo.from_workspec(
        ws, harvester_id=hid, job_name=request.tag, work_dir=cfg.worker_dir(hid, 17, "Q")
    )
    assert build_job_spec(cfg, worker).script == request.script
