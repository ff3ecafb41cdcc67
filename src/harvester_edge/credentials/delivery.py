"""Delivery channels: how a pilot credential reaches a queue's directory on the facility.

Every channel writes atomically (temporary name in the target directory, mode 0600, then a
rename: a reader sees the old file or the new one) and reads the result back: the receipt's
checksum is what is on the facility now, compared with what was sent.

- ``LocalChannel``: the pilot directory is on a filesystem Harvester mounts.
- ``SFAPIChannel`` (``remote.py``): NERSC's upload utility into a 0700 staging directory
  next to the target, then ``chmod 600`` and ``mv -f`` through the command utility (an
  upload alone writes in place, with the user's umask), read back with the download and
  ``ls`` utilities.
- ``EnvelopeChannel``: an end-to-end encrypted envelope (``envelope.seal``) opened on the
  site by ``site_receiver.receive``; the transport (Globus Compute) is a ``SiteRunner`` the
  Globus Compute family supplies and only ever carries ciphertext.
- ``IRIChannel`` (``remote.py``): the IRI v2 filesystem routes (tasks), the same staging,
  chmod, mv and read-back steps; a deployment without them (OLCF's) answers 404 and
  delivery fails saying so.
- ``Unsupported``: S3M has no file API.  Delivery fails with that sentence.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import EdgeError
from . import files
from .envelope import seal
from .policy import clock


class DeliveryError(EdgeError):
    """A delivery failed; the file on the facility, if any, is the previous one."""


@dataclass(frozen=True)
class Receipt:
    """What the facility holds after a delivery (read back, not assumed)."""

    path: str
    checksum: str
    mode: str


class Channel(Protocol):
    name: str

    def deliver(self, dest: str, data: bytes, *, setup: str, name: str) -> Receipt:
        """Replace ``dest`` atomically with ``data`` (0600) and read it back."""
        ...


def _verify(receipt: Receipt, data: bytes) -> Receipt:
    if receipt.checksum != files.sha256(data):
        raise DeliveryError(
            f"{receipt.path}: read-back checksum {receipt.checksum[:19]} does not match the "
            f"credential sent ({files.sha256(data)[:19]})"
        )
    if receipt.mode != "0600":
        raise DeliveryError(f"{receipt.path}: mode {receipt.mode} after delivery, not 0600")
    return receipt


class LocalChannel:
    """A pilot directory on a mounted filesystem."""

    name = "local"

    def deliver(self, dest: str, data: bytes, *, setup: str, name: str) -> Receipt:
        try:
            os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
            files.atomic_write(dest, data)
            checksum, mode = files.read_back(dest)
        except OSError as exc:
            raise DeliveryError(f"{dest}: {exc.strerror or type(exc).__name__}") from None
        return _verify(Receipt(dest, checksum, f"{mode:04o}"), data)


class Unsupported:
    """A family with no way to write a file on the facility."""

    name = "unsupported"

    def __init__(self, why: str):
        self.why = why

    def deliver(self, dest: str, data: bytes, *, setup: str, name: str) -> Receipt:
        raise DeliveryError(self.why)


class SiteRunner(Protocol):
    """Runs ``site_receiver.receive(envelope, dest, key_file)`` on the facility and returns
    its answer (a dict).  The Globus Compute family supplies one; tests run the receiver in
    another process."""

    def __call__(self, envelope: str, dest: str, key_file: str) -> dict[str, Any]: ...


class EnvelopeChannel:
    """End-to-end encrypted delivery through a third party (Globus Compute)."""

    name = "globus-compute"

    def __init__(self, runner: SiteRunner, key: bytes, remote_key_file: str):
        self.runner = runner
        self._key = key
        self.remote_key_file = remote_key_file

    def __repr__(self) -> str:
        return f"EnvelopeChannel(remote key {self.remote_key_file})"

    def deliver(self, dest: str, data: bytes, *, setup: str, name: str) -> Receipt:
        envelope = seal(data, key=self._key, dest=dest, setup=setup, name=name, issued=clock())
        try:
            answer = self.runner(envelope, dest, self.remote_key_file)
        except DeliveryError:
            raise
        except Exception as exc:  # the site refused, or the transport failed
            text = str(exc).splitlines()[-1][:200] if str(exc) else type(exc).__name__
            raise DeliveryError(f"site did not accept the credential for {dest}: {text}") from None
        if not isinstance(answer, dict):
            raise DeliveryError(f"site answered no receipt for {dest}")
        receipt = Receipt(
            str(answer.get("path")), str(answer.get("sha256")), str(answer.get("mode"))
        )
        return _verify(receipt, data)


def envelope_channel(options: Any, runner: SiteRunner) -> EnvelopeChannel:
    """The Globus Compute channel of a setup (``envelopeKeyFile``/``siteKeyFile``) around the
    family's ``runner``; what the Globus Compute family registers in ``families.CHANNELS``:
    ``CHANNELS["globus-compute"] = lambda options: envelope_channel(options, its_runner)``."""
    from . import redaction
    from .store import CredentialStoreError, load_key

    try:
        key = load_key(options.envelopeKeyFile)
    except CredentialStoreError as exc:
        raise DeliveryError(str(exc).replace("store key", "envelope key")) from None
    redaction.register(base64.urlsafe_b64encode(key).decode())
    return EnvelopeChannel(runner, key, options.siteKeyFile)
