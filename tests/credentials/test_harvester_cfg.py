"""etc/panda_harvester.cfg.example read the way Harvester reads it, and the credential
managers built from it the way the credmanager agent builds them: all three styles, no I/O
in any constructor, the parser's traps exercised."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from harvester_edge.cli import no_network
from harvester_edge.credentials import harvester_cfg
from harvester_edge.plugins.credmanager import EdgeCredManager
from harvester_edge.queue_config import build_plugin

ETC = Path(__file__).resolve().parents[2] / "etc"


@pytest.fixture
def cfg(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, object]]:
    monkeypatch.setenv("HARVESTER_EDGE_CRED_DIR", "/var/lib/harvester-edge/cred-env")
    return harvester_cfg.load(str(ETC / "panda_harvester.cfg.example"))


def test_example_parses_like_harvester(cfg: dict[str, dict[str, object]]) -> None:
    cm = cfg["credmanager"]
    assert cm["sleepTime"] == 600 and cfg["monitor"]["checkInterval"] == 300
    assert isinstance(cm["pluginConfigs"], list)  # several lines: decoded as JSON
    assert cm["moduleName"] == ["harvester_edge.plugins.credmanager"]  # lines: a list
    setups = cm["pluginConfigs"][0]["configs"]  # type: ignore[index]
    assert setups["perlmutter_sfapi"]["storeDir"] == "/var/lib/harvester-edge/cred-env"


def test_three_styles_build_without_io(cfg: dict[str, dict[str, object]]) -> None:
    queues = json.loads((ETC / cfg["qconf"]["configFile"]).read_text())  # type: ignore[operator]
    sections = harvester_cfg.credmanager_kwargs(cfg, queues)
    assert len(sections) == 6
    with no_network():
        managers = [build_plugin(s) for s in sections]
    assert all(isinstance(m, EdgeCredManager) for m in managers)
    assert [m.setup_name for m in managers] == [
        "perlmutter_pilot", "perlmutter_sfapi", "defiant_s3m", "perlmutter_iri",
        "perlmutter_gc", "NERSC_Perlmutter_edge",
    ]  # fmt: skip
    assert [m.outCertFile for m in managers] == [
        "harvester-edge:perlmutter_pilot", "harvester-edge:perlmutter_sfapi",
        "harvester-edge:defiant_s3m", "harvester-edge:perlmutter_iri",
        "harvester-edge:perlmutter_gc", "harvester-edge:NERSC_Perlmutter_edge",
    ]  # fmt: skip
    # the parallel-list entry reads its setup file at first use (here: the example's)
    parallel = managers[0]
    parallel._kwargs["inCertFile"] = str(ETC / "credmanager" / "perlmutter_pilot.json")
    options = parallel.keeper().options
    assert options.pilots()[0].name == "x509_proxy"
    assert options.facility["name"] == "SFAPISubmitter"
    assert managers[2].keeper().options.storeKeyEnv == "HARVESTER_EDGE_STORE_KEY"
    secret = managers[3].keeper().options.globusClientSecret
    assert secret is not None and "GLOBUS_IRI_CLIENT_SECRET" in secret.source
    gc = managers[4].keeper().options
    assert gc.channel == "globus-compute" and gc.siteKeyFile.startswith("/")
    assert gc.facility["name"] == "GCSubmitter" and gc.served_queues == ["NERSC_Perlmutter_GC_MEP"]
    # the facility section is the GC queue's submitter: the same shared client's key
    from harvester_edge.plugins.globus_compute import GCBinding

    queue = json.loads((ETC / "panda_queueconfig.example.json").read_text())[
        "NERSC_Perlmutter_GC_MEP"
    ]
    theirs = GCBinding({**queue["common"], **queue["submitter"]}, "submitter").client_key()
    facility = {k: v for k, v in gc.facility.items() if k not in ("module", "name")}
    assert GCBinding(facility, "credmanager").client_key() == theirs


def test_constructors_touch_no_file(tmp_path: Path) -> None:
    """Harvester rebuilds per-queue managers every cycle: building one reads and writes
    nothing (the store, the audit log, the setup file are opened at first use)."""
    missing = tmp_path / "nothing-here"
    with no_network():
        EdgeCredManager(
            setup_name="q", storeDir=str(missing / "store"), storeKeyFile=str(missing / "k"),
            auditLog=str(missing / "audit.jsonl"),
            pilotCredentials=[{"name": "t", "source": str(missing / "src"), "remotePath": "/r"}],
        )  # fmt: skip
        EdgeCredManager(inCertFile=str(missing / "setup.json"), outCertFile="m")
    assert not missing.exists()


def test_parser_traps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "h.cfg"
    path.write_text(
        textwrap.dedent(
            """\
            [credmanager]
            oneLine = [{"module": "m", "name": "n", "configs": {}}]
            pluginConfigs =
              [{"module": "harvester_edge.plugins.credmanager", "name": "EdgeCredManager",
                "configs": {"s": {"storeDir": "/scratch/$USER/x", "storeKeyFile": "/k"}}}]
            """
        )
    )
    monkeypatch.delenv("USER/x", raising=False)
    with pytest.raises(KeyError, match="undefined environment variable"):
        harvester_cfg.load(str(path))
    monkeypatch.setenv("USER/x", "/whole/value")
    cfg = harvester_cfg.load(str(path))
    assert isinstance(cfg["credmanager"]["oneLine"], str)  # one line: never JSON
    [section] = harvester_cfg.credmanager_kwargs(cfg)
    assert section["storeDir"] == "/whole/value"  # replaced whole, not interpolated


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="storeKeyFile"):
        EdgeCredManager(setup_name="s", storeDir="/x")
    with pytest.raises(ValueError, match="storeKeyEnv"):
        EdgeCredManager(setup_name="s", storeDir="/x", storeKeyEnv="$KEY")
    with pytest.raises(ValueError, match=r"pilotCredentials\[0\]"):
        EdgeCredManager(
            setup_name="s", storeDir="/x", storeKeyFile="/k",
            pilotCredentials=[{"name": "t", "source": "rel", "remotePath": "/r"}],
        )  # fmt: skip
