"""The generic monitor: bulk queries, squeue/sacct cross-check, never "failed" by accident.

Per cycle and chunk of ``chunkSize`` workers: one live-queue query; the jobs missing from it
(or shown there in a final state) get one accounting query; asynchronous submits are resolved
with one request; unknown submits are looked up by tag with one request.  Rules:

- a job absent from both queue and accounting is not final: it keeps its status until
  ``missingGraceSeconds`` pass (accounting lags, caches lie), then fails as lost;
- a request that fails means "could not check" (``None``) for the workers it covered, never
  "failed"; one chunk's outage does not touch the other chunks;
- a final state comes with exit code, Slurm's reason, and, where the facility gives file
  access, the pilots' own summary ("4 pilots, 1 failed, first failure: ...").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..edge import tags
from ..edge.allocations import BOOK
from ..edge.health import GATE
from ..edge.jobs import JobRecord, Resolution, oldest_first
from ..edge.pilot_summary import EXIT_CVMFS, SUMMARY_FILE, PilotSummary, parse_summary
from ..edge.states import ErrorCode, Verdict, is_submit_limit
from ..errors import EdgeAPIError
from ..facilities.base import FacilityClient
from ..harvester import PluginBase, WorkSpec
from .base import (
    LOG,
    LOOKUP_SINCE,
    MISSING_SINCE,
    PILOTS,
    SUBMITTED_AT,
    TAG,
    TASK,
    WORK_DIR,
    EdgePlugin,
    attr,
    now,
)  # fmt: skip

Answer = tuple[str | None, str]


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def could_not(idx: list[int], answers: dict[int, Answer], what: str) -> None:
    """Mark these workers "could not check" (``None``): an API failure never fails a worker."""
    for i in idx:
        answers[i] = (None, f"could not {what}")


def summary_error_code(summary: PilotSummary) -> int | None:
    """Harvester errorCode for what the pilots' summary reports (None: all pilots fine)."""
    if summary.cvmfs_error:
        return int(ErrorCode.CVMFS)
    if summary.n_failed or summary.n_missing:
        return int(ErrorCode.PILOTS_FAILED)
    return None


