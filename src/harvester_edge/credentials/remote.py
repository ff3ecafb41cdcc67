"""Delivery through a facility's own file API: NERSC SFAPI's utilities, DOE IRI's v2
filesystem routes.  Both write into a 0700 staging directory beside the target, set 0600,
rename into place (atomic: same directory tree, same filesystem), then read the result back.
"""

from __future__ import annotations

import base64
import posixpath
import secrets
import shlex
import time
from typing import Any
from urllib.parse import quote

from ..errors import EdgeAPIError
from . import files
from .delivery import DeliveryError, Receipt, _verify


def multipart(filename: str, data: bytes) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one ``file`` part, and its content type."""
    boundary = "hedge" + secrets.token_hex(12)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


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
        body, content_type = multipart(posixpath.basename(path), data)
        answer = self.client.transport.request(
            "PUT", f"utilities/upload/{self._machine}/{quote(path)}", content=body,
            headers={"Content-Type": content_type},
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
        body, content_type = multipart(posixpath.basename(path), data)
        answer = self.client.transport.request(
            "POST", f"filesystem/upload/{rid}", params={"path": path}, content=body,
            headers={"Content-Type": content_type},
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
