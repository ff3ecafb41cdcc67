"""The generic submitter: render, gate, cap, submit in parallel, never lose or duplicate.

``submit_workers`` never sleeps waiting for the facility: it posts the jobs (bounded
concurrency), records each job id or asynchronous handle in the worker's work attributes and
answers.  Handles are resolved by the monitor in bulk on later cycles.  A failed submit is
classified once, here:

- the facility refused the job (bad script, sbatch error): ``False``;
- machine down, credentials refused, transient errors after retries: ``None`` (retry later);
- an ambiguous failure (the request may have created the job): the job is looked up by its
  tag and adopted; if it cannot be seen yet the worker is ``True`` with a pending lookup,
  which the monitor finishes.  Nothing is ever resubmitted without a lookup first.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..edge import tags
from ..edge.allocations import BOOK
from ..edge.batch import BatchConfig, WorkerInfo, render_batch_script
from ..edge.health import GATE
from ..edge.jobs import SubmitReceipt, oldest_first
from ..edge.render import CONTROL_CHARS
from ..edge.states import is_submit_limit
from ..errors import EdgeAPIError, EdgeAuthError, EdgeConfigError, EdgeNetworkError
from ..facilities.base import FacilityClient, SubmitRequest
from ..harvester import PluginBase, WorkSpec, harvester_id
from .base import LOG, LOOKUP_SINCE, SUBMITTED_AT, TAG, TASK, WORK_DIR, EdgePlugin, now

Outcome = tuple[bool | None, str]

_JOB_NAME = re.compile(r"^#SBATCH\s+(?:--job-name[= ]|-J\s*)", re.MULTILINE)


def ensure_tag(script: str, tag: str) -> str:
    """Make sure the script's job name is the tag, even for an operator's own template."""
    if _JOB_NAME.search(script):
        script = re.sub(
            r"^#SBATCH\s+(?:--job-name[= ]|-J\s*)\S+.*$",
            f"#SBATCH --job-name={tag}",
            script,
            flags=re.MULTILINE,
        )
        return script
    lines = script.split("\n", 1)
    if lines[0].startswith("#!"):
        return f"{lines[0]}\n#SBATCH --job-name={tag}\n{lines[1] if len(lines) > 1 else ''}"
    return f"#!/bin/bash\n#SBATCH --job-name={tag}\n{script}"


_WORKER_TEXT_FIELDS = ("computingSite", "jobType", "resourceType", "pilotType", "accessPoint")
_NUMERIC_FIELDS = ("nCore", "minRamCount", "maxDiskCount", "maxWalltime")


def check_worker_fields(ws: WorkSpec) -> None:
    """Refuse worker fields that cannot go into a batch script, naming the field."""
    for name in _WORKER_TEXT_FIELDS:
        value = getattr(ws, name, None)
        if value is not None and CONTROL_CHARS.search(str(value)):
            raise EdgeConfigError(f"worker field '{name}' contains a control character")
    for name in _NUMERIC_FIELDS:
        value = getattr(ws, name, None)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise EdgeConfigError(
                f"worker field '{name}' must be a non-negative integer, got {value!r}"
            )


class EdgeSubmitter(EdgePlugin, PluginBase):
    """Generic submitter; a family binds it to its facility client with ``binding_class``."""

    def __init__(self, **kwargs: Any) -> None:
        PluginBase.__init__(self, **kwargs)
        self._edge_setup(kwargs)
        self._batch = BatchConfig.from_config(kwargs)

    # Harvester entry point ----------------------------------------------------------------
    def submit_workers(self, workspec_list: list[WorkSpec]) -> list[Outcome]:
        log = self.make_logger(LOG, method_name="submit_workers")
        results: list[Outcome | None] = [None] * len(workspec_list)
        try:
            self._submit_all(workspec_list, results, log)
        except Exception as exc:  # never strand the batch
            log.error(f"unexpected {type(exc).__name__}: {exc}")
            message = f"internal error ({type(exc).__name__}); will retry"
            results = [r if r is not None else (None, message) for r in results]
        return [r if r is not None else (None, "not submitted") for r in results]

    def _submit_all(self, workers: list[WorkSpec], results: list[Outcome | None], log: Any) -> None:
        opts = self.edge_options
        client = self.edge_client()
        health = GATE.check(client, opts.healthCacheSeconds)
        if not health.available:
            message = (
                f"{client.service}: machine {health.state}: {health.message}; will retry".strip()
            )
            log.info(message)
            results[:] = [(None, message)] * len(workers)
            return
        todo: list[tuple[int, WorkSpec, SubmitRequest]] = []
        for i, ws in enumerate(workers):
            try:
                todo.append((i, ws, self._prepare(ws)))
            except EdgeConfigError as exc:
                results[i] = (False, f"cannot build the batch job: {exc}")
        todo = self._apply_allocation_cap(client, todo, results)
        if not todo:
            return
        with ThreadPoolExecutor(max_workers=min(opts.submitConcurrency, len(todo))) as pool:
            outcomes = pool.map(lambda item: self._submit_one(client, item[1], item[2]), todo)
            for (i, ws, _), outcome in zip(todo, outcomes, strict=True):
                results[i] = outcome
                tmp = self.make_logger(LOG, token=f"workerID={ws.workerID}", method_name="submit")
                tmp.info(f"{outcome[0]}: {outcome[1]}")

    # steps --------------------------------------------------------------------------------
    def _prepare(self, ws: WorkSpec) -> SubmitRequest:
        check_worker_fields(ws)
        hid = harvester_id()
        queue = ws.computingSite or self.edge_options.queueName
        tag = tags.job_tag(hid, queue, ws.workerID)
        work_dir = self._batch.worker_dir(hid, ws.workerID, queue)
        worker = WorkerInfo.from_workspec(ws, harvester_id=hid, job_name=tag, work_dir=work_dir)
        script = ensure_tag(render_batch_script(self._batch, worker), tag)
        ws.set_work_attributes({TAG: tag, WORK_DIR: work_dir})
        return SubmitRequest(script=script, tag=tag, work_dir=work_dir)

    def _apply_allocation_cap(
        self,
        client: FacilityClient,
        todo: list[tuple[int, WorkSpec, SubmitRequest]],
        results: list[Outcome | None],
    ) -> list[tuple[int, WorkSpec, SubmitRequest]]:
        cap = self.edge_options.maxConcurrentAllocations
        if cap <= 0 or not todo:
            return todo
        prefix = tags.prefix_of(todo[0][2].tag) or ""
        with _CAP_LOCK:  # submitter threads of one queue take slots one after another
            live = BOOK.count(prefix)
            if live is None:
                try:
                    BOOK.seed(prefix, client.live_tags(prefix))
                except (EdgeAPIError, NotImplementedError):
                    BOOK.seed(prefix, [])
                live = BOOK.count(prefix) or 0
            slots = max(0, cap - live)
            for i, _, _ in todo[slots:]:
                results[i] = (
                    None,
                    f"maxConcurrentAllocations={cap} reached ({live} live); will submit later",
                )
            for _, _, request in todo[:slots]:
                BOOK.submitted(prefix, request.tag)
        return todo[:slots]

    def _submit_one(self, client: FacilityClient, ws: WorkSpec, request: SubmitRequest) -> Outcome:
        opts = self.edge_options
        ws.set_work_attributes({SUBMITTED_AT: now()})
        attempt = 0
        while True:
            attempt += 1
            try:
                receipt = client.submit(request)
            except EdgeAuthError as exc:
                return None, f"credentials refused: {exc}; will retry after renewal"
            except EdgeAPIError as exc:
                if not exc.transient and is_submit_limit(str(exc)):
                    return None, f"submit limit reached, will submit later: {exc}"
                if not exc.transient:
                    return False, f"submit refused by {client.service}: {exc}"
                outcome = self._after_ambiguous(client, ws, request, exc)
                if outcome is not None:
                    return outcome
                if attempt >= opts.retryAttempts:
                    return None, f"submit failed {attempt} times, last: {exc}; will retry"
                time.sleep(min(opts.retryBackoff * 2 ** (attempt - 1), 10.0))
                continue
            return True, self._record(ws, receipt)

    def _after_ambiguous(
        self, client: FacilityClient, ws: WorkSpec, request: SubmitRequest, exc: EdgeAPIError
    ) -> Outcome | None:
        """Look the tag up after a failed submit.  None means: safe to try again."""
        maybe_sent = isinstance(exc, EdgeNetworkError) and exc.maybe_sent
        try:
            found = client.find_by_tags([request.tag]).get(request.tag, [])
        except EdgeAPIError as lookup_error:
            if maybe_sent:
                ws.set_work_attributes({LOOKUP_SINCE: now()})
                return True, f"submit outcome unknown ({exc}); job will be looked up by tag"
            return None, f"submit failed ({exc}) and lookup failed ({lookup_error}); will retry"
        if found:
            job = oldest_first(found)[0]
            return True, self._record(ws, SubmitReceipt(job_id=job.job_id)) + " (adopted by tag)"
        if maybe_sent:
            # the request may still create the job (or a task that will): never resubmit
            ws.set_work_attributes({LOOKUP_SINCE: now()})
            return True, f"submit outcome unknown ({exc}); job will be looked up by tag"
        return None

    @staticmethod
    def _record(ws: WorkSpec, receipt: SubmitReceipt) -> str:
        if receipt.job_id:
            ws.batchID = receipt.job_id
            ws.set_work_attributes({TASK: None, LOOKUP_SINCE: None})
            return f"submitted as batch job {receipt.job_id}"
        ws.set_work_attributes({TASK: receipt.handle, LOOKUP_SINCE: None})
        return f"submitted, task {receipt.handle} pending"


_CAP_LOCK = threading.Lock()
