"""The file operations the loopback gateways gained for credential delivery stay confined:
the SFAPI command utility's mkdir/chmod/mv (octal modes, few options, paths in the roots)
and the IRI filesystem tasks."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from harvester_edge.facilities.registry import forget_clients
from harvester_edge.localsite.sfapi_gateway import SFAPIGateway, make_client_key
from harvester_edge.plugins.sfapi import SFAPIBinding


@pytest.fixture
def run(tmp_path: Path) -> Iterator[object]:
    key = tmp_path / "iris.pem"
    client_id, public = make_client_key(key)
    (tmp_path / "site").mkdir()
    gw = SFAPIGateway(workdir=tmp_path / "site", file_roots=[tmp_path / "site"])
    gw.register_client(client_id, public)
    with gw:
        section = {
            "apiUrl": gw.api_url, "tokenUrl": gw.token_url, "keyFile": str(key),
            "machine": "perlmutter", "retryBackoff": 0.1,
        }  # fmt: skip
        client = SFAPIBinding(section, "test").client()
        yield lambda line: client.run_commands([line])[0]  # type: ignore[attr-defined]
    forget_clients()


@pytest.mark.parametrize(
    "line",
    [
        "chmod u+x {site}/f",  # symbolic modes are not taken
        "chmod -R 700 {site}",  # no options but the mode
        "mkdir -v {site}/d",
        "mv -t {site} {site}/f",
        "mv {site}/f",  # two paths
        "mv {site}/f /etc/passwd-copy",  # outside the roots
        "mkdir -p /tmp/outside-the-roots-xyz",
    ],
)
def test_refused(run: object, tmp_path: Path, line: str) -> None:
    (tmp_path / "site" / "f").write_text("x")
    state, result, error = run(line.format(site=shlex.quote(str(tmp_path / "site"))))  # type: ignore[operator]
    assert state == "refused" or result.get("exit_code") is None, (state, result, error)
    assert (tmp_path / "site" / "f").exists()
    assert not Path("/tmp/outside-the-roots-xyz").exists()


def test_allowed(run: object, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "f").write_text("x")
    for line in (
        f"mkdir -p -m 700 {site}/a/b",
        f"chmod 600 {site}/f",
        f"mv -f {site}/f {site}/a/b/g",
    ):
        state, result, _ = run(line)  # type: ignore[operator]
        assert state == "done" and result["exit_code"] == 0, result
    assert (site / "a" / "b").stat().st_mode & 0o777 == 0o700
    assert (site / "a" / "b" / "g").stat().st_mode & 0o777 == 0o600
