"""The generic sweeper: cancel in bulk and confirm with Slurm; clean up only what is ours.

``kill_workers`` finds every job of each worker (its job id, plus, for workers whose submit
is unresolved or was ambiguous, every job under its tag: duplicates die too), asks the
facility to cancel them, then polls the queue and accounting (one request each per chunk and
round) until Slurm shows each job final or ``killConfirmSeconds`` pass.  A worker is
reported killed only when Slurm really ended its jobs; a job that had already ended counts
(accounting confirms it), whatever scancel said.  A worker whose job may still appear (task
pending, lookup within its grace) is answered False until the job is found and cancelled or
the grace has run out; its tag is then watched, so a late job is cancelled by the monitor.

``sweep_worker`` deletes only a real directory strictly inside the configured access-point
base (``accessPoint``, the messenger's template) whose path names the worker, never through
a symlink; anything else is answered False with the reason.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from typing import Any

from ..edge import lifecycle as lc
from ..edge.budget import CallBudget
from ..edge.jobs import JobRecord, Resolution
from ..edge.lifecycle import AMBIGUOUS_AT, LOOKUP_SINCE, SUBMITTED_AT, TAG, TASK, attr
from ..edge.watch import WATCH
from ..errors import EdgeAPIError, EdgeNetworkError
from ..facilities.base import CancelOutcome, Deferred, FacilityClient, chunks
from ..harvester import BaseSweeper, WorkSpec
from .base import LOG, EdgePlugin

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
        budget = CallBudget(self.edge_options.callDeadline)
        jobs_of = self._jobs_to_kill(client, workers, results, budget)
        ids = sorted({j for jobs in jobs_of.values() for j in jobs})
        if not ids:
            return
        outcomes: dict[str, str] = {}  # id -> why it may not be cancelled ("" = accepted)
        pending: dict[str, str] = {}  # id -> probe still running (deferred services)
        for part in chunks(ids, client.capabilities.max_ids_per_query):
            spent = budget.spent()
            if spent:
                outcomes.update({j: f"not asked: {spent}" for j in part})
                continue
            try:
                answer = client.cancel(list(part))
            except EdgeNetworkError as exc:
                budget.note(exc)
                outcomes.update({j: str(exc) for j in part})
                continue
            except EdgeAPIError as exc:
                outcomes.update({j: str(exc) for j in part})
                continue
            if isinstance(answer, Deferred):
                pending.update({j: answer.probe for j in part})
                continue
            for job_id, outcome in answer.items():
                outcomes[job_id] = "" if outcome.kind == CancelOutcome.ACCEPTED else outcome.text
        # confirm every id: a job that had already ended is killed, accounting knows (a
        # task-based service starts its status probe now too, read with the cancel's answer)
        ended, unseen = self._confirm(client, ids, budget)
        for job_id in unseen:  # refused as unknown and neither queue nor accounting has it
            if "invalid job id" in outcomes.get(job_id, "").lower():
                ended[job_id] = "unknown to Slurm (never ran or purged)"
        for i, jobs in jobs_of.items():
            if i in results:  # its jobs are not all known yet (a lookup probe is pending)
                continue
            open_jobs = [j for j in jobs if j not in ended]
            if not open_jobs:
                states = ", ".join(f"{j} {ended[j]}" for j in jobs)
                results[i] = (True, f"batch job {states}")
                continue
            why = "; ".join(
                f"{j}: cancel probe {pending[j]} pending" if j in pending else f"{j}: {outcomes[j]}"
                for j in open_jobs
                if j in pending or outcomes.get(j)
            )
            results[i] = (
                False,
                f"batch job {', '.join(open_jobs)} not confirmed ended yet"
                + (f" ({why})" if why else "")
                + "; will retry",
            )

    def _jobs_to_kill(
        self,
        client: FacilityClient,
        workers: list[WorkSpec],
        results: dict[int, Outcome],
        budget: CallBudget,
    ) -> dict[int, list[str]]:
        """Worker index -> the ids of all its jobs; tasks and tags are resolved in bulk."""
        jobs_of: dict[int, list[str]] = {}
        by_tag: list[int] = []
        for i, ws in enumerate(workers):
            if ws.batchID:
                jobs_of[i] = [str(ws.batchID)]
            if attr(ws, TAG) and (not ws.batchID or attr(ws, AMBIGUOUS_AT)):
                by_tag.append(i)
            elif not ws.batchID:
                results[i] = (True, "never submitted: no batch job and no tag")
        if not by_tag:
            return jobs_of
        handles = [attr(workers[i], TASK) for i in by_tag if attr(workers[i], TASK)]
        try:
            resolved = client.resolve(handles) if handles else {}
            found: dict[str, list[JobRecord]] = {}
            for part in chunks(by_tag, client.capabilities.max_ids_per_query):
                answer = client.find([attr(workers[i], TAG) for i in part])
                if isinstance(answer, Deferred):
                    # every job under the tag must be known before a kill is reported done
                    for i in part:
                        results[i] = (False, f"lookup probe {answer.probe} pending")
                    continue
                found.update(answer)
        except EdgeAPIError as exc:
            if isinstance(exc, EdgeNetworkError):
                budget.note(exc)
            for i in by_tag:
                if i not in jobs_of:
                    results[i] = (False, f"could not find the job to kill: {exc}")
            return jobs_of
        grace = self.edge_options.lookupGraceSeconds
        for i in by_tag:
            if i in results:
                continue
            ws = workers[i]
            tag = attr(ws, TAG)
            # only jobs named with the worker's tag: a task's job id is never trusted alone
            tagged = [j.job_id for j in found.get(tag, []) if j.name == tag]
            if tagged or ws.batchID:
                jobs_of[i] = sorted(set(jobs_of.get(i, []) + tagged))
                continue
            res = resolved.get(attr(ws, TASK)) if attr(ws, TASK) else None
            since = float(attr(ws, LOOKUP_SINCE) or attr(ws, SUBMITTED_AT) or lc.now())
            if res is not None and res.state == Resolution.ERROR:
                results[i] = (True, f"submit failed, no batch job: {res.error[:200]}")
            elif res is not None and res.state == Resolution.PENDING:
                results[i] = (False, "submit task still pending; will kill once it has a job")
            elif lc.now() - since <= grace:
                results[i] = (False, f"no job under tag {tag} yet; will look again")
            else:
                WATCH.add(client.cache_key, tag)
                results[i] = (True, f"no batch job appeared under tag {tag} within {grace:.0f}s")
        return jobs_of

    def _confirm(
        self, client: FacilityClient, ids: list[str], budget: CallBudget
    ) -> tuple[dict[str, str], set[str]]:
        """Poll until Slurm shows the jobs final.  Returns id -> final state text, and the ids
        that neither queue nor accounting showed in the last round."""
        ended: dict[str, str] = {}
        unseen: set[str] = set()
        deadline = time.monotonic() + self.edge_options.killConfirmSeconds
        delay = 0.5
        while True:
            waiting = [j for j in ids if j not in ended]
            if not waiting or budget.spent():
                return ended, unseen
            try:
                unseen = set()
                for part in chunks(waiting, client.capabilities.max_ids_per_query):
                    records = client.poll(list(part))
                    if isinstance(records, Deferred):
                        return ended, set()  # answered on a later call: never wait for it
                    unseen |= {j for j in part if j not in records}
                    for job_id, record in records.items():
                        if record.state.is_final and record.confirmed_final:
                            ended[job_id] = f"ended: {record.native_status}"
            except EdgeNetworkError as exc:
                budget.note(exc)
                LOG.info(f"kill confirmation query failed: {exc}")
            except EdgeAPIError as exc:
                LOG.info(f"kill confirmation query failed: {exc}")
            if all(j in ended for j in ids) or time.monotonic() + delay > deadline:
                return ended, unseen
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def sweep_worker(self, workspec: WorkSpec) -> Outcome:
        """Remove the worker's local access point; True only once it is really gone."""
        if not workspec.accessPoint:
            return True, "no access point"
        try:
            path = sweepable_dir(self.edge_options.accessPoint, workspec)
        except SweepRefused as exc:
            return False, str(exc)
        if path is None:
            return True, "access point already gone"
        try:
            shutil.rmtree(path)
        except OSError as exc:
            return False, f"could not delete {path}: {exc.strerror}"
        if os.path.lexists(path):
            return False, f"{path} still exists"
        return True, f"deleted {path}"


