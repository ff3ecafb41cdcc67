"""Unique job tags: how we find a job again after an ambiguous submit.

Every batch job carries, as its Slurm job name, a tag derived from the Harvester instance id,
the queue and the worker id.  A submit that timed out, a task that vanished, a crash between
"submitted" and "stored the id": in each case the job is looked up by this tag and adopted,
never submitted twice.  The queue part lets the submitter count its live allocations per queue.
"""

from __future__ import annotations

import hashlib
import re

from ..errors import EdgeConfigError

PREFIX = "hedge"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")
_TAG = re.compile(rf"^{PREFIX}-(?P<harvester>[A-Za-z0-9_.]+)-(?P<queue>[A-Za-z0-9_.]+)-w\d+$")
_MAX_PART = 32


def _slug(text: str, what: str) -> str:
    """A short, name-safe form of ``text``; long or odd values get a stable hash suffix."""
    if not text:
        raise EdgeConfigError(f"cannot build a job tag: {what} is empty")
    slug = _UNSAFE.sub("_", text).strip("_") or "x"
    if slug != text or len(slug) > _MAX_PART:
        digest = hashlib.sha1(text.encode()).hexdigest()[:6]
        slug = f"{slug[: _MAX_PART - 7]}.{digest}"
    return slug


def queue_prefix(harvester_id: str, queue: str) -> str:
    """The tag prefix shared by all jobs of one queue of one Harvester instance."""
    return f"{PREFIX}-{_slug(harvester_id, 'harvester id')}-{_slug(queue, 'queue name')}-w"


def job_tag(harvester_id: str, queue: str, worker_id: int | str) -> str:
    """The unique Slurm job name of a worker's batch job."""
    try:
        wid = int(worker_id)
    except (TypeError, ValueError):
        raise EdgeConfigError(f"workerID must be an integer, got {worker_id!r}") from None
    if wid < 0:
        raise EdgeConfigError(f"workerID must not be negative, got {wid}")
    return f"{queue_prefix(harvester_id, queue)}{wid}"


def prefix_of(tag: str) -> str | None:
    """The queue prefix of one of our tags (see ``queue_prefix``), None for other names."""
    m = _TAG.match(tag or "")
    return f"{PREFIX}-{m.group('harvester')}-{m.group('queue')}-w" if m else None
