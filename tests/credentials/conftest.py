"""Credential-manager tests: local stores and channels, and the session-wide secret scan.

Every log record of the session (any logger, any level, formatted with its exception text)
and every exception text a test hands to ``SCAN.exception`` is kept; at the end of the
session none of them may hold a secret value: a value the tests made (``SCAN.secret``) or
one the credential manager read (the redaction registry).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harvester_edge.credentials import redaction
from harvester_edge.credentials.store import new_key
from harvester_edge.edge import lifecycle


class SecretScan(logging.Handler):
    """Keeps every formatted record and exception text; ``leaks()`` finds secrets in them."""

    def __init__(self) -> None:
        super().__init__(level=1)
        self.texts: list[str] = []
        self.secrets: set[str] = set()
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.texts.append(self.format(record))
        except Exception as exc:  # a record that cannot format is itself worth a look
            self.texts.append(f"unformattable record {record.msg!r}: {exc}")

    def secret(self, value: str | bytes) -> str:
        text = value.decode() if isinstance(value, bytes) else value
        for part in (text.strip(), *text.splitlines()):
            if len(part.strip()) >= redaction.MIN_SECRET:
                self.secrets.add(part.strip())
        return text

    def exception(self, exc: BaseException | str) -> str:
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc} {exc!r}"
        self.texts.append(text)
        return text

    def leaks(self) -> list[str]:
        values = self.secrets | set(redaction._ordered)
        return [f"{v[:6]}... in {t[:120]!r}" for t in self.texts for v in values if v in t]


SCAN = SecretScan()


@pytest.fixture(scope="session", autouse=True)
def secret_scan() -> Iterator[SecretScan]:
    root = logging.getLogger()
    saved = root.level
    root.addHandler(SCAN)
    root.setLevel(1)
    for name in ("harvester_edge", "panda"):
        logging.getLogger(name).setLevel(1)
    # the wiring's own proof: a canary secret logged through a guarded logger
    canary = SCAN.secret("canary-" + os.urandom(12).hex())
    redaction.register(canary)
    redaction.guard_loggers()
    logging.getLogger("harvester_edge.credentials").warning(f"canary {canary}")
    yield SCAN
    root.removeHandler(SCAN)
    root.setLevel(saved)
    assert any("canary [redacted]" in t for t in SCAN.texts), "the scan is not wired"
    leaks = SCAN.leaks()
    assert not leaks, f"secret values in logs or exception texts: {leaks[:5]}"


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> None:
    if call.excinfo is not None:
        SCAN.exception(str(call.excinfo.value))


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
