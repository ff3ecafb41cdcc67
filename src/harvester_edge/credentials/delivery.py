"""Delivery channels: how a pilot credential reaches a queue's directory on the facility.

Every channel writes atomically (temporary name in the target directory, mode 0600, then a
rename: a reader sees the old file or the new one) and reads the result back: the receipt's
checksum is what is on the facility now, compared with what was sent.

- ``LocalChannel``: the pilot directory is on a filesystem Harvester mounts.
- ``SFAPIChannel``: NERSC's upload utility into a 0700 staging directory next to the target,
  then ``chmod 600`` and ``mv -f`` through the command utility (an upload alone writes in
  place, with the user's umask), read back with the download and ``ls`` utilities.
- ``EnvelopeChannel``: an end-to-end encrypted envelope (``envelope.seal``) opened on the
  site by ``site_receiver.receive``; the transport (Globus Compute) is a ``SiteRunner`` the
  Globus Compute family supplies and only ever carries ciphertext.
- ``IRIChannel``: the IRI v2 filesystem routes (tasks), same staging/chmod/mv/read-back
  steps; a deployment without them (OLCF's) answers 404 and delivery fails saying so.
- ``Unsupported``: S3M has no file API.  Delivery fails with that sentence.
"""

from __future__ import annotations

import base64
import os
import posixpath
import secrets
import shlex
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from ..errors import EdgeAPIError, EdgeError
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


STAGING = ".harvester-edge"


class SFAPIChannel:
    """NERSC SFAPI: upload into a private staging directory, chmod, rename, read back."""

    name = "sfapi"

    def __init__(self, client: Any):
        self.client = client  # facilities.sfapi.SFAPIClient (shared per credential)

    def deliver(self, dest: str, data: bytes, *, setup: str, name: str) -> Receipt:
        if not dest.startswith("/"):
            raise DeliveryError(f"remote path {dest!r} must be absolute")
        staging = posixpath.join(posixpath.dirname(dest), STAGING)
        tmp = posixpath.join(staging, f"{posixpath.basename(dest)}.{secrets.token_hex(6)}")
        q = shlex.quote
        try:
            self._command(f"mkdir -p -m 700 {q(staging)}")
            self._command(f"chmod 700 {q(staging)}")
            self._upload(tmp, data)
            self._command(f"chmod 600 {q(tmp)}")
            self._command(f"mv -f {q(tmp)} {q(dest)}")
            return _verify(
                Receipt(dest, files.sha256(self._download(dest)), self._mode(dest)), data
            )
        except EdgeAPIError as exc:
            raise DeliveryError(f"sfapi delivery to {dest}: {exc}") from None

    # the SFAPI utilities ---------------------------------------------------------------
    @property
    def _machine(self) -> str:
        return str(self.client.settings.machine)

    def _command(self, line: str) -> None:
        [(state, result, error)] = self.client.run_commands([line])
        if state != "done":
            raise DeliveryError(f"sfapi command {line.split()[0]} {state}: {error or 'no answer'}")
        if result.get("exit_code") not in (0, None) or str(result.get("status")) != "ok":
            text = str(result.get("error") or result.get("output") or "")[:200]
            raise DeliveryError(f"sfapi command {line.split()[0]} failed: {text}")

    def _upload(self, path: str, data: bytes) -> None:
        boundary = "hedge" + secrets.token_hex(12)
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="{posixpath.basename(path)}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        answer = self.client.transport.request(
            "PUT", f"utilities/upload/{self._machine}/{quote(path)}", content=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            forbidden="resource",
        )  # fmt: skip
        if not isinstance(answer, dict) or str(answer.get("status", "")).upper() != "OK":
            error = answer.get("error") if isinstance(answer, dict) else "no answer"
            raise DeliveryError(f"sfapi upload refused: {str(error)[:200]}")

    def _download(self, path: str) -> bytes:
        answer = self.client.transport.request(
            "GET", f"utilities/download/{self._machine}/{quote(path)}",
            params={"binary": "true"}, forbidden="resource",
        )  # fmt: skip
        if not isinstance(answer, dict) or str(answer.get("status", "")).upper() != "OK":
            raise DeliveryError(f"{path}: could not be read back")
        content = str(answer.get("file") or "")
        return base64.b64decode(content) if answer.get("is_binary") else content.encode()

    def _mode(self, path: str) -> str:
        answer = self.client.transport.request(
            "GET", f"utilities/ls/{self._machine}/{quote(path)}", forbidden="resource"
        )
        entries = answer.get("entries") if isinstance(answer, dict) else None
        perms = str(entries[0].get("perms", "")) if entries else ""
        return _octal(perms)


