"""The credential manager's work for one setup: check, renew, deliver, verify, audit.

``Keeper`` is built without I/O (Harvester rebuilds per-queue managers every cycle); the
store, the facility client and the channel are opened at first use.  A renewal that fails
leaves the delivered credential in place and says until when it is valid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from typing import Any

from ..edge.health import GATE
from ..errors import EdgeError
from ..facilities.base import CredentialFacts
from . import facts, redaction
from .audit import AuditLog
from .delivery import Channel, DeliveryError, LocalChannel, Unsupported
from .facility import FacilityConfig, FamilySupport, Verdict
from .families import CHANNELS, support_for
from .files import private_dir
from .globus_grant import GlobusClient
from .policy import LifetimePolicy, clock, utc
from .setup import CredOptions, PilotCredential
from .sources import SourceError, read_source
from .store import CredentialStore, CredentialStoreError, Entry, load_key

log = logging.getLogger(__name__)


class ClaimError(EdgeError):
    """A remote path already belongs to another setup."""


class Keeper:
    """Everything one setup does; thread-safe enough for one agent thread per setup."""

    def __init__(self, options: CredOptions):
        self.options = options
        self.setup = options.setup_name
        self.policy = LifetimePolicy(options.renewFraction, options.renewMinSeconds)
        self.audit = AuditLog(options.audit_path, self.setup)
        self._store: CredentialStore | None = None
        self._support: FamilySupport | None = None

    def __repr__(self) -> str:
        return f"Keeper({self.setup!r})"

    # parts opened at first use ----------------------------------------------------------
    def store(self) -> CredentialStore:
        if self._store is None:
            key = load_key(self.options.storeKeyFile, self.options.storeKeyEnv)
            self._store = CredentialStore(self.options.storeDir, self.setup, key)
        return self._store

    def support(self) -> FamilySupport | None:
        if self._support is None and self.options.facility:
            from ..plugins.throttler import _binding_for

            binding = _binding_for(self.options.facility)
            o = self.options
            globus = None
            if o.globusClientId and o.globusClientSecret is not None:
                globus = GlobusClient(
                    o.globusClientId, o.globusClientSecret, o.globusScope, o.globusAuthUrl
                )
            config = FacilityConfig(
                o.warnDays, o.nextTokenFile, globus=globus, policy=self.policy, store=self.store
            )
            self._support = support_for(binding.client(), config, self.audit)
        return self._support

    def channel(self) -> Channel:
        kind = self.options.channel
        if kind == "local":
            return LocalChannel()
        if kind == "none":
            return Unsupported("delivery is switched off for this setup (channel none)")
        if kind in CHANNELS:
            return CHANNELS[kind](self.options)
        if kind:
            return Unsupported(f"channel {kind} is not available in this installation")
        support = self.support()
        if support is None:
            return Unsupported("no facility configured: set 'facility' or channel 'local'")
        return support.channel()

    # Harvester's three questions --------------------------------------------------------
    def facility_verdict(self, now: float) -> Verdict | None:
        support = self.support()
        return support.check(now) if support is not None else None

    def check(self) -> tuple[bool, list[str]]:
        """Whether nothing needs doing now; what the reasons are."""
        now = clock()
        notes: list[str] = []
        ok = True
        verdict = self.facility_verdict(now)
        if verdict is not None:
            notes.append(verdict.message)
            ok = verdict.ok
        entries = self.store().load()
        for pilot in self.options.pilots():
            fine, note = self._pilot_state(pilot, entries.get(pilot.name), now)
            ok = ok and fine
            notes.append(note)
        self.publish(entries)
        return ok, notes

    def publish(self, entries: dict[str, Entry] | None = None) -> None:
        """Tell the throttler what the pilots of the served queues would find."""
        queues = self.options.served_queues
        if not queues:
            return
        entries = self.store().load() if entries is None else entries
        found = []
        for pilot in self.options.pilots():
            entry = entries.get(pilot.name)
            kind = f"pilot credential {pilot.name}"
            if entry is None or not entry.delivered_at or entry.delivered_to != pilot.remote_path:
                found.append(CredentialFacts(kind, problem=f"not delivered to {pilot.remote_path}"))
            else:
                found.append(CredentialFacts(kind, entry.fingerprint, entry.expires_at))
        for queue in queues:
            facts.publish(queue, self.setup, found)

    def _pilot_state(
        self, pilot: PilotCredential, entry: Entry | None, now: float
    ) -> tuple[bool, str]:
        if entry is None or not entry.delivered_at:
            return False, f"{pilot.name}: not delivered yet"
        if entry.delivered_to != pilot.remote_path:
            return False, f"{pilot.name}: remote path changed to {pilot.remote_path}"
        if entry.expires_at is not None and entry.expires_at <= now:
            return (
                False,
                f"{pilot.name}: delivered {entry.fingerprint} expired on {utc(entry.expires_at)}",
            )
        if self.policy.due(entry.issued_at, entry.expires_at, now):
            left = self.policy.left_fraction(entry.issued_at, entry.expires_at, now)
            return False, f"{pilot.name}: {left:.0%} of its lifetime left, due for renewal"
        try:
            source = read_source(pilot.source)
        except SourceError as exc:
            return True, f"{pilot.name}: delivered one valid until {utc(entry.expires_at)} ({exc})"
        if _fp(source.data) != entry.fingerprint:
            return False, f"{pilot.name}: a newer credential is in {pilot.source}"
        return True, f"{pilot.name}: {entry.fingerprint} valid until {utc(entry.expires_at)}"

    def renew(self) -> tuple[bool, str]:
        """Renew what is due; (all done, one line per credential)."""
        now = clock()
        notes: list[str] = []
        ok = True
        support = self.support()
        if support is not None:
            verdict = support.check(now)
            if not verdict.ok:
                renewed, note = support.renew(now)
                notes.append(note)
                ok = renewed
                if renewed:
                    GATE.forget()  # the throttler reads the new facts at once
                elif not support.check(now).ok:
                    notes.append(
                        "pilot credentials not delivered: the facility credential is unusable"
                    )
                    return False, "; ".join(notes)
        entries = self.store().load()
        for pilot in self.options.pilots():
            fine, note = self._renew_pilot(pilot, entries.get(pilot.name), now)
            ok = ok and fine
            notes.append(note)
        self.publish()
        return ok, "; ".join(notes)

    def _renew_pilot(
        self, pilot: PilotCredential, old: Entry | None, now: float
    ) -> tuple[bool, str]:
        fine, state = self._pilot_state(pilot, old, now)
        if fine:
            return True, state
        keep = _keeping(old)
        try:
            source = read_source(pilot.source)
        except SourceError as exc:
            return False, f"{pilot.name}: {exc}; {keep}"
        fp = _fp(source.data)
        if source.expires_at is not None and source.expires_at <= now:
            return False, (
                f"{pilot.name}: {pilot.source} holds {fp}, expired on {utc(source.expires_at)} "
                f"(its credential manager has not renewed it); {keep}"
            )
        if old is not None and old.fingerprint == fp and old.delivered_to == pilot.remote_path:
            return False, (
                f"{pilot.name}: {pilot.source} still holds the delivered {fp}: its credential "
                f"manager has not renewed it yet; {keep}"
            )
        try:
            self._claim(pilot.remote_path)
        except ClaimError as exc:
            return False, f"{pilot.name}: {exc}"
        entry = Entry.make(
            pilot.name, source.data.decode("utf-8", "replace"),
            source.issued_at or now, source.expires_at, source=pilot.source,
        )  # fmt: skip
        try:
            channel = self.channel()
            receipt = channel.deliver(
                pilot.remote_path, source.data, setup=self.setup, name=pilot.name
            )
        except DeliveryError as exc:
            self.audit.record(
                "deliver", pilot.name, expires_at=entry.expires_at, fingerprint=fp, ok=False,
                detail=str(exc),
            )  # fmt: skip
            log.warning(f"setup {self.setup}: {pilot.name} not delivered: {exc}; {keep}")
            return False, f"{pilot.name}: delivery to {pilot.remote_path} failed: {exc}; {keep}"
        self.audit.record(
            "deliver", pilot.name, expires_at=entry.expires_at, fingerprint=fp,
            detail=f"{receipt.path} via {channel.name}",
        )  # fmt: skip
        self.audit.record(
            "verify", pilot.name, expires_at=entry.expires_at, fingerprint=fp,
            detail=f"read back {receipt.checksum[:19]} mode {receipt.mode}",
        )  # fmt: skip
        entry = dataclasses.replace(
            entry, delivered_to=receipt.path, delivered_checksum=receipt.checksum,
            delivered_at=now,
        )  # fmt: skip
        self.store().put(entry)
        self.audit.record(
            "renew" if old else "issue", pilot.name, expires_at=entry.expires_at, fingerprint=fp
        )
        log.info(f"setup {self.setup}: {pilot.name} {fp} delivered to {receipt.path}")
        return (
            True,
            f"{pilot.name}: {fp} delivered to {receipt.path}, valid until {utc(entry.expires_at)}",
        )

    def revoke(self, name: str) -> bool:
        """Forget a stored credential (the remote file stays: the facility side is the
        operator's to remove); audited."""
        entry = self.store().load().get(name)
        removed = self.store().remove(name)
        if removed and entry is not None:
            self.audit.record(
                "revoke", name, expires_at=entry.expires_at, fingerprint=entry.fingerprint
            )
        return removed

    def lifetime_hours(self) -> float | None:
        now = clock()
        ends: list[float] = []
        verdict = self.facility_verdict(now)
        if verdict is not None and verdict.expires_at is not None:
            ends.append(verdict.expires_at)
        try:
            entries = self.store().load()
        except CredentialStoreError:
            return 0.0
        ends += [e.expires_at for e in entries.values() if e.expires_at is not None]
        return round((min(ends) - now) / 3600.0, 3) if ends else None

    def status(self) -> dict[str, Any]:
        """Everything an operator wants to see, without a secret."""
        out: dict[str, Any] = {"setup": self.setup}
        try:
            ok, notes = self.check()
            out.update(ok=ok, notes=notes)
        except EdgeError as exc:
            out.update(ok=False, notes=[str(exc)])
        try:
            entries = self.store().load()
            out["stored"] = [
                {"name": e.name, "fingerprint": e.fingerprint, "expires": utc(e.expires_at),
                 "delivered_to": e.delivered_to, "checksum": e.delivered_checksum[:19]}
                for e in entries.values()
            ]  # fmt: skip
        except CredentialStoreError as exc:
            out["stored"] = str(exc)
        out["lifetime_hours"] = self.lifetime_hours()
        return out

    # isolation -------------------------------------------------------------------------
    def _claim(self, remote: str) -> None:
        """Each remote path belongs to one setup: the first to deliver there."""
        claims = private_dir(os.path.join(private_dir(self.options.storeDir), "claims"))
        family = str(self.options.facility.get("module", "")) or self.options.channel
        digest = hashlib.sha256(f"{family}\0{remote}".encode()).hexdigest()[:32]
        path = os.path.join(claims, digest)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            with open(path, encoding="utf-8") as f:
                owner = f.read().strip()
            if owner != self.setup:
                raise ClaimError(
                    f"remote path {remote} belongs to setup {owner}; setup {self.setup} may "
                    "not write or read it"
                ) from None
            return
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(self.setup + "\n")


def _fp(data: bytes) -> str:
    redaction.register(data)
    return "sha256:" + hashlib.sha256(data.decode("utf-8", "replace").encode()).hexdigest()[:12]


def _keeping(old: Entry | None) -> str:
    if old is None or not old.delivered_at:
        return "nothing was delivered before"
    return f"the delivered {old.fingerprint} stays in place, valid until {utc(old.expires_at)}"
