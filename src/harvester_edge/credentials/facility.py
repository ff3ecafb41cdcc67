"""Facility credentials: what each family's client says of its credential, and its renewal.

Everything starts from the client's ``credential()`` facts (``facilities/base.py``): the
same facts the throttler reads, so a queue whose credential is expired or about to be
makes no new workers and the credential manager says why.  A family adds what only it can
do; ``FAMILIES`` maps a client's ``service`` to its support class, so another family (the
Globus Compute one) slots in with one class and ``register_family``.

- SFAPI: the Iris client's own expiry (``clientExpires``): a warning from ``warnDays``
  before, a failure naming the date after (only a person can make a new client in Iris).
  Renewal mints an access token on the shared client, so every plugin uses it.
- S3M: the project token's expiry from introspection; renewal is a rotation: a newer token
  the operator dropped at ``nextTokenFile`` (default: the token file + ``.next``) is
  introspected first and replaces the token file only when S3M accepts it and it lives
  longer.  Pilot files: S3M has no file API.
- IRI: the bearer token (JWT expiry when it has one); renewal picks up a newer token at
  ``nextTokenFile`` once one authenticated request with it succeeds.  Pilot files: the v2
  filesystem routes (tasks); OLCF's deployment serves none (delivery fails saying so).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ..config import Secret
from ..errors import EdgeAPIError, EdgeAuthError
from ..facilities.auth import fingerprint, secret_path
from ..facilities.base import CredentialFacts, FacilityClient
from . import redaction
from .audit import AuditLog
from .delivery import Channel, Unsupported
from .files import atomic_write
from .globus_grant import GlobusClient, grant
from .policy import LifetimePolicy, utc
from .remote import IRIChannel, SFAPIChannel
from .store import CredentialStore, Entry

log = logging.getLogger(__name__)

DAY = 86400.0


@dataclass(frozen=True)
class Verdict:
    """The facility credential now: usable or not, why, until when."""

    ok: bool
    message: str
    expires_at: float | None = None


@dataclass(frozen=True)
class FacilityConfig:
    """The credential manager's facility options (see ``credentials/setup.py``)."""

    warn_days: float = 7.0
    next_token_file: str = ""
    #: IRI: a Globus confidential client that mints the bearer token (else: rotation)
    globus: GlobusClient | None = None
    policy: LifetimePolicy = LifetimePolicy()
    #: the setup's store (grant expiries are kept there); opened at first use
    store: Callable[[], CredentialStore] | None = None


class FamilySupport:
    """Facts-driven defaults: no renewal of our own, no file delivery."""

    service: ClassVar[str] = ""
    no_files: ClassVar[str] = "this family has no way to write files on the facility"

    def __init__(self, client: FacilityClient, config: FacilityConfig, audit: AuditLog):
        self.client = client
        self.config = config
        self.audit = audit

    def facts(self) -> CredentialFacts:
        return self.client.credential()

    def check(self, now: float) -> Verdict:
        facts = self.facts()
        who = f"{self.client.service} credential {facts.identity or facts.kind}"
        if facts.problem:
            return Verdict(False, f"{who}: {facts.problem}", facts.expires_at)
        if facts.expires_at is not None:
            if facts.expires_at <= now:
                return Verdict(False, f"{who} expired on {utc(facts.expires_at)}", facts.expires_at)
            if facts.expires_at - now < self.config.warn_days * DAY:
                return Verdict(False, f"{who} expires on {utc(facts.expires_at)}", facts.expires_at)
        return Verdict(True, f"{who} valid until {utc(facts.expires_at)}", facts.expires_at)

    def renew(self, now: float) -> tuple[bool, str]:
        verdict = self.check(now)
        return verdict.ok, verdict.message

    def channel(self) -> Channel:
        return Unsupported(f"{self.client.service}: {self.no_files}")


