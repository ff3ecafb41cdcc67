"""Headless credentials for Globus Compute: a confidential client, or a token handed over.

- A confidential client (``clientId`` + ``clientSecret``, or the SDK's own environment
  variables ``GLOBUS_COMPUTE_CLIENT_ID``/``GLOBUS_COMPUTE_CLIENT_SECRET``): globus-sdk's
  ``ClientCredentialsAuthorizer`` over a ``ConfidentialAppAuthClient`` whose ``base_url`` is
  the configured Auth URL (no process environment is changed).  A secret in a file must be
  mode 0600.  The MEP's identity mapping must map ``<client id>@clients.auth.globus.org``.
- A token from our credential manager (``token``: ``file:/path`` mode 0600 or ``env:NAME``),
  read at every request so a renewed file is used at once (``TokenFileAuthorizer``).

``GCCredential.facts`` tells the throttler the kind, the identity, the expiry when known and
why the credential cannot be used now (a refusal, a file with a wrong mode), read without
network I/O.  Nothing here puts a secret in a message or a ``repr``.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import globus_sdk
from globus_sdk.authorizers import GlobusAuthorizer
from globus_sdk.scopes import ComputeScopes
from globus_sdk.transport import RequestsTransport, RetryConfig

from ..config import Secret
from ..errors import EdgeAuthError, EdgeConfigError
from .auth import AuthorizerAuth, check_owner_only, fingerprint, jwt_expiry, secret_path
from .base import CredentialFacts

DEFAULT_AUTH_URL = "https://auth.globus.org"
ENV_CLIENT_ID = "GLOBUS_COMPUTE_CLIENT_ID"
ENV_CLIENT_SECRET = "GLOBUS_COMPUTE_CLIENT_SECRET"


@dataclass(frozen=True)
class GCCredentialSettings:
    """Which credential, by reference (hashable: part of the shared client's key)."""

    auth_url: str = DEFAULT_AUTH_URL
    client_id: str = ""
    client_secret: Secret | None = None
    token: Secret | None = None

    @property
    def kind(self) -> str:
        return "globus-token" if self.token is not None else "globus-client"

    def resolved(self) -> GCCredentialSettings:
        """The confidential client from the SDK's environment variables when config names
        none (read once, when the plugin is built): the same variables globus-compute-sdk
        reads, so an operator's existing setup works."""
        if self.token is not None or (self.client_id and self.client_secret):
            return self
        client_id = self.client_id or os.environ.get(ENV_CLIENT_ID, "")
        secret = self.client_secret
        if secret is None and os.environ.get(ENV_CLIENT_SECRET):
            secret = Secret(f"env:{ENV_CLIENT_SECRET}")
        if not client_id or secret is None:
            raise EdgeConfigError(
                "config keys 'clientId' and 'clientSecret' (or the environment variables "
                f"{ENV_CLIENT_ID} and {ENV_CLIENT_SECRET}), or 'token', are required"
            )
        return GCCredentialSettings(self.auth_url, client_id, secret, None)


def _reveal(secret: Secret, what: str) -> str:
    path = secret_path(secret)
    if path is not None:
        check_owner_only(path, what)
    return secret.reveal()


class TokenFileAuthorizer(GlobusAuthorizer):
    """A bearer token read from a secret reference at every request (a credential manager
    renews the file); after a 401 one more try only when the token has changed."""

    def __init__(self, secret: Secret) -> None:
        self.secret = secret
        self._last = ""

    def __repr__(self) -> str:
        return "TokenFileAuthorizer(***)"

    def token(self) -> str:
        value = _reveal(self.secret, "globus token")
        self._last = value
        return value

    @property
    def expires_at(self) -> float | None:
        return jwt_expiry(self._last) if self._last else None

    def get_authorization_header(self) -> str:
        return f"Bearer {self.token()}"

    def handle_missing_authorization(self) -> bool:
        before = self._last
        try:
            return self.token() != before
        except EdgeAuthError:
            return False


class GCCredential:
    """The authorizer for one credential, made on first use; its facts without I/O."""

    def __init__(self, settings: GCCredentialSettings, *, http_timeout: float = 30.0) -> None:
        self.settings = settings
        self.http_timeout = http_timeout
        self._lock = threading.Lock()
        self._auth: AuthorizerAuth | None = None
        self._problem: str | None = None
        self._problem_at = 0.0

    def __repr__(self) -> str:
        return f"GCCredential({self.settings.kind}, {self.identity!r})"

    @property
    def identity(self) -> str:
        if self.settings.token is not None:
            return self.settings.token.source
        return f"{self.settings.client_id}@clients.auth.globus.org"

    @property
    def rate_key(self) -> tuple[str, str]:
        """Whose requests count together against GC's per-user rate limit."""
        return (self.settings.kind, self.identity)

    def auth(self) -> AuthorizerAuth:
        with self._lock:
            if self._auth is None:
                self._auth = _NotingAuth(_LazyAuthorizer(self._authorizer), self)
            return self._auth

    def _authorizer(self) -> GlobusAuthorizer:
        s = self.settings
        if s.token is not None:
            return TokenFileAuthorizer(s.token)
        assert s.client_secret is not None
        secret = _reveal(s.client_secret, "globus client secret")
        client = globus_sdk.ConfidentialAppAuthClient(
            s.client_id,
            secret,
            base_url=s.auth_url.rstrip("/"),
            transport=RequestsTransport(http_timeout=self.http_timeout),
            retry_config=RetryConfig(max_retries=0),  # one try per request; our policy retries
        )
        return globus_sdk.ClientCredentialsAuthorizer(client, ComputeScopes.all)

    def note_refusal(self, text: str) -> None:
        with self._lock:
            self._problem, self._problem_at = text, time.time()

    def note_ok(self) -> None:
        with self._lock:
            self._problem = None

    def facts(self) -> CredentialFacts:
        s = self.settings
        problem = self._problem
        secret = s.token if s.token is not None else s.client_secret
        path = secret_path(secret) if secret is not None else None
        if path is not None and problem is None:
            try:
                check_owner_only(path, "globus token" if s.token else "globus client secret")
            except EdgeAuthError as exc:
                problem = str(exc)
        expires: float | None = None
        with self._lock:
            auth = self._auth
        if auth is not None and s.token is not None:  # a confidential client renews itself
            raw = getattr(auth.authorizer, "expires_at", None)
            expires = float(raw) if isinstance(raw, (int, float)) else None
        identity = self.identity
        if s.token is not None and isinstance(auth, _NotingAuth):
            last = getattr(auth.authorizer, "_last", "")
            identity = fingerprint(last) if last else identity
        return CredentialFacts(kind=s.kind, identity=identity, expires_at=expires, problem=problem)


class _LazyAuthorizer(GlobusAuthorizer):
    """Builds the real authorizer at the first header asked (globus-sdk's
    ``ClientCredentialsAuthorizer`` fetches a token in its constructor: that is I/O, and its
    errors must be mapped where a request is made, not when a client is built)."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self._real: GlobusAuthorizer | None = None
        self._lock = threading.Lock()

    def _get(self) -> GlobusAuthorizer:
        with self._lock:
            if self._real is None:
                self._real = self._make()
            return self._real

    @property
    def expires_at(self) -> float | None:
        raw = getattr(self._real, "expires_at", None)
        return float(raw) if isinstance(raw, (int, float)) else None

    @property
    def _last(self) -> str:
        return str(getattr(self._real, "_last", "") or "")

    def get_authorization_header(self) -> str | None:
        return self._get().get_authorization_header()

    def handle_missing_authorization(self) -> bool:
        return bool(self._real is not None and self._real.handle_missing_authorization())


class _NotingAuth(AuthorizerAuth):
    """``AuthorizerAuth`` that tells the credential about refusals (the throttler reads them)."""

    def __init__(self, authorizer: Any, credential: GCCredential) -> None:
        super().__init__(authorizer, kind=credential.settings.kind)
        self.credential = credential

    def headers(self) -> dict[str, str]:
        try:
            out = super().headers()
        except EdgeAuthError as exc:
            self.credential.note_refusal(str(exc))
            raise
        if getattr(self.authorizer, "expires_at", None) is not None or out:
            self.credential.note_ok()
        return out

    def _fail(self, exc: Exception) -> Any:
        if isinstance(exc, EdgeAuthError):
            return exc
        status = getattr(exc, "http_status", None)
        if isinstance(status, int) and status in (400, 401, 403):
            return EdgeAuthError(
                f"{self.kind} credential refused by Globus Auth (HTTP {status})", status=status
            )
        return super()._fail(exc)
