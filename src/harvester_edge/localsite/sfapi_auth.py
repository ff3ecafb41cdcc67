"""OAuth2 client-credentials with ``private_key_jwt`` (RFC 7523), as NERSC's SFAPI does it.

The loopback SFAPI gateway must authenticate the *real* ``sfapi_client`` (authlib underneath),
so the client signs a JWT assertion with its private key and we verify it with the registered
public key.  Access tokens are opaque random strings kept in memory with their expiry; no
token, key or assertion is ever logged or echoed in an error text.

Key files follow sfapi_client's format: the 13-character client id on the first line, then
the PEM private key (authlib/joserfc find the PEM block after that first line), mode 0600;
a ``.json`` file holds ``{"client_id", "secret"}`` instead.
"""

from __future__ import annotations

import json
import os
import secrets
import string
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

CLIENT_ID_LENGTH = 13
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Asymmetric algorithms only: accepting HS* would let a public key act as an HMAC secret.
ALGORITHMS = [
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
]
_ID_ALPHABET = string.ascii_lowercase + string.digits
_SigningPublicKey = RSAPublicKey | EllipticCurvePublicKey | Ed25519PublicKey | Ed448PublicKey


class AuthError(Exception):
    """A token request or bearer check failed; ``status`` and ``error`` go to the client."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        """OAuth2 error body (RFC 6749 §5.2)."""
        return {"error": self.error, "error_description": self.description}


def new_client_id() -> str:
    """A random client id of NERSC's length (sfapi_client refuses any other length)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(CLIENT_ID_LENGTH))


def _write_private(path: Path, text: str) -> None:
    """Write a secret file readable by its owner only (sfapi_client demands exactly 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT keeps the mode of an existing file
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def make_client_key(path: str | os.PathLike[str], client_id: str | None = None) -> tuple[str, str]:
    """Create an RSA client key file usable by ``sfapi_client.Client(key=path)``.

    :return: ``(client_id, public_key_pem)`` to pass to ``SFAPIGateway.register_client``.
    """
    client_id = client_id or new_client_id()
    if len(client_id) != CLIENT_ID_LENGTH or not client_id.isalnum():
        raise ValueError(f"client id must be {CLIENT_ID_LENGTH} alphanumeric characters")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = Path(path)
    if path.suffix == ".json":
        _write_private(path, json.dumps({"client_id": client_id, "secret": private_pem}))
    else:
        _write_private(path, f"{client_id}\n{private_pem}")
    return client_id, public_pem_of(key)


def public_pem_of(private_key: Any) -> str:
    """PEM of the public half of a private key object."""
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def load_client_key(path: str | os.PathLike[str]) -> tuple[str, str]:
    """Read an existing sfapi_client key file; return ``(client_id, public_key_pem)``."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        client_id, pem = str(data["client_id"]).strip(), data["secret"]
        if not isinstance(pem, str):
            raise ValueError("only PEM secrets are supported in .json key files")
    else:
        client_id, _, pem = text.partition("\n")
        client_id = client_id.strip()
    start = pem.find("-----BEGIN")
    if start < 0:
        raise ValueError(f"no PEM private key in {path}")
    key = serialization.load_pem_private_key(pem[start:].encode(), password=None)
    return client_id, public_pem_of(key)


@dataclass
class _Token:
    client_id: str
    expires_at: float  # time.monotonic()


class TokenAuthority:
    """Registered clients, issued tokens and the checks of both.

    :param lifetime: callable giving the lifetime of a new token (read per issue, so the
        ``token_lifetime`` knob applies to the next token).
    """

    def __init__(self, lifetime: Any = lambda: 600.0) -> None:
        self._lifetime = lifetime
        self._clients: dict[str, _SigningPublicKey] = {}
        self._tokens: dict[str, _Token] = {}
        self._seen_jti: dict[str, float] = {}
        self._lock = threading.Lock()

    def register_client(self, client_id: str, public_key_pem: str | bytes) -> None:
        """Accept assertions signed by the private half of ``public_key_pem`` for this id."""
        pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, _SigningPublicKey):
            raise ValueError("client keys must be RSA, EC or EdDSA public keys")
        with self._lock:
            self._clients[client_id] = key

    def issue(self, form: dict[str, str], audiences: set[str]) -> dict[str, Any]:
        """Answer a client_credentials token request or raise AuthError."""
        if form.get("grant_type") != "client_credentials":
            raise AuthError(400, "unsupported_grant_type", "only client_credentials is supported")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            raise AuthError(401, "invalid_client", "a private_key_jwt client assertion is required")
        client_id = self._verify_assertion(form["client_assertion"], audiences)
        if form.get("client_id") and form["client_id"] != client_id:
            raise AuthError(401, "invalid_client", "client_id does not match the assertion")
        lifetime = float(self._lifetime())
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._tokens = {k: t for k, t in self._tokens.items() if t.expires_at > now}
            self._tokens[token] = _Token(client_id, now + lifetime)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(lifetime) if lifetime == int(lifetime) else lifetime,
            "scope": "",
        }

    def check_bearer(self, authorization: str | None) -> str | None:
        """The client id owning a valid, unexpired bearer token, else None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        with self._lock:
            entry = self._tokens.get(token.strip())
        if entry is None or entry.expires_at <= time.monotonic():
            return None
        return entry.client_id

    # ------------------------------------------------------------------ internals
    def _verify_assertion(self, assertion: str, audiences: set[str]) -> str:
        invalid = AuthError(401, "invalid_client", "client assertion rejected")
        try:
            claimed = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise invalid from None
        issuer = claimed.get("iss")
        if not isinstance(issuer, str):
            raise invalid
        with self._lock:
            key = self._clients.get(issuer)
        if key is None:
            raise AuthError(401, "invalid_client", "unknown client")
        try:
            claims = jwt.decode(
                assertion,
                key,
                algorithms=ALGORITHMS,
                audience=sorted(audiences),
                issuer=issuer,
                options={"require": ["exp", "iss", "sub", "aud"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "invalid_client", "client assertion expired") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise invalid from None
        if claims.get("sub") != issuer:
            raise invalid
        self._check_replay(claims)
        return issuer

    def _check_replay(self, claims: dict[str, Any]) -> None:
        """Refuse a reused ``jti`` while its assertion is still valid (RFC 7523 §3, item 7)."""
        jti = claims.get("jti")
        if not isinstance(jti, str):
            return
        now = time.time()
        with self._lock:
            self._seen_jti = {k: exp for k, exp in self._seen_jti.items() if exp > now}
            if jti in self._seen_jti:
                raise AuthError(401, "invalid_client", "client assertion replayed")
            self._seen_jti[jti] = float(claims.get("exp", now))