class SFAPISupport(FamilySupport):
    service = "sfapi"

    def check(self, now: float) -> Verdict:
        facts = self.facts()
        who = f"SFAPI client {facts.identity or facts.kind}"
        expires = facts.expires_at
        if expires is not None and expires <= now:
            return Verdict(False, self._expired(facts, expires), expires)
        if facts.problem:
            return Verdict(False, f"{who}: {facts.problem}", expires)
        if expires is not None and expires - now < self.config.warn_days * DAY:
            log.warning(f"{who} expires on {utc(expires)}: make a new client in Iris before then")
        return Verdict(True, f"{who} valid until {utc(expires)}", expires)

    def _expired(self, facts: CredentialFacts, expires: float) -> str:
        from ..facilities.sfapi import client_expired_text

        key_file = getattr(self.client, "settings", None)
        path = getattr(key_file, "key_file", "the key file")
        return client_expired_text(facts.identity or facts.kind, expires, path)

    def renew(self, now: float) -> tuple[bool, str]:
        """Mint an access token on the shared client (every plugin of this credential uses
        it); an expired client cannot be renewed here."""
        verdict = self.check(now)
        if not verdict.ok:
            return False, verdict.message
        credentials: Any = getattr(self.client, "credentials", None)
        try:
            token = credentials.bearer()
        except EdgeAPIError as exc:
            return False, f"SFAPI access token not minted: {exc}"
        redaction.register(token)
        self.audit.record("issue", "sfapi-access-token", fingerprint=fingerprint(token))
        return True, f"{verdict.message}; access token minted"

    def channel(self) -> Channel:
        return SFAPIChannel(self.client)


class _Rotation(FamilySupport):
    """A token file renewed by dropping a newer one beside it, verified before use."""

    kind: ClassVar[str] = "token"

    def token_path(self) -> str | None:
        secret = getattr(getattr(self.client, "settings", None), "token", None)
        return secret_path(secret) if secret is not None else None

    def next_path(self, current: str) -> str:
        return self.config.next_token_file or current + ".next"

    def verify(self, token: str) -> float | None:
        """Ask the facility about ``token``; its expiry.  Raises EdgeAPIError if refused."""
        raise NotImplementedError

    def check(self, now: float) -> Verdict:
        """A newer token dropped in place makes the check fail: renewal picks it up."""
        verdict = super().check(now)
        current = self.token_path()
        if verdict.ok and current is not None and os.path.exists(self.next_path(current)):
            text = f"{verdict.message}; a newer {self.kind} waits at {self.next_path(current)}"
            return Verdict(False, text, verdict.expires_at)
        return verdict

    def _reject(self, candidate: str) -> str:
        """Move a candidate that will not be used aside (``.rejected``), so the check stops
        asking; the operator sees it there."""
        os.replace(candidate, candidate + ".rejected")
        return f"moved to {candidate}.rejected"

    def renew(self, now: float) -> tuple[bool, str]:
        verdict = FamilySupport.check(self, now)
        current = self.token_path()
        if current is None:
            return verdict.ok, f"{verdict.message}; the token is not a file: rotate it by hand"
        candidate = self.next_path(current)
        keep = f"the current {self.kind} stays in use, {_until(verdict)}"
        if not os.path.exists(candidate):
            if verdict.ok:
                return True, verdict.message
            return False, f"{verdict.message}; no newer {self.kind} at {candidate}: {keep}"
        try:
            token = Secret(f"file:{candidate}").reveal()
        except EdgeAuthError as exc:
            return False, f"newer {self.kind} unusable: {exc}; {keep}"
        redaction.register(token)
        fp = fingerprint(token)
        try:
            expires = self.verify(token)
        except EdgeAPIError as exc:
            self.audit.record("verify", self.kind, fingerprint=fp, ok=False, detail=str(exc))
            moved = self._reject(candidate)
            return (
                False,
                f"newer {self.kind} {fp} at {candidate} not accepted: {exc} ({moved}); {keep}",
            )
        if expires is not None and expires <= now:
            why = f"newer {self.kind} {fp} at {candidate} expired on {utc(expires)}"
            self.audit.record("verify", self.kind, expires_at=expires, fingerprint=fp, ok=False)
            return False, f"{why} ({self._reject(candidate)}); {keep}"
        old = verdict.expires_at
        if expires is not None and old is not None and expires <= old and verdict.ok:
            moved = self._reject(candidate)
            return True, f"{verdict.message}; {candidate} lives no longer: not used ({moved})"
        self.audit.record("verify", self.kind, expires_at=expires, fingerprint=fp)
        atomic_write(current, (token + "\n").encode())
        os.unlink(candidate)
        self.audit.record("renew", self.kind, expires_at=expires, fingerprint=fp)
        log.info(f"{self.kind} {fp} from {candidate} now in {current}, until {utc(expires)}")
        return True, f"{self.kind} rotated: {fp} in {current}, valid until {utc(expires)}"