class SweepRefused(Exception):
    """The access point is not a directory the sweeper may delete (the message says why)."""


def sweepable_dir(template: str, ws: WorkSpec) -> str | None:
    """The worker's access point if it may be deleted, None if it does not exist.

    Allowed only: a real directory (no symlink anywhere below the base), strictly inside the
    fixed part of the access-point template (everything before its first ``${``), whose
    relative path names the worker (its id is one of the path's components)."""
    if not template or "${" not in template:
        raise SweepRefused(
            "sweeper option 'accessPoint' (the messenger's template with ${workerID}) is "
            "needed to know which directory may be deleted"
        )
    base = os.path.realpath(template.split("${", 1)[0].rstrip("/") or "/")
    if base.count(os.sep) < 2:
        raise SweepRefused(f"refusing to delete under {base}: too close to the filesystem root")
    path = os.path.normpath(os.path.abspath(ws.get_access_point()))
    rel = os.path.relpath(path, base)
    if rel == "." or rel.startswith(".."):
        raise SweepRefused(f"refusing to delete {path}: not strictly inside {base}")
    parts = rel.split(os.sep)
    if str(ws.workerID) not in parts:
        raise SweepRefused(
            f"refusing to delete {path}: the path does not name worker {ws.workerID}"
        )
    current = base
    for part in parts:
        current = os.path.join(current, part)
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(mode):
            raise SweepRefused(f"refusing to delete {path}: {current} is a symlink")
    if not stat.S_ISDIR(mode):
        raise SweepRefused(f"refusing to delete {path}: not a directory")
    return current
