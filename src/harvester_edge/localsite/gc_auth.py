"""Globus Auth's client-credentials grant for the loopback Globus Compute service.

globus-sdk's ``ConfidentialAppAuthClient`` (and the ``ClientApp`` the Compute SDK builds from
``GLOBUS_COMPUTE_CLIENT_ID``/``SECRET``) posts ``grant_type=client_credentials&scope=...`` to
``<auth>/v2/oauth2/token`` with HTTP Basic client authentication and reads one token per
resource server (``resource_server``, ``other_tokens``).  The service then takes that
token as ``Authorization: Bearer``.  Tokens are random, expire (``expires_in``) and are
checked on every Compute route; the identity behind a token is
``<client_id>@clients.auth.globus.org``, as Globus Auth names a client identity.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

#: The Compute service's scope and resource server (globus_sdk.scopes.ComputeScopes).
COMPUTE_SCOPE = "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all"
COMPUTE_RESOURCE_SERVER = "funcx_service"
AUTH_RESOURCE_SERVER = "auth.globus.org"
_AUTH_SCOPES = ("openid", "profile", "email", "urn:globus:auth:scope:auth.globus.org:")


def resource_server_of(scope: str) -> str:
    """The resource server a scope string belongs to (Auth's own scopes, Compute's, or the
    ``https://auth.globus.org/scopes/<rs>/...`` form's ``<rs>``)."""
    if scope == COMPUTE_SCOPE:
        return COMPUTE_RESOURCE_SERVER
    if any(scope == s or scope.startswith(s) for s in _AUTH_SCOPES):
        return AUTH_RESOURCE_SERVER
    prefix = "https://auth.globus.org/scopes/"
    if scope.startswith(prefix):
        return scope[len(prefix) :].split("/", 1)[0]
    return scope


@dataclass(frozen=True)
class Grant:
    """What a bearer token stands for."""

    client_id: str
    resource_server: str
    expires_at: float

    @property
    def identity(self) -> str:
        return f"{self.client_id}@clients.auth.globus.org"


class OAuthError(Exception):
    """An OAuth error answer: ``{"error": code, "error_description": ...}``."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "error_description": self.description}


class TokenIssuer:
    """Registered confidential clients and the bearer tokens issued to them (thread-safe)."""

    def __init__(self) -> None:
        self._clients: dict[str, str] = {}
        self._tokens: dict[str, Grant] = {}
        self._lock = threading.Lock()

    def register_client(self, client_id: str, client_secret: str) -> None:
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret must not be empty")
        with self._lock:
            self._clients[client_id] = client_secret

    def issue(self, client_id: str, resource_server: str, lifetime: float) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = Grant(client_id, resource_server, time.time() + lifetime)
        return token

    def revoke(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def revoke_all(self) -> None:
        with self._lock:
            self._tokens.clear()

    def check(self, token: str, resource_server: str) -> Grant | None:
        """The grant of a live token for ``resource_server``; None when unknown/expired."""
        with self._lock:
            grant = self._tokens.get(token)
        if grant is None or grant.resource_server != resource_server:
            return None
        return grant if grant.expires_at > time.time() else None

    def _client_of(self, headers: Any, form: dict[str, list[str]]) -> str:
        """Authenticate the client (HTTP Basic, or client_id/client_secret in the form)."""
        client_id = secret = ""
        scheme, _, value = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError(401, "invalid_client", "malformed Basic credentials") from None
            client_id, _, secret = decoded.partition(":")
        else:
            client_id = (form.get("client_id") or [""])[0]
            secret = (form.get("client_secret") or [""])[0]
        with self._lock:
            expected = self._clients.get(client_id)
        if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
            raise OAuthError(401, "invalid_client", "unknown client or wrong secret")
        return client_id

    def token_answer(self, headers: Any, body: bytes, lifetime: float) -> dict[str, Any]:
        """Answer ``POST /v2/oauth2/token``: one token per resource server of the scopes."""
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        client_id = self._client_of(headers, form)
        grant_type = (form.get("grant_type") or [""])[0]
        if grant_type != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", f"grant_type {grant_type!r}")
        scopes = " ".join(form.get("scope") or []).split() or [COMPUTE_SCOPE]
        by_rs: dict[str, list[str]] = {}
        for scope in scopes:
            by_rs.setdefault(resource_server_of(scope), []).append(scope)
        tokens = [
            {
                "access_token": self.issue(client_id, rs, lifetime),
                "expires_in": int(lifetime),
                "resource_server": rs,
                "scope": " ".join(rs_scopes),
                "token_type": "Bearer",
                "state": "_default",
            }
            for rs, rs_scopes in by_rs.items()
        ]
        return {**tokens[0], "other_tokens": tokens[1:]}

    def introspect_answer(self, headers: Any, body: bytes) -> dict[str, Any]:
        """Answer ``POST /v2/oauth2/token/introspect`` (RFC 7662 as Globus Auth shapes it)."""
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        self._client_of(headers, form)
        token = (form.get("token") or [""])[0]
        with self._lock:
            grant = self._tokens.get(token)
        if grant is None or grant.expires_at <= time.time():
            return {"active": False}
        return {
            "active": True,
            "client_id": grant.client_id,
            "sub": grant.client_id,
            "username": grant.identity,
            "aud": [grant.resource_server],
            "exp": int(grant.expires_at),
            "token_type": "Bearer",
        }
