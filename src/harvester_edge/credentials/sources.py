"""Pilot credentials as another credential manager leaves them: token or proxy files.

We never make these (an IAM token manager or a VOMS proxy manager does); we read them,
learn their lifetime, and carry them to the facility.  A JWT tells ``iat``/``exp``; an X.509
proxy (PEM) tells ``notBefore``/``notAfter`` of its first certificate; anything else has no
known expiry (delivered when it changes).
"""

from __future__ import annotations

import base64
import json
import os
import stat
from dataclasses import dataclass

from cryptography import x509

from ..facilities.auth import jwt_expiry
from . import redaction


class SourceError(Exception):
    """The source file cannot be used (message names the file, never its content)."""


@dataclass(frozen=True)
class Pilot:
    """One pilot credential read from its source file."""

    data: bytes
    issued_at: float | None
    expires_at: float | None
    kind: str

    def __repr__(self) -> str:
        return f"Pilot({self.kind}, expires_at={self.expires_at})"


def read_source(path: str) -> Pilot:
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SourceError(f"pilot credential {path} cannot be read ({exc.strerror})") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise SourceError(
            f"pilot credential {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0600"
        )
    if not data.strip():
        raise SourceError(f"pilot credential {path} is empty")
    redaction.register(data)
    text = data.decode("utf-8", "replace").strip()
    if b"-----BEGIN CERTIFICATE-----" in data:
        try:
            cert = x509.load_pem_x509_certificate(data)
        except ValueError:
            raise SourceError(f"pilot credential {path} holds an unreadable certificate") from None
        return Pilot(
            data,
            cert.not_valid_before_utc.timestamp(),
            cert.not_valid_after_utc.timestamp(),
            "x509-proxy",
        )
    expires = jwt_expiry(text)
    if expires is not None:
        return Pilot(data, _jwt_claim(text, "iat"), expires, "jwt")
    return Pilot(data, None, None, "opaque")


def _jwt_claim(token: str, claim: str) -> float | None:
    try:
        part = token.split(".")[1]
        payload = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return None
    value = payload.get(claim) if isinstance(payload, dict) else None
    return float(value) if isinstance(value, (int, float)) else None
