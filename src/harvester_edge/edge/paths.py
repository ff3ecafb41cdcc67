"""Facility-side paths of a worker: absolute, expanded here, quoted so nothing expands later.

Remote paths (``remoteWorkDir``, ``logDir``) are absolute: the facility's file utilities (SFAPI
``utilities/download``, ...) never expand ``${SCRATCH}``-style references, so such a path could
not be read back by the monitor.  Only Harvester's own ``${harvesterID}``, ``${workerID}`` and
``${queueName}`` are allowed in them; they are expanded here, before the script is rendered,
and the result goes into the script as one double-quoted word in which nothing expands.
"""

from __future__ import annotations

import re

from ..errors import EdgeConfigError
from .render import CONTROL_CHARS

__all__ = [
    "REMOTE_PATH_EXAMPLE",
    "check_remote_path",
    "existing_base",
    "expand_worker_path",
    "shell_path",
]

#: Example given when a remote path is refused (NERSC's scratch layout).
REMOTE_PATH_EXAMPLE = "/pscratch/sd/<u>/<user>/harvester-edge"
_WORKER_PLACEHOLDER = re.compile(r"\$\{(?:harvesterID|workerID|queueName)\}")


def shell_path(name: str, value: str) -> str:
    """``value`` as one double-quoted shell word in which nothing expands.

    Every ``$``, backtick, quote or backslash is escaped, so ``$VAR`` and ``$(...)`` stay
    literal: the script must use exactly the path the monitor later reads through the
    facility's file utility.
    """
    if CONTROL_CHARS.search(value):
        raise EdgeConfigError(f"{name}: contains a control character")
    for char in ("\\", '"', "$", "`"):
        value = value.replace(char, "\\" + char)
    return f'"{value}"'


def check_remote_path(key: str, value: str) -> str:
    """``value`` if it is an absolute facility path, else an error naming ``key`` and why.

    Allowed: a leading ``/`` and, besides plain characters, only Harvester's ``${harvesterID}``,
    ``${workerID}``, ``${queueName}`` (expanded before rendering).  Any other ``$`` is an
    environment reference that no edge service would expand.
    """
    if CONTROL_CHARS.search(value):
        raise EdgeConfigError(f"{key}: must not contain control characters (got {value!r})")
    if "$" in _WORKER_PLACEHOLDER.sub("", value):
        raise EdgeConfigError(
            f"{key}: environment references such as ${{SCRATCH}} are not expanded by the edge "
            f"services' file utilities; give the absolute path, e.g. {REMOTE_PATH_EXAMPLE} "
            "(only ${harvesterID}, ${workerID}, ${queueName} may appear; "
            f"got {value!r})"
        )
    if not value.startswith("/"):
        raise EdgeConfigError(
            f"{key}: must be an absolute path on the facility, e.g. {REMOTE_PATH_EXAMPLE} "
            f"(got {value!r})"
        )
    return value


def expand_worker_path(template: str, harvester_id: str, worker_id: int, queue: str = "") -> str:
    """Replace Harvester's ``${harvesterID}``, ``${workerID}``, ``${queueName}`` in a path/URL."""
    return (
        template.replace("${harvesterID}", harvester_id)
        .replace("${workerID}", str(worker_id))
        .replace("${queueName}", queue)
    )


def existing_base(template: str) -> str:
    """The directory of a ``remoteWorkDir`` that exists before any worker's job runs.

    That is the path up to its first Harvester placeholder, cut back to a whole directory
    (``/p/edge/${queueName}/w`` -> ``/p/edge``, ``/p/h-${workerID}`` -> ``/p``); with no
    placeholder, the configured dir itself (workers live in ``<it>/<harvesterID>/<workerID>``).
    The worker's own dir is made by its batch script, so a service that starts the job in a
    directory (S3M, IRI) must start it here: Slurm fails a job whose output directory is
    missing before the script runs.
    """
    cut = template.find("${")
    if cut < 0:
        return template.rstrip("/") or "/"
    head = template[:cut]
    if not head.endswith("/"):
        head = head[: head.rfind("/") + 1]
    return head.rstrip("/") or "/"
