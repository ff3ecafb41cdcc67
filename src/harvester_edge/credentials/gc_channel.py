"""Globus Compute in the credential manager: the delivery channel and the facility credential.

- Delivery (``channel: "globus-compute"``): ``EnvelopeChannel`` (``delivery.py``) around
  ``GCRunner``, which runs ``site_receiver.receive`` as a Globus Compute function on the
  queue's Multi-User Endpoint (its login-node user endpoint), through the shared client of
  the queue's GC submitter section (``facility``): the same auth, rate bucket, function
  cache and retries-off submit as the plugins.  The function goes by its source; its data
  are the envelope (ciphertext only), the destination and the PATH of the site's key file
  (``siteKeyFile``), never a key.  The receiver's answer (path, read-back checksum, mode)
  is the receipt the channel verifies.  A delivery waits for its task up to
  ``deliveryWaitSeconds``; a task still running then may yet write the same credential
  (the envelope is valid for 15 minutes), which the next renewal finds in place.
- Facility credential (``GCSupport``): a confidential client renews its own tokens; the
  manager validates the client id and secret with a client-credentials grant of its own
  (at ``renewFraction`` of the granted token's life) and tells the shared client: a refusal
  becomes the credential's problem, which the throttler reads (no new workers), and a
  success clears it.  A token handed over (``token``) is judged by its facts only.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import EdgeAPIError, EdgeAuthError
from ..facilities.auth import fingerprint
from . import site_receiver
from .delivery import Channel, DeliveryError, EnvelopeChannel, Unsupported, envelope_channel
from .facility import FamilySupport, Verdict
from .globus_grant import GlobusClient, grant
from .policy import utc
from .store import Entry

GC_MODULE = "harvester_edge.plugins.globus_compute"


class GCRunner:
    """Runs the site receiver through the queue's shared Globus Compute client."""

    def __init__(self, facility: dict[str, Any], wait: float):
        self.facility = facility
        self.wait = wait

    def __repr__(self) -> str:
        return f"GCRunner({self.facility.get('name')}, wait={self.wait:.0f}s)"

    def client(self) -> Any:
        if not self.facility:
            raise DeliveryError(
                "channel globus-compute needs 'facility': the queue's Globus Compute submitter "
                f"section ({{'module': '{GC_MODULE}', 'name': 'GCSubmitter', ...}})"
            )
        from ..plugins.throttler import _binding_for

        client = _binding_for(self.facility).client()
        if client.service != "globus-compute" or not hasattr(client, "run_function"):
            raise DeliveryError(
                f"channel globus-compute: 'facility' is a {client.service} submitter, not a "
                "Globus Compute one"
            )
        return client

    def __call__(self, envelope: str, dest: str, key_file: str) -> dict[str, Any]:
        client = self.client()
        data = {"envelope": envelope, "dest": dest, "key_file": key_file}
        try:
            answer = client.run_function(site_receiver.receive, data, wait=self.wait)
        except EdgeAPIError as exc:
            raise DeliveryError(f"site did not accept the credential for {dest}: {exc}") from None
        return dict(answer) if isinstance(answer, dict) else {}


def gc_channel(options: Any) -> EnvelopeChannel:
    """``families.CHANNELS["globus-compute"]``: the envelope channel of a setup."""
    runner = GCRunner(dict(options.facility or {}), float(options.deliveryWaitSeconds))
    return envelope_channel(options, runner)


class GCSupport(FamilySupport):
    """A Globus Compute credential (module docstring)."""

    service: ClassVar[str] = "globus-compute"
    no_files: ClassVar[str] = (
        "Globus Compute delivers through an end-to-end encrypted envelope only: set channel "
        "'globus-compute', envelopeKeyFile and siteKeyFile (docs/credmanager.md)"
    )
    GRANTED: ClassVar[str] = "globus-compute-grant"

    def channel(self) -> Channel:
        return Unsupported(self.no_files)

    def _credential(self) -> Any:
        return getattr(self.client, "credential_", None)

    def _globus(self) -> GlobusClient | None:
        """The confidential client (None for a token handed over)."""
        cred = self._credential()
        settings = getattr(cred, "settings", None)
        if settings is None or settings.token is not None or settings.client_secret is None:
            return None
        from globus_sdk.scopes import ComputeScopes

        return GlobusClient(
            settings.client_id,
            settings.client_secret,
            str(ComputeScopes.all),
            settings.auth_url.rstrip("/"),
        )

    def check(self, now: float) -> Verdict:
        """The shared client's facts; a confidential client must also have passed a grant
        of ours with more than ``renewFraction`` of that token's life left."""
        verdict = super().check(now)
        globus = self._globus()
        if not verdict.ok or globus is None or self.config.store is None:
            return verdict
        entry = self.config.store().load().get(self.GRANTED)
        who = f"Globus Compute client {globus.client_id}"
        if entry is None:
            return Verdict(False, f"{who} not validated yet: a grant is due")
        if self.config.policy.due(entry.issued_at, entry.expires_at, now):
            return Verdict(False, f"{who} validated on {utc(entry.issued_at)}: a new grant is due")
        return Verdict(
            True, f"{who} validated by a grant on {utc(entry.issued_at)}", entry.expires_at
        )

    def renew(self, now: float) -> tuple[bool, str]:
        globus = self._globus()
        store = self.config.store
        if globus is None or store is None:
            return super().renew(now)
        verdict = self.check(now)
        if verdict.ok:
            return True, verdict.message
        cred = self._credential()
        who = f"Globus Compute client {globus.client_id}"
        try:
            token, expires = grant(globus)
        except EdgeAuthError as exc:
            cred.note_refusal(str(exc))  # the throttler stops new workers of its queues
            self.audit.record("verify", self.GRANTED, ok=False, detail=str(exc))
            return False, f"{who} not usable: {exc}"
        except EdgeAPIError as exc:
            return False, f"{who} not validated now: {exc}; asked again next cycle"
        cred.note_ok()
        entry = Entry(
            self.GRANTED, "", now, expires or None, fingerprint(token)[:19],
            source=f"globus {globus.client_id}",
        )  # fmt: skip
        store().put(entry)
        self.audit.record("verify", self.GRANTED, expires_at=entry.expires_at,
                          fingerprint=entry.fingerprint)  # fmt: skip
        return True, f"{who} validated by a grant (token valid until {utc(entry.expires_at)})"
