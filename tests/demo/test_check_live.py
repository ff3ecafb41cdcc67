"""``check --online`` and ``check --submit-test`` against the loopback facility over the real
Slurm cluster: the example queue pointed at a gateway, one short worker followed to
``finished``."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harvester_edge import cli
from harvester_edge.demo import local_shape, loopback_queue
from harvester_edge.edge import tags
from harvester_edge.edge.health import GATE
from harvester_edge.facilities.registry import forget_clients
from harvester_edge.harvester import harvester_id
from harvester_edge.localsite.families import FAMILIES, LoopbackFamily, LoopbackSite
from harvester_edge.localsite.slurm import LocalSlurm, SlurmError

EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "panda_queueconfig.example.json"


@pytest.fixture(
    params=[f.name for f in FAMILIES if f.name in ("sfapi", "s3m", "iri-v2", "gc-batch", "gc-task")]
)
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LoopbackFamily, Path]]:
    family = next(f for f in FAMILIES if f.name == request.param)
    config = json.loads(EXAMPLE.read_text())
    slurm = LocalSlurm()
    site: LoopbackSite = family.start(tmp_path, slurm, config[family.queue])
    try:
        (tmp_path / "site" / family.name).mkdir(parents=True)
        ap = str(tmp_path / "harvester" / "${workerID}")
        queue = loopback_queue(config, family.queue, site, local_shape(tmp_path, family.name), ap)
        path = tmp_path / "queues.json"
        path.write_text(json.dumps({family.queue: queue}))
        forget_clients()
        GATE.forget()
        yield family, path
    finally:
        site.gateway.stop()
        forget_clients()
        GATE.forget()
        # the jobs the gateway made, and those sbatch made under the queue's tags (Globus
        # Compute's shell functions run sbatch themselves): the next family reuses the tags
        try:
            prefix = tags.queue_prefix(harvester_id(), family.queue)
            mine = [r["jobid"] for r in slurm.squeue() if r.get("name", "").startswith(prefix)]
            if site.gateway.jobs_created or mine:
                slurm.scancel(list(site.gateway.jobs_created) + mine)
        except (OSError, subprocess.SubprocessError, SlurmError):
            pass


@pytest.mark.slurm
def test_online_and_submit_test_reach_finished(
    live: tuple[LoopbackFamily, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    family, path = live
    q = family.queue
    rc = cli.main(
        ["check", str(path), "--queue", q, "--online", "--submit-test", "--timeout", "120"]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert any(
        line.startswith(f"online {q}: ") and "authenticated request ok" in line
        for line in out.splitlines()
    ), out
    assert f"submit-test {q}: finished" in out
    assert "-> " not in out
    states = [line for line in out.splitlines() if line.startswith(f"submit-test {q}: worker")]
    assert "submit True" in states[0] and "finished" in "".join(states[1:]), states
    assert "sweep True" in states[-1]


@pytest.mark.slurm
def test_online_names_a_missing_remote_work_dir(
    live: tuple[LoopbackFamily, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Slurm fails a job whose output directory is missing: a family with file access
    finds it before any worker does; the others say they could not look."""
    family, path = live
    site = path.parent / "site" / family.name
    rc = cli.main(["check", str(path), "--queue", family.queue, "--online"])
    out = capsys.readouterr().out
    assert rc == 0, out
    files = family.name.startswith(("sfapi", "gc"))
    said = f"remote directories exist: {site}" if files else "not checked (no file access)"
    assert said in out, out
    site.rmdir()
    rc = cli.main(["check", str(path), "--queue", family.queue, "--online"])
    out = capsys.readouterr().out
    assert rc == (1 if files else 0), out
    if files:
        assert f"ERROR  {family.queue}: " in out and f"missing on the facility: {site} " in out


@pytest.mark.slurm
def test_online_names_a_refused_credential(
    live: tuple[LoopbackFamily, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    family, path = live
    config = json.loads(path.read_text())
    common = config[family.queue]["common"]
    if "keyFile" in common:
        secret = Path(common["keyFile"])
    else:  # file:<path>
        secret = Path((common.get("token") or common["clientSecret"])[5:])
    if family.name == "sfapi":
        from harvester_edge.localsite.sfapi_gateway import make_client_key

        make_client_key(secret)  # a key the gateway never registered
    else:
        secret.write_text("not-a-token-or-secret-the-gateway-issued\n")
    rc = cli.main(["check", str(path), "--queue", family.queue, "--online"])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert f"ERROR  {family.queue}: " in out


@pytest.mark.slurm
def test_workers_shows_the_queue_jobs(
    live: tuple[LoopbackFamily, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from harvester_edge.harvester import WorkSpec
    from harvester_edge.queue_config import build_plugin, plugin_section

    family, path = live
    q = family.queue
    config = json.loads(path.read_text())
    template = path.parent / "sleep.sh"
    template.write_text(
        "#!/bin/bash\n#SBATCH --job-name={jobName}\n{sbatchDirectives!raw}\nsleep 60\n"
    )
    config[q]["submitter"]["templateFile"] = str(template)
    path.write_text(json.dumps(config))
    ws = WorkSpec()
    # a worker id of its own per family: both GC modes run the same queue (same tags), and
    # a tag's ended jobs stay in accounting
    wid = 7 + 10 * FAMILIES.index(family)
    ws.workerID, ws.computingSite, ws.mapType, ws.nCore, ws.maxWalltime = wid, q, "NoJob", 1, 600
    ws.accessPoint = str(path.parent / "harvester" / str(wid))
    ok, message = build_plugin(plugin_section(q, config[q], "submitter")).submit_workers([ws])[0]
    assert ok is True, message
    deadline = time.monotonic() + 30
    while True:
        rc = cli.main(["workers", q, "--config", str(path), "--json"])
        out, err = capsys.readouterr()
        assert rc == 0, out + err
        rows = json.loads(out)
        if rows or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(rows) == 1 and rows[0]["workerID"] == wid, rows
    assert rows[0]["state"] in ("queued", "active") and rows[0]["batchID"]
    assert rows[0]["tag"].endswith(f"-{q}-w{wid}")
    assert cli.main(["workers", q, "--config", str(path), "--worker", str(wid + 1)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["workerID", "batchID", "state"] and len(table) == 2
