"""Token files renewed in place: S3M project tokens and IRI bearer tokens.

- Rotation (both): a newer token the operator dropped at ``nextTokenFile`` (default: the
  token file + ``.next``) makes the check fail; renewal asks the facility about it first (S3M:
  introspection; IRI: one authenticated request on a client of its own) and replaces the
  token file atomically only when it is accepted and lives longer.  A candidate that will
  not be used is moved to ``.rejected`` with the reason in the log.
- IRI with a Globus confidential client (``globusClientId``): the client-credentials grant
  mints the token into the token file and renews it at ``renewFraction``; its expiry is kept
  in the setup's store (Globus tokens are opaque).
"""

from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

from ..config import Secret
from ..errors import EdgeAPIError, EdgeAuthError
from ..facilities.auth import fingerprint, secret_path
from ..facilities.base import CredentialFacts
from . import redaction
from .delivery import Channel
from .facility import FamilySupport, Verdict, log
from .files import atomic_write
from .globus_grant import grant
from .policy import utc
from .remote import IRIChannel
from .store import Entry


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
