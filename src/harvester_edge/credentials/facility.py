"""Facility credentials: what each family's client says of its credential, and its renewal.

Everything starts from the client's ``credential()`` facts (``facilities/base.py``): the
same facts the throttler reads, so a queue whose credential is expired or about to be
makes no new workers and the credential manager says why.  A family adds what only it can
do; ``families.FAMILIES`` maps a client's ``service`` to its support class, so another
family (the Globus Compute one) slots in with one class and ``register_family``.

- SFAPI: the Iris client's own expiry (``clientExpires``): a warning from ``warnDays``
  before, a failure naming the date after (only a person can make a new client in Iris).
  Renewal mints an access token on the shared client, so every plugin uses it.
- S3M and IRI (``tokens.py``): token files rotated from a verified newer token, or (IRI)
  minted by a Globus confidential client's grant.  Pilot files: S3M has no file API; IRI
  through its v2 filesystem routes (OLCF's deployment serves none).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import EdgeAPIError
from ..facilities.auth import fingerprint
from ..facilities.base import CredentialFacts, FacilityClient
from . import redaction
from .audit import AuditLog
from .delivery import Channel, Unsupported
from .globus_grant import GlobusClient
from .policy import LifetimePolicy, utc
from .remote import SFAPIChannel
from .store import CredentialStore

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
