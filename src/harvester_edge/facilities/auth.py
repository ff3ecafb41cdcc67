"""How a transport authenticates its requests: one small protocol, three kinds of credential.

``Transport`` asks its ``Auth`` for the headers of each attempt and tells it when the
service refused them; the auth decides what a refusal means for the credential.

- ``IrisCredential`` (``facilities/sfapi.py``): OAuth2 client credentials with a
  ``private_key_jwt`` assertion (NERSC SFAPI); renewed tokens, one grant at a time, a
  refusal back-off.
- ``StaticTokenAuth``: a token made by a person (OLCF S3M's project access token, an IRI
  bearer token) read from a ``Secret`` reference at every request, sent in a configurable
  header, raw (``Authorization: <token>``, as S3M wants) or after a scheme
  (``Authorization: Bearer <token>``); with ``owner_only`` a token file that group or others
  may read is refused, like the SFAPI key (S3M's ``ProjectToken`` in ``facilities/s3m.py``
  adds the expiry read by introspection and a refusal back-off on top of it).
- ``AuthorizerAuth``: anything shaped like a ``globus_sdk`` authorizer
  (``get_authorization_header()``, ``handle_missing_authorization()``), for Globus tokens.

The transport treats every header value an auth returns as secret: it never logs one, and
removes any it finds in a service's error text before that text goes into an exception.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from typing import Any, Protocol

from ..errors import EdgeAuthError, EdgeNetworkError
from .base import CredentialFacts


class Auth(Protocol):
    """Where a transport gets the headers that authenticate a request."""

    def headers(self) -> dict[str, str]:
        """Headers valid now for one attempt.  Raises ``EdgeAuthError`` (refused, unusable
        credential) or ``EdgeNetworkError(maybe_sent=False)`` (a token endpoint could not
        answer: the request itself was never sent)."""
        ...

    def refresh(self, sent: Mapping[str, str]) -> bool:
        """The service refused ``sent`` (401, or a 403 that may mean an expired token): drop
        them if they are still current.  True when one more attempt with fresh headers may
        succeed (a new token can be had), False when it would send the same again."""
        ...

    def refused(self, sent: Mapping[str, str], status: int) -> EdgeAuthError:
        """The service refused ``sent`` for good (after a refresh, or with nothing to
        refresh): note it (and back off, if the auth does) and return the error to raise."""
        ...


class SecretSource(Protocol):
    """A secret held by reference (``harvester_edge.config.Secret``): read at each use."""

    @property
    def source(self) -> str: ...

    def reveal(self) -> str: ...


_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9._~+/-]{0,31}$")
_TOKEN = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII: nothing a header cannot carry


def secret_path(secret: SecretSource) -> str | None:
    """The file behind a ``file:`` secret (its ``source`` reads ``file /path``), else None."""
    kind, _, rest = secret.source.partition(" ")
    return rest if kind == "file" and rest.startswith("/") else None


def check_owner_only(path: str, what: str) -> None:
    """Refuse a secret file that is missing or that group or others may use (stat only), as
    the SFAPI key file is refused: ``EdgeAuthError`` naming the path and the ``chmod`` to run,
    never anything of its content."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise EdgeAuthError(f"{what} file {path} does not exist") from None
    except OSError as exc:
        raise EdgeAuthError(f"{what} file {path} cannot be read ({exc.strerror})") from None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise EdgeAuthError(
            f"{what} file {path} has mode {mode:04o}; it must be 0600 (run: chmod 600 {path})"
        )


