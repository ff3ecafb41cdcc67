"""Atomic, private files: written to a temporary name in the same directory, then renamed.

A reader sees the old file or the new one, never a partial one; the temporary file is
created 0600 (``O_EXCL``, never through a link), so nobody else can read it at any moment.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> str:
    """Write ``data`` to ``path`` atomically with ``mode``; the checksum of what was written."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)  # the umask may have taken bits away
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return sha256(data)


def read_back(path: str) -> tuple[str, int]:
    """The checksum and permission bits of the file now at ``path``."""
    with open(path, "rb") as f:
        data = f.read()
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
    return sha256(data), mode


def private_dir(path: str) -> str:
    """``path`` as a directory only its owner may enter (made 0700 if missing)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{path} is not a directory")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path
