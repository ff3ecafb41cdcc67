"""Confined file access for the gateways' ``utilities`` endpoints.

A loopback gateway runs as the local user (often root in CI), so its ls/download/upload must
never reach outside the directories it was given: paths are resolved (symlinks and ``..``
included) and must stay inside one of ``roots``.  Answers mimic SFAPI's shapes, including
its "No such file or directory" wording, which sfapi_client checks for.

Symbolic links: ``ls`` reports a link as a link (``ls -l`` style, type ``l`` and ``name ->
target``) while confinement is checked on the path it resolves to; an upload never writes
through a link (the final component is opened with ``O_NOFOLLOW``), dangling or not.
"""

from __future__ import annotations

import base64
import errno
import grp
import os
import pwd
import stat
import time
from pathlib import Path
from typing import Any

MAX_DOWNLOAD = 16 * 1024 * 1024  # bytes; bigger files are refused, not truncated


class OutsideRoots(PermissionError):
    """The path resolves outside every allowed root."""


class SymlinkRefused(PermissionError):
    """An upload named a symbolic link: the gateway never writes through links."""


class FileArea:
    """Files under ``roots``; relative paths are taken relative to ``home``."""

    def __init__(self, roots: list[str | os.PathLike[str]], home: str | os.PathLike[str]) -> None:
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self.home = Path(home)

    def lexical(self, raw: str) -> Path:
        """The request path as given (relative ones under ``home``), no link resolved."""
        return Path(raw) if raw.startswith("/") else self.home / raw

    def resolve(self, raw: str, for_write: bool = False) -> Path:
        """Resolve a request path and check confinement; raise OutsideRoots if it escapes.

        For a write the file may not exist yet, so its parent directory is resolved instead.
        """
        path = self.lexical(raw)
        if for_write and not path.exists():
            real = Path(os.path.realpath(path.parent)) / path.name
        else:
            real = Path(os.path.realpath(path))
        for root in self.roots:
            if real == root or root in real.parents:
                return real
        raise OutsideRoots(f"{raw}: path is outside the allowed directories")

    # ------------------------------------------------------------------ operations
    def ls(self, raw: str) -> dict[str, Any]:
        """SFAPI DirectoryOutput: one entry (full path) for a file, ``.``/``..``/children else.

        A symbolic link named without a trailing slash is one ``l`` entry ``path -> target``
        (like ``ls -l``), also when it points to a directory; confinement is still checked on
        the resolved path, so a link out of the roots is refused like its target.
        """
        path = self.resolve(raw)
        if not raw.endswith("/"):
            link = self.lexical(raw)
            try:
                lst = os.lstat(link)
            except OSError:
                lst = None
            if lst is not None and stat.S_ISLNK(lst.st_mode):
                return _listing([_entry(str(link), lst, link)])
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return _error(f"ls: cannot access '{raw}': No such file or directory", entries=[])
        if not stat.S_ISDIR(st.st_mode):
            return _listing([_entry(str(path), st)])
        entries = [_entry(".", st), _entry("..", os.lstat(path.parent))]
        try:
            children = sorted(os.listdir(path))
        except OSError as exc:
            return _error(f"ls: cannot open directory '{raw}': {exc.strerror}", entries=[])
        for name in children:
            try:
                entries.append(_entry(name, os.lstat(path / name), path / name))
            except OSError:
                continue  # vanished while listing
        return _listing(entries)

    def download(self, raw: str, binary: bool) -> dict[str, Any]:
        """SFAPI FileDownload: text, or base64 with ``is_binary`` when asked or not UTF-8."""
        path = self.resolve(raw)
        if path.is_dir():
            return _error(f"{raw}: Is a directory")
        try:
            if path.stat().st_size > MAX_DOWNLOAD:
                return _error(f"{raw}: file larger than {MAX_DOWNLOAD} bytes")
            data = path.read_bytes()
        except FileNotFoundError:
            return _error(f"{raw}: No such file or directory")
        except OSError as exc:
            return _error(f"{raw}: {exc.strerror}")
        if not binary:
            try:
                return {"status": "OK", "file": data.decode(), "is_binary": False, "error": None}
            except UnicodeDecodeError:
                pass
        encoded = base64.b64encode(data).decode()
        return {"status": "OK", "file": encoded, "is_binary": True, "error": None}

    def upload(self, raw: str, filename: str | None, data: bytes) -> dict[str, Any]:
        """SFAPI UploadResult; uploading onto a directory stores ``filename`` inside it.

        Raises OutsideRoots for a path out of the roots and SymlinkRefused for a symbolic
        link (dangling or not, wherever it points): nothing is ever written through a link.
        """
        _refuse_link(self.lexical(raw), raw)
        path = self.resolve(raw, for_write=True)
        if path.is_dir():
            if not filename or "/" in filename or filename in (".", ".."):
                return _error(f"{raw}: Is a directory")
            _refuse_link(path / filename, raw)
            path = self.resolve(str(path / filename), for_write=True)
        if not path.parent.is_dir():
            return _error(f"{raw}: No such file or directory")
        try:
            _write_nofollow(path, data)
        except SymlinkRefused:
            message = f"{raw}: is a symbolic link; uploads never follow links"
            raise SymlinkRefused(message) from None
        except OSError as exc:
            return _error(f"{raw}: {exc.strerror}")
        return {"status": "OK", "output": f"File {path} uploaded", "error": None}


def _refuse_link(path: Path, raw: str) -> None:
    if path.is_symlink():
        raise SymlinkRefused(f"{raw}: is a symbolic link; uploads never follow links")


def _write_nofollow(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` without following a link at its last component.

    The parent was resolved (no links) and checked by the caller; ``O_NOFOLLOW`` closes the
    race where a link appears at the name after that check.  ``O_NONBLOCK`` keeps a FIFO from
    blocking the gateway; only regular files are written.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = os.open(path.name, flags, 0o666, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise SymlinkRefused(str(path)) from exc
            raise
    finally:
        os.close(parent)
    with os.fdopen(fd, "wb") as out:
        if not stat.S_ISREG(os.fstat(out.fileno()).st_mode):
            raise OSError(errno.EINVAL, "Not a regular file")
        out.truncate(0)
        out.write(data)


def _listing(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"status": "OK", "entries": entries, "error": None, "file": None, "is_binary": False}


def _error(message: str, **extra: Any) -> dict[str, Any]:
    return {"status": "ERROR", "error": message, "file": None, "is_binary": False, **extra}


def _entry(name: str, st: os.stat_result, path: Path | None = None) -> dict[str, Any]:
    """One ``ls -l`` style entry; symlinks read ``name -> target`` like SFAPI's."""
    if stat.S_ISLNK(st.st_mode) and path is not None:
        try:
            name = f"{name} -> {os.readlink(path)}"
        except OSError:
            pass
    return {
        "perms": stat.filemode(st.st_mode),
        "hardlinks": st.st_nlink,
        "user": _user(st.st_uid),
        "group": _group(st.st_gid),
        "size": float(st.st_size),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(st.st_mtime)),
        "name": name,
    }


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
