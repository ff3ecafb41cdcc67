"""End-to-end encrypted delivery (the Globus Compute channel's crypto), with the site
receiver run in another process as it runs on the facility: accepted payloads arrive
0600 with a matching checksum; tampered, misaddressed, stale or foreign ones are refused
and nothing is written."""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harvester_edge.credentials import site_receiver
from harvester_edge.credentials.delivery import DeliveryError, envelope_channel
from harvester_edge.credentials.envelope import seal
from harvester_edge.credentials.families import CHANNELS
from harvester_edge.credentials.store import new_key
from harvester_edge.plugins.credmanager import EdgeCredManager

from .conftest import (
    SCAN,
    Clock,
    pilot_token,
    reading,
    refused_again,
    renewed_to,
    source_token,
    write_private,
)


def site(envelope: str, dest: str, key_file: str) -> dict[str, Any]:
    """The facility side: ``python -m ...site_receiver`` with the envelope on stdin."""
    proc = subprocess.run(
        [sys.executable, "-m", "harvester_edge.credentials.site_receiver",
         "--key-file", key_file, "--dest", dest],
        input=envelope, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip())
    return dict(json.loads(proc.stdout))


def tampered(envelope: str, dest: str, key_file: str) -> dict[str, Any]:
    env = json.loads(envelope)
    body = bytearray(base64.b64decode(env["ct"]))
    body[3] ^= 0x40  # one bit on the way
    env["ct"] = base64.b64encode(bytes(body)).decode()
    return site(json.dumps(env), dest, key_file)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    key = SCAN.secret(new_key())
    here = write_private(tmp_path / "harvester" / "envelope.key", key)
    there = write_private(tmp_path / "site" / "envelope.key", key)
    return here, there


@pytest.fixture
def gc_channel(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The receiver run by a subprocess in place of Globus Compute (``test_gc_delivery``
    runs it through the loopback Globus Compute service)."""
    runners: dict[str, Any] = {"run": site}
    monkeypatch.setitem(
        CHANNELS, "globus-compute",
        lambda options: envelope_channel(options, lambda *a: runners["run"](*a)),
    )  # fmt: skip
    yield runners


def manager(tmp_path: Path, store_key: Path, keys: tuple[Path, Path]) -> EdgeCredManager:
    return EdgeCredManager(
        setup_name="olcf_frontier",
        channel="globus-compute",
        envelopeKeyFile=str(keys[0]),
        siteKeyFile=str(keys[1]),
        storeDir=str(tmp_path / "store"),
        storeKeyFile=str(store_key),
        pilotCredentials=pilot_token(tmp_path),
    )  # fmt: skip


def test_delivered_through_envelope(
    tmp_path: Path, store_key: Path, keys: tuple[Path, Path], gc_channel: Any, clock: Clock
) -> None:
    token = source_token(tmp_path, clock)
    cm = manager(tmp_path, store_key, keys)
    renewed_to(cm, tmp_path, token)
    assert cm.check_credential()
    verify = [e for e in cm.keeper().audit.entries() if e["kind"] == "verify"]
    assert verify and "mode 0600" in verify[0]["detail"]


def test_tampered_payload_refused_on_site(
    tmp_path: Path, store_key: Path, keys: tuple[Path, Path], gc_channel: Any, clock: Clock
) -> None:
    first = source_token(tmp_path, clock)
    cm = manager(tmp_path, store_key, keys)
    assert cm.renew_credential()[0]
    source_token(tmp_path, clock, 7200)
    gc_channel["run"] = tampered
    message = refused_again(cm)
    assert "authentication failed (tampered in transit)" in message
    assert "stays in place" in message
    assert (tmp_path / "site" / "pilot" / "panda_token").read_text() == first


def test_receiver_refusals(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    key = base64.urlsafe_b64decode(keys[1].read_text().strip())
    dest = str(tmp_path / "site" / "x" / "tok")
    good = seal(b"payload-0123456789", key=key, dest=dest, setup="s", name="n", issued=1000.0)
    assert site_receiver.open_envelope(good, dest, key, now=1001.0) == b"payload-0123456789"
    with pytest.raises(ValueError, match="another path"):
        site_receiver.open_envelope(good, dest + "2", key, now=1001.0)
    with pytest.raises(ValueError, match="a replay"):
        site_receiver.open_envelope(good, dest, key, now=5000.0)
    other = base64.urlsafe_b64decode(SCAN.secret(new_key()))
    with pytest.raises(ValueError, match="another key"):
        site_receiver.open_envelope(good, dest, other, now=1001.0)
    env = json.loads(good)
    env["dest"] = dest + "2"  # re-addressed in transit: the header is authenticated
    with pytest.raises(ValueError, match="tampered"):
        site_receiver.open_envelope(json.dumps(env), dest + "2", key, now=1001.0)
    with pytest.raises(ValueError, match="not a harvester-edge envelope"):
        site_receiver.open_envelope("{}", dest, key)
    assert not Path(dest).exists()


def test_reader_never_sees_a_partial_file(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    dest = tmp_path / "site" / "r" / "tok"
    contents = [b"A" * 70000, b"B" * 10, b"C" * 300000]
    key = base64.urlsafe_b64decode(keys[1].read_text().strip())
    env = seal(contents[0], key=key, dest=str(dest), setup="s", name="n", issued=time.time())
    site_receiver.receive(env, str(dest), str(keys[1]))
    with reading(dest) as seen:
        for i in range(30):
            data = contents[i % 3]
            env = seal(data, key=key, dest=str(dest), setup="s", name="n", issued=time.time())
            answer = site_receiver.receive(env, str(dest), str(keys[1]))
            assert answer["mode"] == "0600" and answer["sha256"].endswith(
                hashlib.sha256(data).hexdigest()
            )
    assert seen and all(s in contents for s in seen)


def test_envelope_key_file_must_be_private(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    keys[0].chmod(0o644)
    options = type("O", (), {"envelopeKeyFile": str(keys[0]), "siteKeyFile": str(keys[1])})
    with pytest.raises(DeliveryError, match="0600"):
        envelope_channel(options, site)


def test_receive_ships_by_source(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """What Globus Compute's source serializer does: ``receive`` alone, in a namespace with
    nothing of harvester-edge, still opens, verifies and writes."""
    namespace: dict[str, Any] = {}
    source = textwrap.dedent(inspect.getsource(site_receiver.receive))
    exec(compile("from typing import Any\n" + source, "<shipped>", "exec"), namespace)
    key = base64.urlsafe_b64decode(keys[1].read_text().strip())
    dest = str(tmp_path / "site" / "shipped" / "tok")
    env = seal(b"shipped-payload-xyz", key=key, dest=dest, setup="s", name="n", issued=time.time())
    answer = namespace["receive"](env, dest, str(keys[1]))
    assert Path(dest).read_bytes() == b"shipped-payload-xyz" and answer["mode"] == "0600"
