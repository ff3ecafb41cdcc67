"""``harvester-edge creds keygen|status|renew`` on a cfg read like Harvester reads it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from harvester_edge import cli

from .conftest import SCAN, Clock, source_token


def write_cfg(tmp_path: Path) -> Path:
    setup = {
        "channel": "local",
        "storeDir": str(tmp_path / "store"),
        "storeKeyFile": str(tmp_path / "store.key"),
        "pilotCredentials": [
            {"name": "panda_token", "source": str(tmp_path / "src" / "tok"),
             "remotePath": str(tmp_path / "site" / "tok")}
        ],
    }  # fmt: skip
    plugin = {
        "module": "harvester_edge.plugins.credmanager",
        "name": "EdgeCredManager",
        "configs": {"local_site": setup},
    }
    body = textwrap.indent(json.dumps([plugin], indent=2), "  ")
    cfg = tmp_path / "panda_harvester.cfg"
    cfg.write_text(f"[credmanager]\nsleepTime = 600\npluginConfigs =\n{body}\n")
    return cfg


def test_keygen_status_renew(
    tmp_path: Path, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_cfg(tmp_path)
    assert cli.main(["creds", "keygen", str(tmp_path / "store.key")]) == 0
    SCAN.secret((tmp_path / "store.key").read_text())
    assert (tmp_path / "store.key").stat().st_mode & 0o777 == 0o600
    assert cli.main(["creds", "keygen", str(tmp_path / "store.key")]) == 1  # never overwrites
    token = source_token(tmp_path, clock, 7200)

    assert cli.main(["creds", "status", "--cfg", str(cfg)]) == 1
    assert "local_site: NEEDS ATTENTION" in capsys.readouterr().out
    assert cli.main(["creds", "renew", "--cfg", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "local_site: ok: panda_token: sha256:" in out
    assert (tmp_path / "site" / "tok").read_text() == token
    assert cli.main(["creds", "status", "--cfg", str(cfg), "--json"]) == 0
    out = capsys.readouterr().out
    status = json.loads(out)
    assert status["ok"] and status["stored"][0]["delivered_to"] == str(tmp_path / "site" / "tok")
    assert token not in out and (tmp_path / "store.key").read_text().strip() not in out


def test_wrong_key_is_one_clear_line(
    tmp_path: Path, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_cfg(tmp_path)
    cli.main(["creds", "keygen", str(tmp_path / "store.key")])
    source_token(tmp_path, clock, 7200)
    assert cli.main(["creds", "renew", "--cfg", str(cfg)]) == 0
    store = tmp_path / "store" / "local_site" / "store.bin"
    before = store.read_bytes()
    (tmp_path / "store.key").unlink()
    cli.main(["creds", "keygen", str(tmp_path / "store.key")])
    SCAN.secret((tmp_path / "store.key").read_text())
    capsys.readouterr()
    assert cli.main(["creds", "renew", "--cfg", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert out.count("does not decrypt with this setup's key") == 1
    assert "nothing was written" in out
    assert store.read_bytes() == before