def _octal(perms: str) -> str:
    """``-rw-------`` -> ``0600`` (ls -l style permissions, as SFAPI's ls answers)."""
    if len(perms) != 10:
        return "?"
    bits = 0
    for i, char in enumerate(perms[1:]):
        if char not in "-":
            bits |= 1 << (8 - i)
    return f"{bits:04o}"


class IRIChannel:
    """DOE IRI v2 filesystem routes (tasks): mkdir + chmod 700 of a staging directory beside
    the target, upload, chmod 600, mv, then checksum and stat read back.  A deployment that
    does not serve them (OLCF's) answers 404: delivery fails saying so."""

    name = "iri"
    FINAL = ("completed", "failed", "canceled")

    def __init__(self, client: Any, wait: float = 30.0):
        self.client = client  # facilities.iri.IRIClient (shared per token)
        self.wait = wait

    def deliver(self, dest: str, data: bytes, *, setup: str, name: str) -> Receipt:
        if not dest.startswith("/"):
            raise DeliveryError(f"remote path {dest!r} must be absolute")
        staging = posixpath.join(posixpath.dirname(dest), STAGING)
        tmp = posixpath.join(staging, f"{posixpath.basename(dest)}.{secrets.token_hex(6)}")
        try:
            rid = self.client.resource_id()
            self._op(rid, "mkdir", {"path": staging, "parent": True})
            self._op(rid, "chmod", {"path": staging, "mode": "700"})
            self._upload(rid, tmp, data)
            self._op(rid, "chmod", {"path": tmp, "mode": "600"})
            self._op(rid, "mv", {"path": tmp, "target_path": dest})
            checksum = self._op(rid, "checksum", {"path": dest}).get("checksum")
            mode = self._op(rid, "stat", {"path": dest}).get("mode")
        except EdgeAPIError as exc:
            if exc.status in (404, 405, 501):
                raise DeliveryError(
                    f"this IRI deployment does not serve the filesystem routes (HTTP "
                    f"{exc.status}); deliver through Globus Compute"
                ) from None
            raise DeliveryError(f"iri delivery to {dest}: {exc}") from None
        octal = f"{int(mode) & 0o7777:04o}" if isinstance(mode, int) else "?"
        return _verify(Receipt(dest, f"sha256:{checksum}", octal), data)

    def _op(self, rid: str, op: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.client.transport.request("POST", f"filesystem/{op}/{rid}", json=body)
        return self._result(op, answer)

    def _upload(self, rid: str, path: str, data: bytes) -> None:
        boundary = "hedge" + secrets.token_hex(12)
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="{posixpath.basename(path)}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        answer = self.client.transport.request(
            "POST", f"filesystem/upload/{rid}", params={"path": path}, content=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )  # fmt: skip
        self._result("upload", answer)

    def _result(self, op: str, answer: Any) -> dict[str, Any]:
        """Wait for the operation's task; its ``output`` object (or {})."""
        task_id = answer.get("task_id") if isinstance(answer, dict) else None
        if not task_id:
            raise DeliveryError(f"iri {op}: the answer names no task")
        deadline = time.monotonic() + self.wait
        pause = 0.05
        while True:
            task = self.client.transport.request("GET", f"task/{quote(str(task_id))}")
            status = str(task.get("status") if isinstance(task, dict) else "")
            if status in self.FINAL:
                break
            if time.monotonic() > deadline:
                raise DeliveryError(f"iri {op}: task {task_id} not finished in {self.wait:.0f}s")
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        result = task.get("result") if isinstance(task.get("result"), dict) else {}
        if status != "completed":
            raise DeliveryError(f"iri {op} {status}: {str(result.get('output'))[:200]}")
        output = result.get("output")
        return output if isinstance(output, dict) else {}


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
    family's ``runner``; what the Globus Compute family registers in ``facility.CHANNELS``:
    ``CHANNELS["globus-compute"] = lambda options: envelope_channel(options, its_runner)``."""
    from . import redaction
    from .store import CredentialStoreError, load_key

    try:
        key = load_key(options.envelopeKeyFile)
    except CredentialStoreError as exc:
        raise DeliveryError(str(exc).replace("store key", "envelope key")) from None
    redaction.register(base64.urlsafe_b64encode(key).decode())
    return EnvelopeChannel(runner, key, options.siteKeyFile)
