"""The IRI v2 filesystem routes the credential manager uses, as tasks, for the IRI gateway.

Spec (``specification-v2/openapi/all_spec_v2.yaml``) and reference server
(``app/routers/filesystem``, ``app/routers/task``): every filesystem operation is a ``POST
/filesystem/<op>/{resource_id}`` answering ``TaskSubmitResponse {task_id, task_uri}``; the
outcome is read at ``GET /task/{task_id}`` as ``Task {id, status: pending|active|completed|
failed|canceled, result, command}``, with ``result`` the operation's response model
(``{"output": ...}``) or, on failure, ``{"output": "Error: <message>"}``.  Served here:
``mkdir`` ``{path, parent}``, ``chmod`` ``{path, mode}`` (octal text), ``upload``
(``?path=``, multipart ``file``, at most 5 MiB), ``mv`` ``{path|source_path, target_path}``,
``checksum`` ``{path}`` (``{"output": {"algorithm": "SHA-256", "checksum"}}``), ``stat``
``{path, dereference}``.  Paths are confined to the gateway's file roots like the SFAPI
gateway's utilities.  Tasks run when submitted (the first read finds them final); a task's
``command`` keeps its arguments but never an upload's content.  Tasks are per token user.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
import threading
from collections.abc import Callable
from typing import Any

from .files import FileArea, OutsideRoots, SymlinkRefused

OPS_SIZE_LIMIT = 5 * 1024 * 1024
OPERATIONS = ("mkdir", "chmod", "upload", "mv", "checksum", "stat")
_OCTAL = re.compile(r"^[0-7]{3,4}$")


class FileTasks:
    """The filesystem operations and their tasks, for one gateway."""

    def __init__(self, area: FileArea):
        self.area = area
        self._tasks: dict[str, tuple[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def submit(self, user: str, op: str, args: dict[str, Any], data: bytes = b"") -> str:
        """Run one operation now; its task id (the task holds the outcome)."""
        work: Callable[[], dict[str, Any]] = getattr(self, f"_{op}")
        shown = {k: v for k, v in args.items() if k != "content"}
        task: dict[str, Any] = {
            "id": secrets.token_hex(16),
            "status": "active",
            "result": None,
            "command": {"router": "filesystem", "command": op, "args": shown},
        }
        try:
            result = work(**args, **({"data": data} if op == "upload" else {}))
            task.update(status="completed", result=result)
        except (OSError, ValueError, OutsideRoots, SymlinkRefused) as exc:
            text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            task.update(status="failed", result={"output": f"Error: {text}"})
        with self._lock:
            self._tasks[task["id"]] = (user, task)
        return str(task["id"])

    def get(self, user: str, task_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._tasks.get(task_id)
        return entry[1] if entry is not None and entry[0] == user else None

    # operations ------------------------------------------------------------------------
    def _path(self, path: Any, write: bool = True) -> str:
        if not isinstance(path, str) or not path:
            raise ValueError("path is required")
        return str(self.area.resolve(path, for_write=write))

    def _mkdir(self, path: Any = None, parent: bool = False) -> dict[str, Any]:
        target = self._path(path)
        if parent:
            os.makedirs(target, exist_ok=True)
        else:
            os.mkdir(target)
        return {"output": _file(target)}

    def _chmod(self, mode: Any, path: Any = None) -> dict[str, Any]:
        if not isinstance(mode, str) or not _OCTAL.match(mode):
            raise ValueError(f"mode must be octal text, got {str(mode)[:10]!r}")
        target = self._path(path, write=False)
        if os.path.islink(target):
            raise ValueError("chmod of a symbolic link is refused")
        os.chmod(target, int(mode, 8))
        return {"output": _file(target)}

    def _upload(self, path: Any, data: bytes) -> dict[str, Any]:
        if len(data) > OPS_SIZE_LIMIT:
            raise ValueError("File to upload is too large.")
        answer = self.area.upload(str(path), None, data)
        if answer.get("status") != "OK":
            raise ValueError(str(answer.get("error")))
        return {"output": None}

    def _mv(self, target_path: Any, path: Any = None, source_path: Any = None) -> dict[str, Any]:
        source = self._path(path or source_path, write=False)
        target = self._path(target_path)
        os.replace(source, target)
        return {"output": _file(target)}

    def _checksum(self, path: Any) -> dict[str, Any]:
        target = self._path(path, write=False)
        digest = hashlib.sha256()
        with open(target, "rb") as f:
            for block in iter(lambda: f.read(1 << 16), b""):
                digest.update(block)
        return {"output": {"algorithm": "SHA-256", "checksum": digest.hexdigest()}}

    def _stat(self, path: Any, dereference: bool = False) -> dict[str, Any]:
        target = self._path(path, write=False)
        st = os.stat(target) if dereference else os.lstat(target)
        keys = ("mode", "ino", "dev", "nlink", "uid", "gid", "size")
        out = {k: int(getattr(st, f"st_{k}")) for k in keys}
        out.update(atime=int(st.st_atime), ctime=int(st.st_ctime), mtime=int(st.st_mtime))
        return {"output": out}


def _file(path: str) -> dict[str, Any]:
    st = os.lstat(path)
    kind = "directory" if stat.S_ISDIR(st.st_mode) else "file"
    return {
        "name": os.path.basename(path), "type": kind, "link_target": None,
        "user": str(st.st_uid), "group": str(st.st_gid),
        "permissions": stat.filemode(st.st_mode)[1:], "last_modified": str(int(st.st_mtime)),
        "size": str(st.st_size),
    }  # fmt: skip
