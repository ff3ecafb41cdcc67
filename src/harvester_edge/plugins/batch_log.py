"""Pilot logs in PanDA: the end of a finished worker's batch log, handed to Harvester.

When a worker ends, the monitor reads the last ``batchLogMaxBytes`` of its batch job's output
file from the facility (only where the client has file access, ``capabilities.files``; all
workers of the cycle in one ``read_tails`` call, which the client does in bulk with bounded
concurrency), writes it into the worker's access point as ``<tag>.batch.log`` and calls
``workspec.set_log_file("batch_log", path)``: Harvester's propagator uploads the file to
PanDA's cache (``<harvesterID>__<tag>.batch.log``) and PanDA's monitor links it from the
worker.  Read once per worker (``edgeBatchLogCopy``); a read that fails now is tried again on
Harvester's next check of the worker.  Off with ``fetchBatchLog: false``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from ..edge.lifecycle import BATCH_LOG, BATCH_LOG_COPY, TAG, attr
from ..errors import EdgeAPIError
from ..facilities.base import FacilityClient
from ..harvester import WorkSpec
from .base import LOG
from .options import EdgeOptions

_PATTERN = re.compile(r"%(%|[0-9]*[A-Za-z])")
MISSING = "missing"


def facility_path(ws: WorkSpec) -> str | None:
    """The batch log's path on the facility, Slurm's ``%j`` (job id), ``%x`` (job name) and
    ``%%`` expanded; None when unknown or it uses a pattern only Slurm knows (``%u``...)."""
    path = attr(ws, BATCH_LOG)
    if not path or not ws.batchID:
        return None
    values = {"j": str(ws.batchID), "x": str(attr(ws, TAG) or ""), "%": "%"}
    unknown = False

    def expand(match: re.Match[str]) -> str:
        nonlocal unknown
        key = match.group(1)
        if key in values and values[key]:
            return values[key]
        unknown = True
        return match.group(0)

    expanded = _PATTERN.sub(expand, str(path))
    return None if unknown else expanded


def wanted_paths(
    client: FacilityClient, options: EdgeOptions, workers: Sequence[WorkSpec]
) -> dict[int, str]:
    """Index in ``workers`` -> batch-log path on the facility, for the workers whose log is
    still to be copied (none when off or the client has no file access)."""
    if not options.fetchBatchLog or not client.capabilities.files:
        return {}
    wanted: dict[int, str] = {}
    for i, ws in enumerate(workers):
        if attr(ws, BATCH_LOG_COPY) or not ws.accessPoint:
            continue
        path = facility_path(ws)
        if path:
            wanted[i] = path
    return wanted


def fetch_batch_logs(
    client: FacilityClient, options: EdgeOptions, workers: Sequence[WorkSpec]
) -> None:
    """Copy the ends of these (final) workers' batch logs and ``set_log_file`` them."""
    wanted = wanted_paths(client, options, workers)
    if not wanted:
        return
    try:
        texts = client.read_tails(sorted(set(wanted.values())), options.batchLogMaxBytes)
    except EdgeAPIError as exc:
        LOG.info(f"batch logs could not be read now: {exc}")
        return
    for i, path in wanted.items():
        if path in texts:  # absent: not readable now, the next check tries again
            keep(workers[i], texts[path])


def keep(ws: WorkSpec, text: str | None) -> None:
    """Hand the batch log's end to Harvester (None: the file does not exist)."""
    if text is None:
        ws.set_work_attributes({BATCH_LOG_COPY: MISSING})
        return
    try:
        local = write_copy(ws, text)
    except OSError as exc:
        LOG.warning(f"workerID={ws.workerID}: cannot write the batch log copy: {exc}")
        return
    ws.set_log_file("batch_log", local)
    ws.set_work_attributes({BATCH_LOG_COPY: local})


def write_copy(ws: WorkSpec, text: str) -> str:
    """``<access point>/<tag>.batch.log`` (the name is unique in PanDA's cache: the tag holds
    the Harvester id, queue and worker id), written whole or not at all."""
    directory = ws.get_access_point()
    os.makedirs(directory, exist_ok=True)
    name = f"{attr(ws, TAG) or f'worker-{ws.workerID}'}.batch.log"
    path = os.path.join(directory, name)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path
