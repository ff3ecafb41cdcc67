"""The generic sweeper: cancel in bulk and confirm with Slurm; clean up only what is ours.

``kill_workers`` resolves workers that have no job id yet (pending task, pending lookup),
asks the facility to cancel every job, then polls the queue and accounting (one request each
per round) until Slurm shows each job final or ``killConfirmSeconds`` pass.  A worker is
reported killed only when Slurm really ended its job (or it never had one).
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

from ..edge.jobs import Resolution, oldest_first
from ..errors import EdgeAPIError
from ..facilities.base import FacilityClient
from ..harvester import BaseSweeper, WorkSpec
from .base import LOG, TAG, TASK, EdgePlugin, attr
from .monitor import chunks

Outcome = tuple[bool, str]


class EdgeSweeper(EdgePlugin, BaseSweeper):
    """Generic sweeper; a family binds it to its facility client with ``binding_class``."""

    def __init__(self, **kwargs: Any) -> None:
        BaseSweeper.__init__(self, **kwargs)
        self._edge_setup(kwargs)

    def kill_workers(self, workspec_list: list[WorkSpec]) -> list[Outcome]:
        log = self.make_logger(LOG, method_name="kill_workers")
        results: dict[int, Outcome] = {}
        try:
            self._kill(self.edge_client(), workspec_list, results)
        except Exception as exc:
            log.error(f"unexpected {type(exc).__name__}: {exc}")
        return [
            results.get(i, (False, "could not kill; will retry")) for i in range(len(workspec_list))
        ]

    def kill_worker(self, workspec: WorkSpec) -> Outcome:
        """Deprecated single-worker form, kept for old Harvester versions."""
        return self.kill_workers([workspec])[0]

    def _kill(
        self, client: FacilityClient, workers: list[WorkSpec], results: dict[int, Outcome]
    ) -> None:
        job_of = self._job_ids(client, workers, results)
        if not job_of:
            return
        ids = sorted(set(job_of.values()))
        errors: dict[str, str | None] = {}
        for part in chunks(ids, client.max_query_ids):
            errors.update(client.cancel(list(part)))
        ended = self._confirm(client, [j for j in ids if not errors.get(j)])
        for i, job_id in job_of.items():
            if job_id in ended:
                results[i] = (True, f"batch job {job_id} {ended[job_id]}")
            elif errors.get(job_id):
                results[i] = (False, f"batch job {job_id}: {errors[job_id]}")
            else:
                results[i] = (False, f"batch job {job_id} not confirmed ended yet; will retry")

    def _job_ids(
        self, client: FacilityClient, workers: list[WorkSpec], results: dict[int, Outcome]
    ) -> dict[int, str]:
        """Map worker index -> its job id, resolving tasks and tags in bulk first."""
        job_of: dict[int, str] = {}
        unresolved: list[int] = []
        for i, ws in enumerate(workers):
            if ws.batchID:
                job_of[i] = str(ws.batchID)
            else:
                unresolved.append(i)
        if not unresolved:
            return job_of
        handles = [attr(workers[i], TASK) for i in unresolved if attr(workers[i], TASK)]
        try:
            resolved = client.resolve(handles) if handles else {}
            found = client.find_by_tags(
                [attr(workers[i], TAG) for i in unresolved if attr(workers[i], TAG)]
            )
        except EdgeAPIError as exc:
            for i in unresolved:
                results[i] = (False, f"could not resolve the job to kill: {exc}")
            return job_of
        for i in unresolved:
            ws = workers[i]
            res = resolved.get(attr(ws, TASK)) if attr(ws, TASK) else None
            jobs = found.get(attr(ws, TAG), []) if attr(ws, TAG) else []
            if res is not None and res.state == Resolution.DONE and res.job_id:
                job_of[i] = res.job_id
            elif jobs:
                job_of[i] = oldest_first(jobs)[0].job_id
            elif res is not None and res.state == Resolution.PENDING:
                results[i] = (False, "submit task still pending; will kill once it has a job")
            else:
                results[i] = (True, "no batch job exists for this worker")
        return job_of

    def _confirm(self, client: FacilityClient, ids: list[str]) -> dict[str, str]:
        """Poll until Slurm shows the jobs final; returns id -> final state text."""
        ended: dict[str, str] = {}
        deadline = time.monotonic() + self.edge_options.killConfirmSeconds
        delay = 0.5
        while True:
            waiting = [j for j in ids if j not in ended]
            if not waiting:
                return ended
            try:
                for part in chunks(waiting, client.max_query_ids):
                    live = client.query(list(part), final=False)
                    gone = [j for j in part if j not in live or live[j].state.is_final]
                    for job_id, record in client.query(gone, final=True).items() if gone else []:
                        if record.state.is_final:
                            ended[job_id] = f"ended: {record.native_status}"
            except EdgeAPIError as exc:
                LOG.info(f"kill confirmation query failed: {exc}")
            if time.monotonic() + delay > deadline:
                return ended
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def sweep_worker(self, workspec: WorkSpec) -> Outcome:
        """Remove the worker's local access point; True only once it is really gone."""
        if not workspec.accessPoint:
            return True, "no access point"
        path = os.path.abspath(workspec.get_access_point())
        if path.count(os.sep) < 2:
            return False, f"refusing to delete {path}: too close to the filesystem root"
        if os.path.lexists(path):
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            except OSError as exc:
                return False, f"could not delete {path}: {exc.strerror}"
        if os.path.lexists(path):
            return False, f"{path} still exists"
        return True, f"deleted {path}"
