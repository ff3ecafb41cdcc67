"""The README's first command: ``harvester-edge demo`` over the real Slurm cluster, every
family, from the example queue config; it must end with its table and exit 0."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from harvester_edge import cli
from harvester_edge.localsite.families import FAMILIES, family_of, pick

EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "panda_queueconfig.example.json"


@pytest.mark.slurm
def test_demo_every_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = os.environ.get("HARVESTER_ID")
    code = cli.main(["demo", "--dir", str(tmp_path / "demo"), "--config", str(EXAMPLE)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert os.environ.get("HARVESTER_ID") == before  # the session's id is given back
    assert "demo OK" in out
    for family in FAMILIES:
        rows = [
            line for line in out.splitlines() if re.match(rf"{family.name}\s+\d+\s+hedge-", line)
        ]
        assert len(rows) == 3, out
        ends = [r for r in rows if "> finished" in r], [r for r in rows if "> cancelled" in r]
        assert len(ends[0]) == 1 and len(ends[1]) == 1, rows
        assert sum(1 for r in rows if re.search(r"> failed\s", r)) == 1, rows
        match = re.search(rf"^{family.name}\s+(\d+) requests for 3 workers", out, re.M)
        assert match and int(match.group(1)) > 0, out
    sfapi = [line for line in out.splitlines() if re.match(r"sfapi\s+\d+\s+hedge-", line)]
    assert any("4 (1 failed)" in line and "5663" in line for line in sfapi), sfapi
    # SFAPI gives file access: every worker's batch log went to Harvester (set_log_file)
    assert all(re.search(r"\s\d+ lines$", line) for line in sfapi), sfapi
    # Globus Compute too: the batch logs' ends ride in the summaries' probe (tail -c), in
    # batch mode (sbatch's output) and task mode (the pilot task's output)
    for name in ("gc-batch", "gc-task"):
        rows = [line for line in out.splitlines() if re.match(rf"{name}\s+\d+\s+hedge-", line)]
        assert any("4 (1 failed)" in line and "5663" in line for line in rows), rows
        assert all(re.search(r"\s\d+ lines$", line) for line in rows), rows
        # the service's own counters: deferred probes, one status read per cycle, shared
        match = re.search(rf"^{name}\s+(\d+) requests .*batch_status (\d+)", out, re.M)
        assert match and int(match.group(1)) < 120 and int(match.group(2)) > 0, out


def test_family_choice() -> None:
    assert [f.name for f in pick(["iri"])] == ["iri-v2", "iri-v1"]
    assert [f.name for f in pick(["s3m", "sfapi"])] == ["s3m", "sfapi"]
    assert [f.name for f in pick(["gc"])] == ["gc-batch", "gc-task"]
    with pytest.raises(ValueError, match="unknown family 'globus'"):
        pick(["globus"])
    gc = {"submitter": {"module": "harvester_edge.plugins.globus_compute"}}
    assert family_of(gc).name == "gc-batch"  # type: ignore[union-attr]
    gc["common"] = {"mode": "task"}
    assert family_of(gc).name == "gc-task"  # type: ignore[union-attr]
    assert cli.main(["demo", "--family", "nope"]) == 2
