"""``harvester-edge workers QUEUE``: the facility's own view of a queue's batch jobs.

What Harvester's monitor would see, without Harvester's database: the live jobs under the
queue's tag prefix come from one listing request (``live_tags``), their records from one
``find`` request per chunk of tags (plus the tags of ``--worker`` ids, to see workers that
already ended).  Read only: nothing is submitted, cancelled or changed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from .edge import tags
from .errors import EdgeAPIError
from .facilities.base import Deferred, FacilityClient, chunks
from .harvester import harvester_id
from .queue_config import build_plugin, merged_queue, plugin_section


def queue_client(config: Mapping[str, Any], queue: str) -> FacilityClient:
    """The shared client the queue's submitter uses (no I/O until asked)."""
    plugin = build_plugin(plugin_section(queue, merged_queue(config, queue), "submitter"))
    binding = getattr(plugin, "_edge", None)
    if binding is None:
        raise ValueError(f"queue {queue}: the submitter is not a harvester-edge plugin")
    return binding.client()


def worker_rows(
    client: FacilityClient, queue: str, worker_ids: list[int] | None = None, wait: float = 60.0
) -> list[dict[str, Any]]:
    """One row per job under the queue's tags: live ones, and those of ``worker_ids``.
    A service whose lookups are deferred probes (Globus Compute) is asked again until the
    probe is read, for at most ``wait`` seconds."""
    prefix = tags.queue_prefix(harvester_id(), queue)
    wanted = list(dict.fromkeys(_live_tags(client, prefix, wait)))
    for wid in worker_ids or []:
        tag = tags.job_tag(harvester_id(), queue, wid)
        if tag not in wanted:
            wanted.append(tag)
    rows: list[dict[str, Any]] = []
    size = client.capabilities.max_ids_per_query
    for part in chunks(wanted, size):
        found = _found(client, part, wait)
        for tag in part:
            for record in found.get(tag, []):
                rows.append(
                    {
                        "workerID": int(tag[len(prefix) :]) if tag.startswith(prefix) else None,
                        "tag": tag,
                        "batchID": record.job_id,
                        "state": record.state.value,
                        "native": record.native_status,
                        "exitCode": record.exit_code,
                        "reason": record.reason,
                        "nodes": record.nodes,
                    }
                )
    return sorted(rows, key=lambda r: (r["workerID"] or 0, r["batchID"]))


def _live_tags(client: FacilityClient, prefix: str, wait: float) -> list[str]:
    """``live_tags``; a deferred service's listing probe not read yet is waited for."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return client.live_tags(prefix)
        except EdgeAPIError as exc:
            deferred = client.capabilities.deferred_queries
            if not (deferred and exc.transient) or time.monotonic() + 0.5 > deadline:
                raise
            time.sleep(0.5)


def _found(client: FacilityClient, part: list[str], wait: float) -> dict[str, list[Any]]:
    deadline = time.monotonic() + wait
    while True:
        found = client.find(part)
        if not isinstance(found, Deferred):
            return found
        if time.monotonic() + 0.5 > deadline:
            raise TimeoutError(f"{client.service}: lookup probe {found.probe} pending; ask again")
        time.sleep(0.5)


def render_table(rows: list[dict[str, Any]]) -> str:
    head = ["workerID", "batchID", "state", "native", "exitCode", "nodes", "reason", "tag"]
    cells = [head] + [["" if r[k] is None else str(r[k]) for k in head] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells)
    return "\n".join(line.rstrip() for line in lines)


def render_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2)
