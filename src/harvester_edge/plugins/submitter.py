"""The generic submitter: render, cap, submit in parallel, never lose or duplicate.

``submit_workers`` never sleeps waiting for the facility: it posts the jobs (bounded
concurrency), records each job id or asynchronous handle in the worker's work attributes and
answers.  Handles are resolved by the monitor in bulk on later cycles.

What Harvester does with each answer (docs/operations.md): ``True`` -> submitted; anything
falsy (``False`` or ``None``) -> the worker is *missed* (ERROR line, pilot error SETUPFAILURE);
``None`` only lets push-mode jobs be retried.  So the facility's "not now" (outage, cap, submit
limit, expired credential) belongs in the throttler (``plugins/throttler.py``), which stops
Harvester from making workers; the guards here only answer for workers already made.  Rules:

- the facility refused the job (bad script, sbatch error): ``False``, its allocation slot
  released at once;
- credentials refused, submit limit, a request surely never sent (connection refused, 429)
  after the retries: ``None``, slot released;
- an ambiguous failure (read timeout, dropped connection, any 5xx but 429): the request may
  have created the job, so it is never sent again; the tag is looked up once, the job adopted
  if it shows, else the worker is ``True`` and the monitor adopts whatever appears under the
  tag (duplicates are cancelled).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..edge import lifecycle as lc
from ..edge import tags
from ..edge.allocations import BOOK, live_counts
from ..edge.batch import BatchConfig, WorkerInfo
from ..edge.budget import CallBudget
from ..edge.health import GATE
from ..edge.jobs import SubmitReceipt, oldest_first
from ..edge.limits import LIMITS
from ..edge.render import CONTROL_CHARS
from ..edge.spec import JobSpec, build_job_spec
from ..edge.states import is_submit_limit
from ..errors import EdgeAPIError, EdgeAuthError, EdgeConfigError, EdgeNetworkError
from ..facilities.base import Deferred, FacilityClient
from ..harvester import PluginBase, WorkSpec, harvester_id
from .base import LOG, EdgePlugin

Outcome = tuple[bool | None, str]

_WORKER_TEXT_FIELDS = ("computingSite", "jobType", "resourceType", "pilotType", "accessPoint")


def check_worker_fields(ws: WorkSpec) -> None:
    """Refuse text fields that cannot go into a batch script, naming the field (numbers are
    checked, and floats rounded up, by ``WorkerInfo.from_workspec``)."""
    for name in _WORKER_TEXT_FIELDS:
        value = getattr(ws, name, None)
        if value is not None and CONTROL_CHARS.search(str(value)):
            raise EdgeConfigError(f"worker field '{name}' contains a control character")


def maybe_sent(exc: EdgeAPIError) -> bool:
    """May this failed submit have created the job?  A read timeout or dropped connection
    after sending, and every 5xx but 429 (SFAPI runs sbatch later inside its task, a proxy's
    502/504 comes after the service took the request): yes.  Never send such a submit again."""
    if isinstance(exc, EdgeNetworkError):
        return exc.maybe_sent
    return exc.status is not None and exc.status >= 500


def submit_refusal(service: str, text: str) -> str:
    """A refused submit in the words of Harvester's 5601 pattern (worker_errors.py)."""
    code = "1" if "sbatch: error" in text else "unknown"
    return f"submission command failed (exit code = {code}) through {service}: {text}"


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
            message = f"internal error ({type(exc).__name__})"
            results = [r if r is not None else (None, message) for r in results]
        return [r if r is not None else (None, "not submitted") for r in results]

    def _submit_all(self, workers: list[WorkSpec], results: list[Outcome | None], log: Any) -> None:
        opts = self.edge_options
        client = self.edge_client()
        refusal = self._gate(client)
        if refusal:
            log.info(refusal)
            results[:] = [(None, refusal)] * len(workers)
            return
        todo: list[tuple[int, WorkSpec, JobSpec]] = []
        for i, ws in enumerate(workers):
            try:
                todo.append((i, ws, self._prepare(ws)))
            except EdgeConfigError as exc:
                results[i] = (False, f"cannot build the batch job: {exc}")
        todo = self._apply_allocation_cap(client, todo, results)
        if not todo:
            return
        budget = CallBudget(opts.callDeadline)
        with ThreadPoolExecutor(max_workers=min(opts.submitConcurrency, len(todo))) as pool:
            outcomes = pool.map(
                lambda item: self._submit_one(client, item[1], item[2], budget), todo
            )
            for (i, ws, request), outcome in zip(todo, outcomes, strict=True):
                results[i] = outcome
                if not outcome[0]:
                    BOOK.released(tags.prefix_of(request.tag) or "", request.tag)
                tmp = self.make_logger(LOG, token=f"workerID={ws.workerID}", method_name="submit")
                tmp.info(f"{outcome[0]}: {outcome[1]}")

    def _gate(self, client: FacilityClient) -> str | None:
        """Why no worker can be submitted now (the throttler normally stopped them before)."""
        health = GATE.check(client, self.edge_options.healthCacheSeconds)
        if not health.available:
            return f"{client.service}: machine {health.state}: {health.message}".strip()
        problem = client.credential().problem
        if problem:
            return f"{client.service}: credential unusable: {problem}"
        return None

    # steps --------------------------------------------------------------------------------
    def _prepare(self, ws: WorkSpec) -> JobSpec:
        check_worker_fields(ws)
        hid = harvester_id()
        queue = ws.computingSite or self.edge_options.queueName
        tag = tags.job_tag(hid, queue, ws.workerID)
        work_dir = self._batch.worker_dir(hid, ws.workerID, queue)
        worker = WorkerInfo.from_workspec(ws, harvester_id=hid, job_name=tag, work_dir=work_dir)
        spec = build_job_spec(self._batch, worker)
        lc.prepared(ws, tag, work_dir)
        return spec

    def _apply_allocation_cap(
        self,
        client: FacilityClient,
        todo: list[tuple[int, WorkSpec, JobSpec]],
        results: list[Outcome | None],
    ) -> list[tuple[int, WorkSpec, JobSpec]]:
        cap = self.edge_options.maxConcurrentAllocations
        if cap <= 0 or not todo:
            return todo
        prefix = tags.prefix_of(todo[0][2].tag) or ""
        with _CAP_LOCK:  # submitter threads of one queue take slots one after another
            try:
                live, fresh = live_counts(client, prefix)
            except EdgeAPIError as exc:
                for i, _, _ in todo:
                    results[i] = (None, f"cannot count live allocations for the cap: {exc}")
                return []
            slots = max(0, cap - live - fresh)
            for i, _, _ in todo[slots:]:
                results[i] = (
                    None,
                    f"maxConcurrentAllocations={cap} reached ({live} running or queued, "
                    f"{fresh} just submitted, {min(slots, len(todo))} taken in this cycle)",
                )
            for _, _, request in todo[:slots]:
                BOOK.submitted(prefix, request.tag)
        return todo[:slots]

    def _submit_one(
        self, client: FacilityClient, ws: WorkSpec, request: JobSpec, budget: CallBudget
    ) -> Outcome:
        opts = self.edge_options
        lc.sending(ws)
        attempt = 0
        while True:
            attempt += 1
            spent = budget.spent()
            if spent:
                return None, f"not submitted: {spent}"
            try:
                receipt = client.submit(request)
            except EdgeConfigError as exc:  # the spec cannot be put in this service's format
                return False, f"cannot encode the batch job for {client.service}: {exc}"
            except EdgeAuthError as exc:
                return None, f"credentials refused: {exc}"
            except EdgeAPIError as exc:
                if maybe_sent(exc):
                    if isinstance(exc, EdgeNetworkError):
                        budget.note(exc)
                    if self._may_resend(client, attempt, budget):
                        # same key, same bytes: the service answers the job it made, if any;
                        # duplicates under the tag are still looked for (a server may have
                        # made the job and lost its key)
                        lc.ambiguous(ws)
                        time.sleep(min(opts.retryBackoff * 2 ** (attempt - 1), 10.0))
                        continue
                    return self._after_ambiguous(client, ws, request, exc, budget)
                if not exc.transient and is_submit_limit(str(exc)):
                    LIMITS.hit(tags.prefix_of(request.tag) or "", str(exc))
                    return None, f"facility submit limit reached: {exc}"
                if not exc.transient:
                    return False, submit_refusal(client.service, str(exc))
                if attempt >= opts.retryAttempts:
                    return None, f"not submitted after {attempt} attempts, last: {exc}"
                time.sleep(min(opts.retryBackoff * 2 ** (attempt - 1), 10.0))
                continue
            return True, self._record(ws, receipt)

    def _may_resend(self, client: FacilityClient, attempt: int, budget: CallBudget) -> bool:
        """Only a service that dedupes submits by key may get a maybe-sent submit again."""
        return (
            client.capabilities.idempotent_submit
            and attempt < self.edge_options.retryAttempts
            and budget.spent() is None
        )

    def _after_ambiguous(
        self,
        client: FacilityClient,
        ws: WorkSpec,
        request: JobSpec,
        exc: EdgeAPIError,
        budget: CallBudget,
    ) -> Outcome:
        """The submit may have created the job: look the tag up once (when the facility is
        still answering), never send it again; the monitor adopts what appears."""
        lc.ambiguous(ws)
        unknown = f"submit outcome unknown ({exc}); the job will be looked up by its tag"
        if budget.spent():
            return True, unknown
        try:
            answer = client.find([request.tag])
        except EdgeNetworkError as lookup_error:
            budget.note(lookup_error)
            return True, unknown
        except EdgeAPIError:
            return True, unknown
        if isinstance(answer, Deferred):
            return True, unknown
        jobs = oldest_first([j for j in answer.get(request.tag, []) if j.name == request.tag])
        if not jobs:
            return True, unknown
        extra = [j.job_id for j in jobs[1:] if not j.state.is_final]
        if extra:
            cancel_duplicates(client, request.tag, extra)
        return True, self._record(ws, SubmitReceipt(job_id=jobs[0].job_id)) + " (adopted by tag)"

    @staticmethod
    def _record(ws: WorkSpec, receipt: SubmitReceipt) -> str:
        lc.submitted(ws, receipt.job_id, receipt.handle)
        if receipt.job_id:
            return f"submitted as batch job {receipt.job_id}"
        return f"submitted, task {receipt.handle} pending"


def cancel_duplicates(client: FacilityClient, tag: str, job_ids: list[str]) -> None:
    """Cancel jobs that duplicate a worker's adopted job (same tag); logged loudly."""
    LOG.warning(f"tag {tag}: cancelling duplicate batch jobs {job_ids}")
    try:
        client.cancel(job_ids)
    except EdgeAPIError as exc:
        LOG.warning(f"tag {tag}: could not cancel duplicates {job_ids}: {exc}")


_CAP_LOCK = threading.Lock()
