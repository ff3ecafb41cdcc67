"""The site side of end-to-end encrypted delivery (Globus Compute): open, verify, write.

This module runs on the facility (as a Globus Compute function, or by hand:
``python -m harvester_edge.credentials.site_receiver --key-file K --dest PATH < envelope``).
It needs only the standard library and ``cryptography``, so ``receive`` can be shipped by
value to an endpoint where harvester-edge is not installed.

The envelope (``envelope.seal``) is AES-256-GCM under a key only Harvester and the site hold
(a 0600 file on each side).  Everything but the ciphertext is authenticated as associated
data: the destination, the setup, the time it was sealed and the plaintext's checksum.  A
payload changed in transit, sealed with another key, addressed to another path, or older
than ``max_age`` seconds is refused and nothing is written.  Accepted: written atomically
(temporary file in the same directory, 0600, then rename), read back, checksum answered.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import stat
import sys
import time
from typing import Any

VERSION = 1
FIELDS = ("v", "alg", "kid", "setup", "name", "dest", "issued", "sha256")


class Refused(Exception):
    """The envelope is not accepted; nothing was written."""


def key_id(key: bytes) -> str:
    """A public name for a key (which key sealed it), never the key."""
    return hashlib.sha256(b"harvester-edge envelope key\0" + key).hexdigest()[:16]


def aad(header: dict[str, Any]) -> bytes:
    return json.dumps({k: header[k] for k in FIELDS}, sort_keys=True).encode()


def read_key(key_file: str) -> bytes:
    st = os.stat(key_file)
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise Refused(f"key file {key_file} must be mode 0600 (run: chmod 600 {key_file})")
    with open(key_file, "rb") as f:
        key = base64.urlsafe_b64decode(f.read().strip())
    if len(key) != 32:
        raise Refused(f"key file {key_file} does not hold a 32-byte key")
    return key


def open_envelope(
    text: str, dest: str, key: bytes, *, max_age: float = 900.0, now: float | None = None
) -> bytes:
    """The plaintext of a valid envelope addressed to ``dest``; raises Refused otherwise."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        env = json.loads(text)
        header = {k: env[k] for k in FIELDS}
        nonce = base64.b64decode(env["nonce"], validate=True)
        body = base64.b64decode(env["ct"], validate=True)
    except (ValueError, KeyError, TypeError):
        raise Refused("payload refused: not a harvester-edge envelope") from None
    if header["v"] != VERSION or header["alg"] != "A256GCM":
        raise Refused(f"payload refused: unknown envelope version {header['v']!r}")
    if header["kid"] != key_id(key):
        raise Refused("payload refused: sealed with another key than this site's")
    try:
        plain = AESGCM(key).decrypt(nonce, body, aad(header))
    except InvalidTag:
        raise Refused("payload refused: authentication failed (tampered in transit)") from None
    if header["dest"] != dest:
        raise Refused("payload refused: it is addressed to another path")
    now = time.time() if now is None else now
    if not isinstance(header["issued"], (int, float)) or abs(now - header["issued"]) > max_age:
        raise Refused(f"payload refused: sealed more than {max_age:.0f}s ago (a replay?)")
    if hashlib.sha256(plain).hexdigest() != header["sha256"]:
        raise Refused("payload refused: checksum does not match")
    return plain


def write_atomic(dest: str, data: bytes) -> str:
    directory = os.path.dirname(os.path.abspath(dest))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(dest)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(data)
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
        return "sha256:" + hashlib.sha256(f.read()).hexdigest()


def receive(envelope: str, dest: str, key_file: str, max_age: float = 900.0) -> dict[str, Any]:
    """Open ``envelope`` with the site key, write it to ``dest``; the read-back checksum and
    mode.  The Globus Compute function (returns a dict; raises Refused on any doubt)."""
    plain = open_envelope(envelope, dest, read_key(key_file), max_age=max_age)
    checksum = write_atomic(dest, plain)
    mode = stat.S_IMODE(os.stat(dest).st_mode)
    return {"path": dest, "sha256": checksum, "mode": f"{mode:04o}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="open a harvester-edge envelope on stdin")
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--dest", required=True)
    parser.add_argument("--max-age", type=float, default=900.0)
    args = parser.parse_args(argv)
    try:
        result = receive(sys.stdin.read(), args.dest, args.key_file, args.max_age)
    except (Refused, OSError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
