"""``harvester-edge check``: every kind of problem gives one line naming queue, section and
key, exit 2, and nothing is sent anywhere; the schema is the plugins' own."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from harvester_edge import cli
from harvester_edge.edge.batch_config import BatchConfig
from harvester_edge.plugins import schema
from harvester_edge.plugins.iri import IRIMonitor
from harvester_edge.plugins.sfapi import SFAPISubmitter
from harvester_edge.plugins.throttler import EdgeThrottler

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "etc" / "panda_queueconfig.example.json"
Q = "NERSC_Perlmutter_GPU_edge"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("network I/O while checking a config")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def run(tmp_path: Path, config: Any, capsys: pytest.CaptureFixture[str], *extra: str):
    path = tmp_path / "queues.json"
    path.write_text(json.dumps(config))
    rc = cli.main(["check", str(path), *extra])
    return rc, capsys.readouterr().out.splitlines()


def errors(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("ERROR")]


def example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text())


def test_the_example_passes_and_check_config_is_an_alias(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, lines = run(tmp_path, example(), capsys)
    assert rc == 0 and not errors(lines)
    assert cli.main(["check-config", str(EXAMPLE)]) == 0


def test_every_problem_kind_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = example()
    queue = config[Q]
    del queue["common"]["keyFile"]  # missing required key
    queue["monitor"]["readTimeout"] = 5  # (the monitor builds far enough to miss keyFile)
    queue["monitor"]["chunkSize"] = "many"  # wrong type
    queue["monitor"]["chunkSise"] = 10  # unknown key (a typo)
    queue["common"]["machineName"] = "perlmutter"  # unknown in common
    queue["submitter"]["templateFile"] = str(tmp_path / "nowhere.sh")  # bad template path
    queue["sweeper"]["module"] = "harvester_edge.plugins.nowhere"  # unknown plugin module
    queue["throttler"]["name"] = "NoSuchThrottler"  # unknown plugin class
    del queue["messenger"]["accessPoint"]  # missing messenger accessPoint (common has
    del queue["common"]["accessPoint"]  # none either: stock copies common into sections)
    rc, lines = run(tmp_path, config, capsys)
    assert rc == 2
    bad = errors(lines)
    expected = {
        f"{Q}.submitter.keyFile": "is required",
        f"{Q}.monitor.chunkSize": "must be an integer, got 'many' (type int)",
        f"{Q}.monitor.chunkSise": "SFAPIMonitor does not read it (did you mean 'chunkSize'?)",
        f"{Q}.common.machineName": "unknown key: no harvester-edge plugin of this queue reads it",
        f"{Q}.submitter.templateFile": "no such file on this host",
        f"{Q}.sweeper.module": "cannot import harvester_edge.plugins.nowhere",
        f"{Q}.throttler.name": "harvester_edge.plugins.throttler has no NoSuchThrottler",
        f"{Q}.messenger.accessPoint": "missing",
    }
    for where, text in expected.items():
        hits = [line for line in bad if line.startswith(f"ERROR  {where}: ")]
        assert len(hits) == 1 and text in hits[0], (where, bad)
    # nothing else: the monitor's build failure on chunkSize is the schema's line, and the
    # missing keyFile (every section's build fails on it) is one line
    assert len(bad) == len(expected), bad
    assert lines[-1] == f"{len(bad)} problem(s) in {tmp_path / 'queues.json'}"


def test_only_the_named_queue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = example()
    config["OLCF_Defiant_edge"]["monitor"]["chunkSize"] = "x"
    rc, lines = run(tmp_path, config, capsys, "--queue", Q)
    assert rc == 0 and not any("OLCF" in line for line in lines)
    rc, lines = run(tmp_path, config, capsys, "--queue", "OLCF_Defiant_edge")
    assert rc == 2 and errors(lines) == [
        "ERROR  OLCF_Defiant_edge.monitor.chunkSize: must be an integer, got 'x' (type int)"
    ]
    rc, lines = run(tmp_path, config, capsys, "--queue", "NOPE")
    assert rc == 2


def test_problems_stop_render_online_and_submit_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = example()
    config[Q]["monitor"]["chunkSize"] = "x"
    rc, lines = run(tmp_path, config, capsys, "--queue", Q, "--render", "--online", "--submit-test")
    assert rc == 2
    assert not any("=====" in line or line.startswith(("online", "submit-test")) for line in lines)


def test_render_shows_the_script_and_the_body(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, lines = run(tmp_path, example(), capsys, "--queue", "OLCF_Defiant_edge", "--render")
    text = "\n".join(lines)
    assert rc == 0
    assert "#SBATCH --partition=batch" in text and '"partition": "batch"' in text
    assert '"script": "<the batch script above>"' in text


def test_harvester_cfg_credmanager(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "panda_harvester.cfg"
    cfg.write_text(
        "[credmanager]\n"
        "moduleName =\n  harvester_edge.plugins.nowhere\n  x.y\n"
        "className =\n  Cred\n"
        "pluginConfigs =\n"
        '  [{"module": "harvester_edge.plugins.throttler", "name": "EdgeThrottler",\n'
        '    "configs": {"siteA": {"outageHorizonSeconds": 60, "dir": "$HEDGE_UNSET_VAR_X"}}},\n'
        '   {"module": "m", "name": "n"}]\n'
    )
    rc, lines = run(tmp_path, example(), capsys, "--harvester-cfg", str(cfg))
    bad = errors(lines)
    assert rc == 2
    assert any("lengths differ" in b for b in bad)
    assert any("[credmanager].moduleName[0].module: cannot import" in b for b in bad)
    assert any(
        "pluginConfigs[0].siteA: HEDGE_UNSET_VAR_X in the cfg is an undefined environment "
        "variable. Harvester's config loader stops there" in b
        for b in bad
    )
    assert any("pluginConfigs[1].configs: missing" in b for b in bad)
    cfg.write_text('[credmanager]\npluginConfigs = [{"module": "m", "name": "n", "configs": {}}]\n')
    rc, lines = run(tmp_path, example(), capsys, "--harvester-cfg", str(cfg))
    assert rc == 2 and any("must span several lines" in b for b in errors(lines))


def test_schema_is_the_plugins_own() -> None:
    keys = schema.plugin_keys(SFAPISubmitter)
    assert keys is not None
    assert keys["chunkSize"] is int and keys["keyFile"] is str and keys["nNode"] is int
    assert keys["pilotArgs"] == list[str] and keys["bindCores"] is bool
    monitor = schema.plugin_keys(IRIMonitor)
    assert monitor is not None and "token" in monitor and "nNode" not in monitor
    assert schema.plugin_keys(EdgeThrottler) == {
        **schema.HARVESTER_KEYS,
        "outageHorizonSeconds": float,
    }
    assert schema.plugin_keys(dict) is None
    # every batch key the schema lists is one BatchConfig reads: a value of the wrong type
    # under it fails BatchConfig too
    base = {"remoteWorkDir": "/scratch/x"}
    for key, kind in schema.batch_keys().items():
        wrong = 3.5 if kind is not int else "three"
        if kind is str:
            wrong = ["a"]
        with pytest.raises(Exception, match=key):
            BatchConfig.from_config({**base, key: wrong})


def test_a_missing_required_key_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = example()
    del config[Q]["common"]["keyFile"]  # every SFAPI section's build fails on it
    rc, lines = run(tmp_path, config, capsys, "--queue", Q)
    assert rc == 2
    assert errors(lines) == [
        f"ERROR  {Q}.submitter.keyFile: SFAPISubmitter: config key 'keyFile' is required "
        "(path to the Iris client key file)"
    ]


def test_the_example_harvester_cfg(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = str(ROOT / "etc" / "panda_harvester.cfg.example")
    monkeypatch.setenv("HARVESTER_EDGE_CRED_DIR", "/var/lib/harvester-edge/cred-env")
    rc, lines = run(tmp_path, example(), capsys, "--harvester-cfg", cfg)
    assert rc == 0, errors(lines)
    assert any("[credmanager].pluginConfigs[0]" in line and line.startswith("ok") for line in lines)
    monkeypatch.delenv("HARVESTER_EDGE_CRED_DIR")
    rc, lines = run(tmp_path, example(), capsys, "--harvester-cfg", cfg)
    assert rc == 2
    assert [e for e in errors(lines) if "HARVESTER_EDGE_CRED_DIR" in e] == errors(lines)
    assert len(errors(lines)) == 1
