"""The Globus Compute delivery channel end to end: the credential manager seals a pilot
credential, the queue's shared GC client runs the site receiver (shipped by source) on the
loopback GC service's login-node endpoint (local provider: no Slurm), the receiver writes
it 0600 and answers the read-back checksum.  What the service received is recorded: never
the plaintext, never a key.  Also: tampering refused on the site, two setups kept apart,
the facility credential validated by a grant (a refused client stops the throttler)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harvester_edge.credentials import site_receiver
from harvester_edge.credentials.store import new_key
from harvester_edge.edge.health import GATE
from harvester_edge.facilities import gc_functions
from harvester_edge.facilities.registry import forget_clients
from harvester_edge.localsite.gc_knobs import GCKnobs
from harvester_edge.localsite.gc_service import GCService, start_gc_service
from harvester_edge.plugins import throttler as throttler_module
from harvester_edge.plugins.credmanager import EdgeCredManager

from .conftest import (
    SCAN,
    Clock,
    make_jwt,
    pilot_token,
    refused_again,
    renewed_to,
    source_token,
    write_private,
)

QUEUE = "GC_CRED_QUEUE"


class Wire:
    """Every request body the service received (the service's own view of the wire)."""

    def __init__(self, svc: GCService):
        self.bodies: list[tuple[str, bytes]] = []
        #: what the service answered (task results included)
        self.answers: list[str] = []
        #: flip one ciphertext bit of every envelope submitted (a party on the way)
        self.tamper = False
        self._lock = threading.Lock()
        handle = svc.handle

        def recording(request: Any) -> Any:
            with self._lock:
                self.bodies.append((request.path, bytes(request.body or b"")))
            if self.tamper and request.path.endswith("/submit"):
                request = dataclasses.replace(request, body=tampered(request.body))
            answer = handle(request)
            if answer is not None:
                with self._lock:
                    self.answers.append(json.dumps(answer[1], default=str))
            return answer

        svc.handle = recording  # type: ignore[method-assign]

    def text(self) -> str:
        with self._lock:
            return "\n".join(b.decode("utf-8", "replace") for _, b in self.bodies)

    def paths(self) -> list[str]:
        with self._lock:
            return [p for p, _ in self.bodies]

    def submitted(self) -> list[dict[str, Any]]:
        """The keyword arguments of every task submitted, unpacked as the endpoint does."""
        from globus_compute_sdk.serialize import ComputeSerializer

        serde = ComputeSerializer()
        out = []
        with self._lock:
            bodies = [b for p, b in self.bodies if p.endswith("/submit")]
        for body in bodies:
            for payloads in json.loads(body)["tasks"].values():
                for payload in payloads:
                    args, kwargs = (serde.deserialize(b) for b in serde.unpack_buffers(payload))
                    assert args == ()
                    out.append(dict(kwargs))
        return out

    def clear(self) -> None:
        with self._lock:
            self.bodies.clear()
            self.answers.clear()


def tampered(body: bytes) -> bytes:
    """A submit body whose envelopes carry one changed ciphertext bit, re-packed as the SDK
    packs them (the receiver's own check must catch it)."""
    from globus_compute_sdk.serialize import ComputeSerializer

    serde = ComputeSerializer()
    doc = json.loads(body)
    for fid, payloads in doc["tasks"].items():
        changed = []
        for payload in payloads:
            args, kwargs = (serde.deserialize(b) for b in serde.unpack_buffers(payload))
            env = json.loads(kwargs["envelope"])
            ct = bytearray(base64.b64decode(env["ct"]))
            ct[5] ^= 0x01
            env["ct"] = base64.b64encode(bytes(ct)).decode()
            kwargs["envelope"] = json.dumps(env)
            changed.append(serde.pack_buffers([serde.serialize(args), serde.serialize(kwargs)]))
        doc["tasks"][fid] = changed
    return json.dumps(doc).encode()


@pytest.fixture(scope="module")
def gc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GCService, Wire, Path]]:
    root = tmp_path_factory.mktemp("gc-cred")
    svc = start_gc_service(work_dir=root / "endpoint", knobs=GCKnobs())
    SCAN.secret(svc.client_secret)
    secret = write_private(root / "gc-client.secret", svc.client_secret + "\n")
    wire = Wire(svc)
    try:
        yield svc, wire, secret
    finally:
        svc.stop()
        forget_clients()
        GATE.forget()