def _until(verdict: Verdict) -> str:
    if verdict.expires_at is None:
        return "with no known expiry"
    return f"valid until {utc(verdict.expires_at)}"


class S3MSupport(_Rotation):
    service = "s3m"
    kind = "S3M project token"
    no_files = "S3M has no file API; deliver OLCF pilot credentials through IRI or Globus Compute"

    def facts(self) -> CredentialFacts:
        """Introspect the token in use when due (cached by the client), then its facts:
        the expiry is known only from introspection."""
        self.client.token.prime()  # type: ignore[attr-defined]
        return self.client.credential()

    def verify(self, token: str) -> float | None:
        info = self.client.introspect_token(token)  # type: ignore[attr-defined]
        if info.expires_at is None:
            raise EdgeAPIError("introspection names no plannedExpiration")
        return float(info.expires_at)


class IRISupport(_Rotation):
    service = "iri"
    kind = "IRI bearer token"

    def channel(self) -> Channel:
        """The v2 filesystem routes (a deployment without them, as OLCF's, answers 404 and
        delivery fails saying so)."""
        return IRIChannel(self.client)

    GRANTED = "iri-bearer-token"

    def check(self, now: float) -> Verdict:
        """With a Globus client: the token in the file must be the one we minted, with more
        than ``renewFraction`` of its life left; else the rotation rules."""
        globus = self.config.globus
        if globus is None or self.config.store is None:
            return super().check(now)
        facts = self.facts()
        entry = self.config.store().load().get(self.GRANTED)
        who = f"IRI bearer token {facts.identity or facts.kind}"
        if facts.problem and "expired" not in facts.problem:
            return Verdict(False, f"{who}: {facts.problem}")
        if entry is None or entry.fingerprint != facts.identity[:19]:
            return Verdict(
                False, f"{who} was not minted here: a grant for client {globus.client_id} is due"
            )
        if self.config.policy.due(entry.issued_at, entry.expires_at, now):
            return Verdict(
                False,
                f"{who} expires on {utc(entry.expires_at)}: a new grant is due",
                entry.expires_at,
            )
        return Verdict(True, f"{who} valid until {utc(entry.expires_at)}", entry.expires_at)

    def renew(self, now: float) -> tuple[bool, str]:
        globus, store = self.config.globus, self.config.store
        if globus is None or store is None:
            return super().renew(now)
        verdict = self.check(now)
        if verdict.ok:
            return True, verdict.message
        path = self.token_path()
        if path is None:
            return False, "the IRI token must be a file: reference (the grant writes it)"
        try:
            token, expires = grant(globus)
        except EdgeAPIError as exc:
            return False, f"{exc}; the current token stays in use, {_until(verdict)}"
        atomic_write(path, (token + "\n").encode())
        old = store().load().get(self.GRANTED)
        entry = Entry.make(
            self.GRANTED, token, now, expires or None, source=f"globus {globus.client_id}"
        )
        store().put(entry)
        self.audit.record("renew" if old else "issue", self.GRANTED, expires_at=entry.expires_at,
                          fingerprint=entry.fingerprint)  # fmt: skip
        return (
            True,
            f"IRI bearer token {entry.fingerprint} granted, valid until {utc(entry.expires_at)}",
        )

    def verify(self, token: str) -> float | None:
        """One authenticated read (the resource list) with the new token, on a client of
        its own; its JWT expiry when it is a JWT."""
        from ..facilities.auth import jwt_expiry
        from ..facilities.iri import IRIClient

        current = self.token_path() or ""
        candidate = self.next_path(current)
        settings = self.client.settings  # type: ignore[attr-defined]
        probe = IRIClient(dataclasses.replace(settings, token=Secret(f"file:{candidate}")))
        try:
            probe.resource_id()
        finally:
            probe.close()
        return jwt_expiry(token)


FAMILIES: dict[str, type[FamilySupport]] = {
    "sfapi": SFAPISupport,
    "s3m": S3MSupport,
    "iri": IRISupport,
}

#: channel factories a family registers beside its support (the Globus Compute family:
#: an ``EnvelopeChannel`` around its task runner)
CHANNELS: dict[str, Callable[..., Channel]] = {}


def register_family(service: str, support: type[FamilySupport]) -> None:
    FAMILIES[service] = support


def support_for(client: FacilityClient, config: FacilityConfig, audit: AuditLog) -> FamilySupport:
    cls = FAMILIES.get(client.service, FamilySupport)
    return cls(client, config, audit)
