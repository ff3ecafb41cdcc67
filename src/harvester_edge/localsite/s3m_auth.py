"""OLCF project access tokens, as the loopback S3M gateway issues and checks them.

A real project access token is a JWT whose payload is ``{description, type: "opat", aud:
"api.olcf.ornl.gov", nbf, iat, jti}``: it carries **no** ``exp`` and no project; the service
keeps the planned expiration, the project and the permissions server side and tells them
only through ``GET /olcf/v1/token/ctls/introspect``.  This authority does the same: it signs
its tokens with its own random key (HS256, pyjwt), stores the rest per ``jti`` and answers
the checks of every authenticated route.  A token is never logged and never part of an error.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

AUDIENCE = "api.olcf.ornl.gov"
TOKEN_TYPE = "opat"
#: Permissions a project member may give a token in myOLCF.
PERMISSIONS = ("compute-ace", "compute-ace-readonly", "data-streaming")
_ALGORITHM = "HS256"


def iso_z(epoch: float) -> str:
    """UNIX seconds as S3M writes times: ``2024-11-08T14:45:38Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class TokenRefused(Exception):
    """A request's token was refused: ``status`` 401 (missing, unknown, revoked, bad
    signature) or 403 (expired, or lacking a permission); ``message`` says which."""

    def __init__(self, status: int, message: str, expired: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.expired = expired


@dataclass
class ProjectToken:
    """What the service knows of one token (never the token text itself)."""

    jti: str
    project: str
    username: str
    description: str
    planned_expiration: float  # UNIX seconds
    permissions: tuple[str, ...]
    security_enclave: str = "open"
    revoked: bool = False
    issued_at: float = field(default_factory=time.time)

    def introspection(self) -> dict[str, Any]:
        """The ``token`` object of ``GET /olcf/v1/token/ctls/introspect``."""
        return {
            "username": self.username,
            "project": self.project,
            "plannedExpiration": iso_z(self.planned_expiration),
            "securityEnclave": self.security_enclave,
            "description": self.description,
            "oneTimeToken": False,
            "delayedStart": False,
            "delayDate": None,
        }


class ProjectTokenAuthority:
    """Issues project access tokens and checks the ``Authorization`` header of requests."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)
        self._tokens: dict[str, ProjectToken] = {}
        self._lock = threading.Lock()

    def issue(
        self,
        *,
        project: str,
        username: str,
        expires_in: float,
        description: str = "",
        permissions: tuple[str, ...] | list[str] = ("compute-ace",),
        security_enclave: str = "open",
    ) -> str:
        """A new signed token; its planned expiration is ``expires_in`` seconds from now."""
        unknown = set(permissions) - set(PERMISSIONS)
        if unknown:
            raise ValueError(f"unknown permission(s): {', '.join(sorted(unknown))}")
        if expires_in < 0:
            raise ValueError("expires_in must not be negative")
        now = time.time()
        jti = secrets.token_hex(16)
        claims = {
            "description": description,
            "type": TOKEN_TYPE,
            "aud": AUDIENCE,
            "nbf": int(now),
            "iat": int(now),
            "jti": jti,
        }
        token = jwt.encode(claims, self._key, algorithm=_ALGORITHM)
        with self._lock:
            self._tokens[jti] = ProjectToken(
                jti=jti,
                project=project,
                username=username,
                description=description,
                planned_expiration=now + expires_in,
                permissions=tuple(permissions),
                security_enclave=security_enclave,
            )
        return token

    def check(self, authorization: str | None, permission: str | None = None) -> ProjectToken:
        """The token record of a request, or TokenRefused.

        ``authorization`` is the raw header: ``<token>`` (as OLCF documents) or
        ``Bearer <token>``.  ``permission``: ``compute-ace`` for routes that change things;
        ``compute-ace-readonly`` is enough for reads (a full ``compute-ace`` token also reads).
        """
        token = _token_of(authorization)
        if not token:
            raise TokenRefused(401, "missing authorization token")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                audience=AUDIENCE,
                options={"require": ["jti", "iat", "nbf", "aud"]},
                leeway=5,
            )
        except jwt.PyJWTError:
            raise TokenRefused(401, "invalid authorization token") from None
        if claims.get("type") != TOKEN_TYPE:
            raise TokenRefused(401, "invalid authorization token")
        with self._lock:
            record = self._tokens.get(str(claims["jti"]))
        if record is None or record.revoked:
            raise TokenRefused(401, "invalid authorization token")
        if time.time() >= record.planned_expiration:
            raise TokenRefused(
                403,
                f"token expired at {iso_z(record.planned_expiration)} (plannedExpiration)",
                expired=True,
            )
        if permission is not None and not _allows(record.permissions, permission):
            raise TokenRefused(403, f"token lacks the {permission} permission")
        return record

    def revoke(self, jti: str) -> None:
        """Revoke a token for good (it answers 401 from now on)."""
        with self._lock:
            record = self._tokens.get(jti)
            if record is not None:
                record.revoked = True

    def get(self, jti: str) -> ProjectToken | None:
        with self._lock:
            return self._tokens.get(jti)


def _allows(granted: tuple[str, ...], wanted: str) -> bool:
    if wanted in granted:
        return True
    return wanted == "compute-ace-readonly" and "compute-ace" in granted


def _token_of(header: str | None) -> str:
    """The token of an ``Authorization`` header: raw, or after ``Bearer``."""
    value = (header or "").strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip()
    return value


def write_token_file(path: str | os.PathLike[str], token: str) -> Path:
    """Write a token to a file readable by its owner only (mode 0600, also when it existed)."""
    path = Path(path).expanduser()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    return path
