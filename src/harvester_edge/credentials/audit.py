"""The audit trail: one JSON line per issue, renew, deliver, verify and revoke.

Each line holds the time (UTC), the setup, the kind of event, the credential's name, its
expiry, its fingerprint (``sha256:`` and 12 hex digits: which value, never the value), the
outcome and a short detail.  The file is created 0600 and only appended to.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from . import redaction
from .policy import clock

KINDS = ("issue", "renew", "deliver", "verify", "revoke")
_lock = threading.Lock()


class AuditLog:
    """Append-only JSON lines at ``path`` (directories made 0700 on first write)."""

    def __init__(self, path: str, setup: str):
        self.path = path
        self.setup = setup

    def __repr__(self) -> str:
        return f"AuditLog({self.path!r}, setup={self.setup!r})"

    def record(
        self, kind: str, name: str, *, expires_at: float | None = None,
        fingerprint: str = "", ok: bool = True, detail: str = "",
    ) -> dict[str, Any]:  # fmt: skip
        if kind not in KINDS:
            raise ValueError(f"unknown audit event kind {kind!r}")
        now = clock()
        entry = {
            "time": _iso(now),
            "setup": self.setup,
            "kind": kind,
            "credential": name,
            "expires": _iso(expires_at) if expires_at is not None else None,
            "fingerprint": fingerprint,
            "ok": ok,
            "detail": redaction.redact(detail)[:300],
        }
        line = json.dumps(entry, sort_keys=True) + "\n"
        with _lock:
            os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as out:
                out.write(line)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """Every line written so far (for ``creds status`` and tests)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []


def _iso(when: float) -> str:
    import datetime

    return (
        datetime.datetime.fromtimestamp(when, tz=datetime.timezone.utc)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )
