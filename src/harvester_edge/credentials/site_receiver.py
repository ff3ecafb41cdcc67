"""The site side of end-to-end encrypted delivery (Globus Compute): open, verify, write.

This module runs on the facility.  ``receive`` is self-contained (every import and helper
inside it, only the standard library and ``cryptography``), so Globus Compute can ship it by
source to an endpoint where harvester-edge is not installed; by hand:
``python -m harvester_edge.credentials.site_receiver --key-file K --dest PATH < envelope``.

The envelope (``envelope.seal``) is AES-256-GCM under a key only Harvester and the site hold
(a 0600 file on each side).  Everything but the ciphertext is authenticated as associated
data: the destination, the setup, the time it was sealed and the plaintext's checksum.  A
payload changed in transit, sealed with another key, addressed to another path, or older
than ``max_age`` seconds is refused (``ValueError`` starting "payload refused") and nothing
is written.  Accepted: written atomically (temporary file in the same directory, 0600, then
rename), read back; the answer is the path, the read-back checksum and the mode.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from typing import Any

VERSION = 1
FIELDS = ("v", "alg", "kid", "setup", "name", "dest", "issued", "sha256")


def key_id(key: bytes) -> str:
    """A public name for a key (which key sealed it), never the key."""
    return hashlib.sha256(b"harvester-edge envelope key\0" + key).hexdigest()[:16]


def aad(header: dict[str, Any]) -> bytes:
    return json.dumps({k: header[k] for k in FIELDS}, sort_keys=True).encode()


def receive(
    envelope: str,
    dest: str,
    key_file: str,
    max_age: float = 900.0,
    now: float | None = None,
    key: bytes | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Open ``envelope`` with the site key (``key_file``, 0600), write it to ``dest``.

    Returns ``{"path", "sha256", "mode"}`` (read back).  ``key``/``write=False`` (tests and
    ``open_envelope``): open only, the plaintext under ``"plaintext"``."""
    import base64
    import hashlib
    import json
    import os
    import secrets
    import stat
    import time

    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    fields = ("v", "alg", "kid", "setup", "name", "dest", "issued", "sha256")

    def refuse(why: str) -> ValueError:
        return ValueError(f"payload refused: {why}")

    if key is None:
        st = os.stat(key_file)
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise refuse(f"key file {key_file} must be mode 0600 (run: chmod 600 {key_file})")
        with open(key_file, "rb") as f:
            key = base64.urlsafe_b64decode(f.read().strip())
    if len(key) != 32:
        raise refuse(f"key file {key_file} does not hold a 32-byte key")
    try:
        env = json.loads(envelope)
        header = {k: env[k] for k in fields}
        nonce = base64.b64decode(env["nonce"], validate=True)
        body = base64.b64decode(env["ct"], validate=True)
    except (ValueError, KeyError, TypeError):
        raise refuse("not a harvester-edge envelope") from None
    if header["v"] != 1 or header["alg"] != "A256GCM":
        raise refuse(f"unknown envelope version {header['v']!r}")
    kid = hashlib.sha256(b"harvester-edge envelope key\0" + key).hexdigest()[:16]
    if header["kid"] != kid:
        raise refuse("sealed with another key than this site's")
    associated = json.dumps(header, sort_keys=True).encode()
    try:
        plain = AESGCM(key).decrypt(nonce, body, associated)
    except InvalidTag:
        raise refuse("authentication failed (tampered in transit)") from None
    if header["dest"] != dest:
        raise refuse("it is addressed to another path")
    now = time.time() if now is None else now
    if not isinstance(header["issued"], (int, float)) or abs(now - header["issued"]) > max_age:
        raise refuse(f"sealed more than {max_age:.0f}s ago (a replay?)")
    if hashlib.sha256(plain).hexdigest() != header["sha256"]:
        raise refuse("checksum does not match")
    if not write:
        return {"plaintext": plain}

    directory = os.path.dirname(os.path.abspath(dest))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(dest)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(plain)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    with open(dest, "rb") as f:
        checksum = "sha256:" + hashlib.sha256(f.read()).hexdigest()
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
    return {"path": dest, "sha256": checksum, "mode": f"{mode:04o}"}


def open_envelope(
    text: str, dest: str, key: bytes, *, max_age: float = 900.0, now: float | None = None
) -> bytes:
    """The plaintext of a valid envelope addressed to ``dest`` (ValueError otherwise)."""
    return bytes(receive(text, dest, "", max_age, now, key=key, write=False)["plaintext"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="open a harvester-edge envelope on stdin")
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--dest", required=True)
    parser.add_argument("--max-age", type=float, default=900.0)
    args = parser.parse_args(argv)
    try:
        result = receive(sys.stdin.read(), args.dest, args.key_file, args.max_age)
    except (ValueError, OSError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
