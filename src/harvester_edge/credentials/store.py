"""The local credential store: one encrypted file per setup, AES-256-GCM.

- The key (32 random bytes, URL-safe base64) comes from a key file (mode 0600) or an
  environment variable named in the config; never from the config itself.  ``new_key``
  makes one (``harvester-edge creds keygen``).
- Each setup has its own directory ``<storeDir>/<setup>/`` (0700) and its own key, derived
  from the master key with HKDF and the setup name; the setup name is also the AES-GCM
  associated data.  A store copied into another setup's directory, or read with another
  setup's key, does not decrypt: queue A's manager cannot read B's store.
- A store that does not decrypt (corrupt, truncated, another key) raises one
  ``CredentialStoreError`` saying so; the store then refuses every write, so the file is
  never overwritten by a manager that could not read it.
- Writes are atomic (temporary file + rename, 0600).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import stat
import threading
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import EdgeError
from . import redaction
from .files import atomic_write, private_dir, sha256

MAGIC = b"HEDGE-CRED-STORE-1\n"
_SETUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")


class CredentialStoreError(EdgeError):
    """The store cannot be used (no key, wrong key, corrupt file); nothing was written."""


def new_key() -> str:
    """A fresh master key as text (URL-safe base64 of 32 random bytes)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def load_key(key_file: str = "", key_env: str = "") -> bytes:
    """The master key from a 0600 file or an environment variable (by name)."""
    if key_file:
        try:
            st = os.stat(key_file)
        except OSError as exc:
            raise CredentialStoreError(
                f"store key file {key_file} cannot be read ({exc.strerror})"
            ) from None
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise CredentialStoreError(
                f"store key file {key_file} has mode {stat.S_IMODE(st.st_mode):04o}; "
                f"it must be 0600 (run: chmod 600 {key_file})"
            )
        with open(key_file, encoding="ascii", errors="replace") as f:
            text, where = f.read().strip(), f"store key file {key_file}"
    elif key_env:
        text, where = os.environ.get(key_env, "").strip(), f"environment variable {key_env}"
        if not text:
            raise CredentialStoreError(f"store key {where} is not set")
    else:
        raise CredentialStoreError("no store key: set storeKeyFile or storeKeyEnv")
    redaction.register(text)
    try:
        key = base64.urlsafe_b64decode(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        key = b""
    if len(key) != 32:
        raise CredentialStoreError(
            f"{where} does not hold a store key (32 bytes, URL-safe base64; make one with "
            "'harvester-edge creds keygen')"
        )
    return key


def check_setup_name(setup: str) -> str:
    if not _SETUP.match(setup) or setup in (".", ".."):
        raise CredentialStoreError(
            f"setup name {setup[:60]!r} cannot name a store (letters, digits, _ . @ + -)"
        )
    return setup


@dataclass(frozen=True)
class Entry:
    """One stored credential.  ``value`` is the secret; repr never shows it."""

    name: str
    value: str
    issued_at: float
    expires_at: float | None
    fingerprint: str
    source: str = ""
    #: where it was delivered, the checksum read back there, and when (0: not yet)
    delivered_to: str = ""
    delivered_checksum: str = ""
    delivered_at: float = 0.0

    def __repr__(self) -> str:
        return f"Entry({self.name!r}, {self.fingerprint}, expires_at={self.expires_at})"

    @classmethod
    def make(
        cls, name: str, value: str, issued_at: float, expires_at: float | None, source: str = ""
    ) -> Entry:
        redaction.register(value)
        return cls(name, value, issued_at, expires_at, sha256(value.encode())[:19], source)


class CredentialStore:
    """The encrypted store of one setup (thread-safe; reads and writes are whole-file)."""

    def __init__(self, root: str, setup: str, master_key: bytes):
        self.setup = check_setup_name(setup)
        self.root = root
        self.dir = os.path.join(root, setup)
        self.path = os.path.join(self.dir, "store.bin")
        self._aead = AESGCM(_derive(master_key, setup))
        self._lock = threading.Lock()
        self._broken: str | None = None

    def __repr__(self) -> str:
        return f"CredentialStore({self.path!r})"

    def load(self) -> dict[str, Entry]:
        """Every entry; {} when there is no store yet.  Raises CredentialStoreError."""
        with self._lock:
            return self._load()

    def _load(self) -> dict[str, Entry]:
        try:
            with open(self.path, "rb") as f:
                blob = f.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise self._fail(f"cannot be read ({exc.strerror})") from None
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 12 + 16:
            raise self._fail("is not a harvester-edge credential store (corrupt or truncated)")
        nonce, body = blob[len(MAGIC) : len(MAGIC) + 12], blob[len(MAGIC) + 12 :]
        try:
            plain = self._aead.decrypt(nonce, body, self._aad())
        except InvalidTag:
            raise self._fail(
                "does not decrypt with this setup's key: a wrong store key, another setup's "
                "store, or a corrupt file"
            ) from None
        try:
            data = json.loads(plain)
            entries = {k: Entry(**v) for k, v in data["entries"].items()}
        except (ValueError, KeyError, TypeError):
            raise self._fail("decrypts but its content is not readable") from None
        for entry in entries.values():
            redaction.register(entry.value)
        self._broken = None
        return entries

    def _fail(self, why: str) -> CredentialStoreError:
        self._broken = f"credential store {self.path} {why}; nothing was written to it"
        return CredentialStoreError(self._broken)

    def _aad(self) -> bytes:
        return b"harvester-edge credential store\0" + self.setup.encode()

    def put(self, entry: Entry) -> None:
        """Add or replace one entry (read, change, write whole; refused if unreadable)."""
        with self._lock:
            entries = self._load()
            entries[entry.name] = entry
            self._write(entries)

    def remove(self, name: str) -> bool:
        with self._lock:
            entries = self._load()
            if entries.pop(name, None) is None:
                return False
            self._write(entries)
            return True

    def _write(self, entries: dict[str, Entry]) -> None:
        if self._broken:
            raise CredentialStoreError(self._broken)
        private_dir(self.root)
        private_dir(self.dir)
        plain = json.dumps({"entries": {k: asdict(v) for k, v in entries.items()}}).encode()
        nonce = secrets.token_bytes(12)
        atomic_write(self.path, MAGIC + nonce + self._aead.encrypt(nonce, plain, self._aad()))


def _derive(master: bytes, setup: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"harvester-edge store v1",
        info=setup.encode(),
    ).derive(master)  # fmt: skip


def describe(entries: dict[str, Entry]) -> list[dict[str, Any]]:
    """Entries without their values (status output)."""
    return [
        {"name": e.name, "fingerprint": e.fingerprint, "issued_at": e.issued_at,
         "expires_at": e.expires_at, "source": e.source}
        for e in entries.values()
    ]  # fmt: skip