def fingerprint(value: str) -> str:
    """A short, one-way name for a secret (which token is in use, never the token)."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12]


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT, read without verifying; None when the
    token is no JWT or has none (an OLCF project token has none: S3M's introspection
    tells its expiry)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


class StaticTokenAuth:
    """A static token from a secret reference, in ``header`` (``Authorization`` by default),
    raw or after ``scheme`` (``"Bearer"``).

    The secret is read at every request, so a token file replaced by a person or a
    credential manager is used from the next request on; after a refusal one more attempt
    is made only when the secret now holds another token.  With ``owner_only`` a ``file:``
    secret must be mode 0600 (stat-ed before each read; nothing is sent otherwise).
    """

    def __init__(
        self, secret: SecretSource, *, header: str = "Authorization", scheme: str = "",
        kind: str = "static-token", owner_only: bool = False,
    ):  # fmt: skip
        if not _HEADER_NAME.match(header):
            raise ValueError(f"not an HTTP header name: {header!r}")
        if scheme and not _SCHEME.match(scheme):
            raise ValueError(f"not an authorization scheme: {scheme!r}")
        self.secret = secret
        self.header = header
        self.scheme = scheme
        self.kind = kind
        self.owner_only = owner_only

    def __repr__(self) -> str:
        shape = f"{self.scheme} <token>" if self.scheme else "<token>"
        return f"StaticTokenAuth({self.secret.source}, {self.header}: {shape})"

    def token(self) -> str:
        """The token now in the secret (checked: mode, characters).  Raises EdgeAuthError."""
        return self._token()

    def _token(self) -> str:
        path = secret_path(self.secret) if self.owner_only else None
        if path is not None:
            check_owner_only(path, self.kind)
        value = self.secret.reveal()
        if not _TOKEN.match(value):
            raise EdgeAuthError(
                f"{self.kind} in {self.secret.source} holds characters an HTTP header cannot "
                "carry (spaces, control characters or non-ASCII)"
            )
        return value

    def _value(self, token: str) -> str:
        return f"{self.scheme} {token}" if self.scheme else token

    def headers(self) -> dict[str, str]:
        return {self.header: self._value(self._token())}

    def refresh(self, sent: Mapping[str, str]) -> bool:
        try:
            current = self._value(self._token())
        except EdgeAuthError:
            return False
        return current != sent.get(self.header)

    def refused(self, sent: Mapping[str, str], status: int) -> EdgeAuthError:
        return EdgeAuthError(
            f"{self.kind} from {self.secret.source} refused (HTTP {status})", status=status
        )

    def facts(self) -> CredentialFacts:
        """Kind, a fingerprint of the token in use and its JWT expiry when it has one; reads
        the secret (a file or a variable), no network."""
        try:
            token = self._token()
        except EdgeAuthError as exc:
            return CredentialFacts(kind=self.kind, problem=str(exc))
        return CredentialFacts(
            kind=self.kind, identity=fingerprint(token), expires_at=jwt_expiry(token)
        )


class AuthorizerAuth:
    """A ``globus_sdk`` authorizer (or anything with its two methods) as an ``Auth``.

    ``get_authorization_header()`` gives the whole header value (``Bearer <token>``), or
    None for no authentication; ``handle_missing_authorization()`` says whether it could
    get a new token after a 401.  globus_sdk is not imported here: its errors are mapped by
    their ``http_status`` (5xx/429: the auth service could not answer, transient) or class
    name (a network error, transient); anything else is a refusal.
    """

    def __init__(self, authorizer: Any, *, kind: str = "globus"):
        self.authorizer = authorizer
        self.kind = kind

    def __repr__(self) -> str:
        return f"AuthorizerAuth({type(self.authorizer).__name__}, kind={self.kind!r})"

    def _fail(self, exc: Exception) -> EdgeAuthError | EdgeNetworkError:
        status = getattr(exc, "http_status", None)
        status = status if isinstance(status, int) and not isinstance(status, bool) else None
        name = type(exc).__name__
        if (status is not None and (status == 429 or status >= 500)) or any(
            word in c.__name__ for c in type(exc).__mro__ for word in ("Network", "Timeout")
        ):
            return EdgeNetworkError(
                f"{self.kind} authorizer could not get a token ({name})", maybe_sent=False
            )
        return EdgeAuthError(f"{self.kind} authorizer failed ({name})", status=status)

    def headers(self) -> dict[str, str]:
        try:
            value = self.authorizer.get_authorization_header()
        except Exception as exc:  # a library error: never let it (or its text) escape
            raise self._fail(exc) from None
        return {"Authorization": str(value)} if value else {}

    def refresh(self, sent: Mapping[str, str]) -> bool:
        try:
            return bool(self.authorizer.handle_missing_authorization())
        except Exception:  # could not renew: the refusal stands
            return False

    def refused(self, sent: Mapping[str, str], status: int) -> EdgeAuthError:
        return EdgeAuthError(f"{self.kind} credential refused (HTTP {status})", status=status)

    def facts(self) -> CredentialFacts:
        expires = getattr(self.authorizer, "expires_at", None)
        return CredentialFacts(
            kind=self.kind, expires_at=float(expires) if isinstance(expires, (int, float)) else None
        )


def secret_values(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The strings of auth headers that must never appear in a message: each value and the
    token after its scheme word (long enough to be a credential, not an ordinary word)."""
    found: list[str] = []
    for value in headers.values():
        for part in (value, value.partition(" ")[2]):
            if len(part) >= 8 and part not in found:
                found.append(part)
    return tuple(sorted(found, key=len, reverse=True))