class EdgeMonitor(EdgePlugin, PluginBase):
    """Generic monitor; a family binds it to its facility client with ``binding_class``."""

    def __init__(self, **kwargs: Any) -> None:
        PluginBase.__init__(self, **kwargs)
        self._edge_setup(kwargs)

    def check_workers(self, workspec_list: list[WorkSpec]) -> tuple[bool, list[Answer]]:
        log = self.make_logger(LOG, method_name="check_workers")
        answers: dict[int, Answer] = {}
        try:
            client = self.edge_client()
            health = GATE.check(client, self.edge_options.healthCacheSeconds)
            if not health.available:
                message = f"{client.service}: machine {health.state}: {health.message}".strip()
                return True, [(None, message)] * len(workspec_list)
            self._check(client, workspec_list, answers, log)
        except Exception as exc:  # never abort the queue's update
            log.error(f"unexpected {type(exc).__name__}: {exc}")
        default = (None, "could not check")
        return True, [answers.get(i, default) for i in range(len(workspec_list))]

    # the cycle -----------------------------------------------------------------------------
    def _check(
        self, client: FacilityClient, workers: list[WorkSpec], answers: dict[int, Answer], log: Any
    ) -> None:
        size = min(self.edge_options.chunkSize, client.max_query_ids)
        pending = [i for i, ws in enumerate(workers) if not ws.batchID and attr(ws, TASK)]
        if pending:
            self._resolve_tasks(client, workers, pending, answers)
        lookup = [
            i for i, ws in enumerate(workers)
            if not ws.batchID and i not in answers and attr(ws, TAG)
        ]  # fmt: skip
        for part in chunks(lookup, size):
            self._lookup(client, workers, list(part), answers)
        tracked = [i for i, ws in enumerate(workers) if ws.batchID and i not in answers]
        for part in chunks(tracked, size):
            self._poll(client, workers, list(part), answers, log)
        for i, ws in enumerate(workers):
            if i not in answers and not ws.batchID and not attr(ws, TAG):
                answers[i] = (WorkSpec.ST_failed, "worker has neither batch job id nor tag")

    def _resolve_tasks(
        self,
        client: FacilityClient,
        workers: list[WorkSpec],
        idx: list[int],
        answers: dict[int, Answer],
    ) -> None:
        try:
            resolved = client.resolve([attr(workers[i], TASK) for i in idx])
        except EdgeAPIError as exc:
            return could_not(idx, answers, f"read submit tasks: {exc}")
        for i in idx:
            ws = workers[i]
            res = resolved.get(attr(ws, TASK))
            if res is None:
                continue  # unknown to the service (expired?): look the tag up below
            if res.state == Resolution.DONE and res.job_id:
                ws.batchID = res.job_id
                ws.set_work_attributes({TASK: None})
            elif res.state == Resolution.ERROR and is_submit_limit(res.error):
                # a QOS submit limit is "not now", not a failure: Harvester makes a new worker
                self._observe(ws, live=False)
                answers[i] = (WorkSpec.ST_missed, f"submit limit reached: {res.error}")
            elif res.state == Resolution.ERROR:
                self._final(
                    ws,
                    Verdict(
                        WorkSpec.ST_failed, f"submit failed: {res.error}", ErrorCode.SUBMIT_REJECTED
                    ),
                    answers,
                    i,
                )
            elif (
                now() - float(attr(ws, SUBMITTED_AT) or now())
                < self.edge_options.taskTimeoutSeconds
            ):
                answers[i] = (WorkSpec.ST_submitted, f"submit task {attr(ws, TASK)} pending")

    def _lookup(
        self,
        client: FacilityClient,
        workers: list[WorkSpec],
        idx: list[int],
        answers: dict[int, Answer],
    ) -> None:
        try:
            found = client.find_by_tags([attr(workers[i], TAG) for i in idx])
        except EdgeAPIError as exc:
            return could_not(idx, answers, f"look jobs up by tag: {exc}")
        duplicates: list[str] = []
        for i in idx:
            ws = workers[i]
            jobs = oldest_first(found.get(attr(ws, TAG), []))
            if jobs:
                ws.batchID = jobs[0].job_id
                ws.set_work_attributes({TASK: None, LOOKUP_SINCE: None})
                duplicates += [j.job_id for j in jobs[1:] if not j.state.is_final]
                continue  # polled with the tracked workers
            since = float(attr(ws, LOOKUP_SINCE) or attr(ws, SUBMITTED_AT) or now())
            if not attr(ws, LOOKUP_SINCE):
                ws.set_work_attributes({LOOKUP_SINCE: since})
            if now() - since > self.edge_options.lookupGraceSeconds:
                grace = self.edge_options.lookupGraceSeconds
                diag = f"batch job never appeared (tag {attr(ws, TAG)}) within {grace:.0f}s"
                self._final(
                    ws, Verdict(WorkSpec.ST_failed, diag, ErrorCode.SUBMIT_LOST), answers, i
                )
            else:
                answers[i] = (WorkSpec.ST_submitted, "waiting for the batch job to appear")
        if duplicates:
            LOG.warning(f"cancelling duplicate jobs {duplicates}")
            try:
                client.cancel(duplicates)
            except EdgeAPIError as exc:
                LOG.warning(f"could not cancel duplicates {duplicates}: {exc}")

    def _poll(
        self,
        client: FacilityClient,
        workers: list[WorkSpec],
        idx: list[int],
        answers: dict[int, Answer],
        log: Any,
    ) -> None:
        ids = [str(workers[i].batchID) for i in idx]
        try:
            live = client.query(ids, final=False)
            to_account = [j for j in ids if j not in live or live[j].state.is_final]
            final = client.query(to_account, final=True) if to_account else {}
        except EdgeAPIError as exc:
            return could_not(idx, answers, f"check: {exc}")
        for i in idx:
            ws = workers[i]
            job_id = str(ws.batchID)
            record = final.get(job_id) or live.get(job_id)
            if record is None or (record.state.is_final and record.source != "accounting"):
                self._missing(ws, i, answers, record)
                continue
            if attr(ws, MISSING_SINCE):
                ws.set_work_attributes({MISSING_SINCE: None})
            self._apply(client, ws, record, i, answers)

    # outcomes -----------------------------------------------------------------------------
    def _apply(
        self,
        client: FacilityClient,
        ws: WorkSpec,
        record: JobRecord,
        i: int,
        answers: dict[int, Answer],
    ) -> None:
        verdict = record.verdict()
        ws.nativeStatus = record.native_status
        if record.exit_code is not None:
            ws.nativeExitCode = record.exit_code
        if record.nodes and record.source == "queue" and record.nodes not in ("None", "(null)"):
            ws.nodeID = record.nodes[:100]
        self._observe(ws, live=not verdict.is_final)
        if not verdict.is_final:
            answers[i] = (verdict.status, verdict.diagnosis)
            return
        if record.exit_code == EXIT_CVMFS and verdict.status == WorkSpec.ST_failed:
            verdict = Verdict(
                verdict.status,
                f"CVMFS check failed on a node (exit {EXIT_CVMFS}); {verdict.diagnosis}",
                ErrorCode.CVMFS,
            )
        verdict = self._with_pilot_summary(client, ws, verdict)
        self._final(ws, verdict, answers, i)

    def _missing(
        self, ws: WorkSpec, i: int, answers: dict[int, Answer], record: JobRecord | None
    ) -> None:
        since = attr(ws, MISSING_SINCE)
        if not since:
            ws.set_work_attributes({MISSING_SINCE: now()})
            since = now()
        grace = self.edge_options.missingGraceSeconds
        if now() - float(since) > grace:
            diag = (
                f"batch job {ws.batchID} vanished: in neither queue nor accounting for {grace:.0f}s"
            )
            self._final(ws, Verdict(WorkSpec.ST_failed, diag, ErrorCode.JOB_LOST), answers, i)
            return
        seen = f" (queue says {record.native_status})" if record else ""
        answers[i] = (
            ws.status or WorkSpec.ST_submitted,
            f"batch job {ws.batchID} not in accounting yet{seen}",
        )

    def _final(self, ws: WorkSpec, verdict: Verdict, answers: dict[int, Answer], i: int) -> None:
        if verdict.error_code is not None:
            ws.set_supplemental_error(int(verdict.error_code), verdict.diagnosis)
        self._observe(ws, live=False)
        answers[i] = (verdict.status, verdict.diagnosis)

    def _observe(self, ws: WorkSpec, live: bool) -> None:
        tag = attr(ws, TAG)
        prefix = tags.prefix_of(tag) if tag else None
        if prefix:
            BOOK.observe(prefix, tag, live)

    def _with_pilot_summary(
        self, client: FacilityClient, ws: WorkSpec, verdict: Verdict
    ) -> Verdict:
        """Fold the pilots' own summary into a final verdict (read once, kept in attributes:
        Harvester checks a final worker twice before applying the status)."""
        work_dir = attr(ws, WORK_DIR)
        if not (client.supports_files and self.edge_options.readPilotSummary and work_dir):
            return verdict
        pilots = attr(ws, PILOTS)
        if not isinstance(pilots, dict):
            try:
                text = client.read_text(f"{work_dir.rstrip('/')}/{SUMMARY_FILE}")
                if not text:
                    return verdict
                summary = parse_summary(text)
            except EdgeAPIError as exc:
                LOG.info(f"workerID={ws.workerID}: no pilot summary ({exc})")
                return verdict
            pilots = {
                "n": summary.n_pilots,
                "failed": summary.n_failed,
                "diag": summary.diagnosis(),
                "code": summary_error_code(summary),
            }
            ws.set_work_attributes({PILOTS: pilots})
        code, diag = pilots.get("code"), str(pilots.get("diag") or "")
        if code is None and verdict.status != WorkSpec.ST_failed:
            return Verdict(
                verdict.status,
                "; ".join(x for x in (verdict.diagnosis, diag) if x),
                verdict.error_code,
            )
        diagnosis = "; ".join(x for x in (diag, verdict.diagnosis) if x)
        return Verdict(verdict.status, diagnosis, code if code is not None else verdict.error_code)