@pytest.fixture(autouse=True)
def fresh(gc: tuple[GCService, Wire, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    svc, wire, _ = gc
    forget_clients()
    gc_functions.forget_functions()  # the rate bucket is kept: the service's window is too
    GATE.forget()
    monkeypatch.setattr(throttler_module, "_bindings", {})
    wire.clear()
    yield
    svc.knobs.update(task_delay=0)
    wire.tamper = False


def facility(svc: GCService, secret: Path, **overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "module": "harvester_edge.plugins.globus_compute",
        "name": "GCSubmitter",
        "queueName": QUEUE,
        "endpointId": svc.endpoint_id,
        "serviceUrl": svc.url,
        "authUrl": svc.auth_url,
        "clientId": svc.client_id,
        "clientSecretFile": str(secret),
        "userEndpointConfig": {"provider": "local"},
        "connectTimeout": 2,
        "readTimeout": 5,
        "callDeadline": 20,
        "retryBackoff": 0.1,
    }
    section.update(overrides)
    return section


def keypair(root: Path) -> tuple[Path, Path]:
    """Harvester's envelope key and the site's copy (same key, two 0600 files)."""
    key = SCAN.secret(new_key())
    return (
        write_private(root / "harvester" / "envelope.key", key + "\n"),
        write_private(root / "site" / "envelope.key", key + "\n"),
    )


def manager(
    root: Path, store_key: Path, section: dict[str, Any], keys: tuple[Path, Path], **extra: Any
) -> EdgeCredManager:
    values: dict[str, Any] = {
        "setup_name": "gc_site",
        "queues": [QUEUE],
        "channel": "globus-compute",
        "facility": section,
        "envelopeKeyFile": str(keys[0]),
        "siteKeyFile": str(keys[1]),
        "deliveryWaitSeconds": 60,
        "storeDir": str(root / "store"),
        "storeKeyFile": str(store_key),
        "pilotCredentials": pilot_token(root),
    }  # fmt: skip
    values.update(extra)
    return EdgeCredManager(**values)


def holding(
    tmp_path: Path, store_key: Path, clock: Clock, section: dict[str, Any], **extra: Any
) -> EdgeCredManager:
    """A manager with a fresh key pair whose source holds a token valid for an hour."""
    keys = keypair(tmp_path)
    source_token(tmp_path, clock)
    return manager(tmp_path, store_key, section, keys, **extra)


def test_delivered_through_globus_compute(
    tmp_path: Path, store_key: Path, gc: tuple[GCService, Wire, Path], clock: Clock
) -> None:
    svc, wire, secret = gc
    keys = keypair(tmp_path)
    token = source_token(tmp_path, clock)
    cm = manager(tmp_path, store_key, facility(svc, secret), keys)
    dest = renewed_to(cm, tmp_path, token)
    assert cm.check_credential()
    # the receipt is the receiver's read-back, compared with what was sent
    verify = [e for e in cm.keeper().audit.entries() if e["kind"] == "verify"]
    assert verify and "mode 0600" in verify[-1]["detail"]
    stored = cm.keeper().store().load()["panda_token"]
    assert stored.delivered_to == str(dest)
    assert stored.delivered_checksum == "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    # through the service: one registration (by source), one submit, status reads
    paths = wire.paths()
    assert sum(p.endswith("/functions") for p in paths) == 1
    assert sum(p.endswith("/submit") for p in paths) == 1
    assert gc_functions.REGISTRATIONS[-1] == "receive"
    registration = json.loads(next(b for p, b in wire.bodies if p.endswith("/functions")))
    assert registration["function_name"] == "receive"
    code = registration["function_code"]
    assert "def receive(" in code and "harvester_edge" not in code.split("def receive(")[1]
    # the wire: ciphertext only, the site key by path, never a key or the plaintext
    site_key = keys[1].read_text().strip()
    raw_key = base64.urlsafe_b64decode(site_key)
    (sent,) = wire.submitted()
    assert sorted(sent) == ["dest", "envelope", "key_file"]
    assert sent["key_file"] == str(keys[1]) and sent["dest"] == str(dest)
    assert site_receiver.open_envelope(sent["envelope"], str(dest), raw_key) == token.encode()
    assert any('"result"' in a for a in wire.answers)  # the receipt came back this way
    for text in (wire.text(), json.dumps(sent), "\n".join(wire.answers)):
        for value in (token, site_key, svc.client_secret, *token.split(".")):
            assert value not in text
        assert base64.b64encode(token.encode()).decode()[:40] not in text
        assert base64.b64encode(raw_key).decode() not in text


def test_second_delivery_reuses_the_registration(
    tmp_path: Path, store_key: Path, gc: tuple[GCService, Wire, Path], clock: Clock
) -> None:
    svc, wire, secret = gc
    cm = holding(tmp_path, store_key, clock, facility(svc, secret))
    assert cm.renew_credential()[0]
    newer = source_token(tmp_path, clock, 7200)
    ok, message = EdgeCredManager(**cm._kwargs).renew_credential()
    assert ok, message
    assert (tmp_path / "site" / "pilot" / "panda_token").read_text() == newer
    assert sum(p.endswith("/functions") for p in wire.paths()) == 1
    assert sum(p.endswith("/submit") for p in wire.paths()) == 2


def test_tampered_payload_refused_on_the_site(
    tmp_path: Path,
    store_key: Path,
    gc: tuple[GCService, Wire, Path],
    clock: Clock,
) -> None:
    svc, wire, secret = gc
    keys = keypair(tmp_path)
    first = source_token(tmp_path, clock)
    section = facility(svc, secret)
    cm = manager(tmp_path, store_key, section, keys)
    assert cm.renew_credential()[0]

    source_token(tmp_path, clock, 7200)
    wire.clear()
    wire.tamper = True  # in the service, between Harvester and the endpoint
    message = refused_again(cm)
    # the site's own refusal, carried back as the task's failure
    assert "payload refused: authentication failed (tampered in transit)" in message
    assert "stays in place" in message
    assert sum(p.endswith("/submit") for p in wire.paths()) == 1
    assert (tmp_path / "site" / "pilot" / "panda_token").read_text() == first


def test_two_setups_kept_apart(
    tmp_path: Path, store_key: Path, gc: tuple[GCService, Wire, Path], clock: Clock
) -> None:
    svc, _, secret = gc
    section = facility(svc, secret)
    a_root, b_root = tmp_path / "a", tmp_path / "b"
    a_keys, b_keys = keypair(a_root), keypair(b_root)
    a_tok, b_tok = make_jwt(clock.t, clock.t + 3600, "a"), make_jwt(clock.t, clock.t + 3600, "b")
    write_private(a_root / "src" / "tok", a_tok)
    write_private(b_root / "src" / "tok", b_tok)
    store = str(tmp_path / "store")  # one store root, as on one Harvester node
    a = manager(a_root, store_key, section, a_keys, setup_name="gc_a", storeDir=store)
    b = manager(b_root, store_key, section, b_keys, setup_name="gc_b", storeDir=store)
    assert a.renew_credential()[0] and b.renew_credential()[0]
    assert (a_root / "site" / "pilot" / "panda_token").read_text() == a_tok
    assert (b_root / "site" / "pilot" / "panda_token").read_text() == b_tok
    # B may not write A's path ...
    a_path = str(a_root / "site" / "pilot" / "panda_token")
    pilots = [{"name": "panda_token", "source": str(b_root / "src" / "tok"), "remotePath": a_path}]
    thief = manager(
        b_root, store_key, section, b_keys, setup_name="gc_c", storeDir=store,
        pilotCredentials=pilots,
    )  # fmt: skip
    ok, message = thief.renew_credential()
    assert not ok and "belongs to setup gc_a" in message
    # ... and B's envelope does not open with A's site key
    other = manager(
        b_root, store_key, section, (b_keys[0], a_keys[1]), setup_name="gc_d",
        storeDir=store, pilotCredentials=[{**pilots[0], "remotePath": str(b_root / "d" / "t")}],
    )  # fmt: skip
    ok, message = other.renew_credential()
    SCAN.exception(message)
    assert not ok and "sealed with another key than this site's" in message
    assert not (b_root / "d" / "t").exists()
    assert (a_root / "site" / "pilot" / "panda_token").read_text() == a_tok


def test_delivery_waits_no_longer_than_configured(
    tmp_path: Path, store_key: Path, gc: tuple[GCService, Wire, Path], clock: Clock
) -> None:
    svc, _, secret = gc
    svc.knobs.update(task_delay=4.0)
    cm = holding(tmp_path, store_key, clock, facility(svc, secret), deliveryWaitSeconds=1)
    ok, message = cm.renew_credential()
    assert not ok and "no result within 1s" in message
    assert "nothing was delivered before" in message


def test_channel_needs_a_gc_facility(tmp_path: Path, store_key: Path, clock: Clock) -> None:
    cm = holding(tmp_path, store_key, clock, {})
    ok, message = cm.renew_credential()
    assert not ok and "channel globus-compute needs 'facility'" in message


def test_facility_credential_validated_by_a_grant(
    tmp_path: Path, store_key: Path, gc: tuple[GCService, Wire, Path], clock: Clock
) -> None:
    svc, _, secret = gc
    cm = holding(tmp_path, store_key, clock, facility(svc, secret))
    ok, notes = cm.keeper().check()
    assert not ok and any("not validated yet: a grant is due" in n for n in notes)
    ok, message = cm.renew_credential()
    assert ok, message
    assert f"Globus Compute client {svc.client_id} validated by a grant" in message
    assert cm.check_credential()
    grants = [e for e in cm.keeper().audit.entries() if e["credential"] == "globus-compute-grant"]
    assert grants and grants[-1]["ok"]
    assert (
        throttler_module._binding_for(facility(svc, secret)).client().credential().problem is None
    )


def test_refused_client_stops_the_throttler(
    tmp_path: Path, store_key: Path, gc: tuple[GCService, Wire, Path], clock: Clock
) -> None:
    svc, _, _ = gc
    wrong = SCAN.secret("wrong-" + os.urandom(12).hex())
    bad_secret = write_private(tmp_path / "bad.secret", wrong + "\n")
    section = facility(svc, bad_secret)
    cm = holding(tmp_path, store_key, clock, section)
    ok, message = cm.renew_credential()
    SCAN.exception(message)
    assert not ok and "not usable" in message and "refused" in message
    assert "pilot credentials not delivered" in message
    assert not (tmp_path / "site" / "pilot" / "panda_token").exists()
    facts = throttler_module._binding_for(section).client().credential()
    assert facts.problem and "refused" in facts.problem
    assert wrong not in message


def test_family_channel_says_how_to_deliver(
    tmp_path: Path, store_key: Path, gc: tuple[GCService, Wire, Path], clock: Clock
) -> None:
    """A GC facility with the family's channel ("") names the envelope channel's keys."""
    svc, _, secret = gc
    cm = holding(tmp_path, store_key, clock, facility(svc, secret), channel="")
    ok, message = cm.renew_credential()
    assert not ok and "validated by a grant" in message
    assert "set channel 'globus-compute', envelopeKeyFile and siteKeyFile" in message
