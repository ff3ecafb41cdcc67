"""Credential-manager tests: local stores and channels.  Secret values the tests make are
registered with the suite-wide secret scan (``tests/secret_scan.py``) through ``SCAN.secret``."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from harvester_edge.credentials.store import new_key
from harvester_edge.edge import lifecycle
from harvester_edge.plugins.credmanager import EdgeCredManager

from ..secret_scan import SCAN, SecretScan

__all__ = ["SCAN", "SecretScan"]


class Clock:
    """``lifecycle.now`` under the test's control (time travel, no sleeping)."""

    def __init__(self, start: float):
        self.t = start

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(time.time())
    monkeypatch.setattr(lifecycle, "now", c)
    return c


def write_private(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def make_jwt(iat: float, exp: float, sub: str = "pilot") -> str:
    """An unsigned-looking JWT with iat/exp (the manager reads, never verifies, pilot JWTs)."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    nonce = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
    claims = {"sub": sub, "iat": int(iat), "exp": int(exp), "jti": nonce}
    token = f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{nonce}"
    SCAN.secret(token)
    return token


@pytest.fixture
def store_key(tmp_path: Path) -> Path:
    key = new_key()
    SCAN.secret(key)
    return write_private(tmp_path / "store.key", key + "\n")


@contextmanager
def reading(path: Path) -> Iterator[list[bytes]]:
    """Read ``path`` over and over in a thread while the block writes it; what was seen (each
    read whole), for asserting that no reader ever sees a partial file."""
    seen: list[bytes] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(path.read_bytes())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def pilot_token(root: Path) -> list[dict[str, str]]:
    """``pilotCredentials`` of one ``panda_token`` read from ``root/src/tok`` and delivered
    to ``root/site/pilot/panda_token``."""
    return [
        {"name": "panda_token", "source": str(root / "src" / "tok"),
         "remotePath": str(root / "site" / "pilot" / "panda_token")}
    ]  # fmt: skip


def refused_again(cm: EdgeCredManager) -> str:
    """Renew with a fresh manager of ``cm``'s configuration, which must be refused; the
    message, checked for secrets."""
    ok, message = EdgeCredManager(**cm._kwargs).renew_credential()
    SCAN.exception(message)
    assert not ok
    return message


def source_token(root: Path, clock: Clock, lifetime: float = 3600) -> str:
    """A new pilot token valid for ``lifetime`` seconds from now in the source ``root/src/tok``
    (``pilot_token``'s), as its own manager would renew it; the token."""
    token = make_jwt(clock.t, clock.t + lifetime)
    write_private(root / "src" / "tok", token)
    return token


def renewed_to(cm: EdgeCredManager, root: Path, token: str) -> Path:
    """Renew with ``cm``, which must succeed and leave ``token`` in ``pilot_token``'s remote
    file, mode 0600; that file."""
    ok, message = cm.renew_credential()
    assert ok, message
    dest = root / "site" / "pilot" / "panda_token"
    assert dest.read_text() == token and dest.stat().st_mode & 0o777 == 0o600
    return dest
