"""The generic monitor: bulk queries, confirmed final states, never "failed" by accident.

Per cycle: asynchronous submits are resolved in bulk; workers without a job are looked up by
tag, one request per chunk; tracked workers are polled, one ``poll`` per chunk (the client
confirms final states from accounting or history).  Chunks run ``queryConcurrency`` at a time
under one time budget per call.  The worker's phase comes from ``edge/lifecycle.py``.  Rules:

- a job is adopted (from a task, a lookup or a poll) only when its name is the worker's tag;
  anything else is a loud error for that worker, never an adoption;
- a submit task the service still reports pending keeps the worker submitted; the lookup
  grace starts when the lookup starts; a job appearing under the tag of a worker that already
  ended is cancelled (``edge/watch.py``), and so are duplicates under one tag;
- a job absent from the service's answer is not final: it keeps its status until
  ``missingGraceSeconds`` pass (accounting lags, caches lie); then a final state never
  confirmed is used with a note, and a job seen nowhere fails as lost;
- a request that fails means "could not check" (``None``) for the workers it covered, never
  "failed"; once one request timed out, the remaining chunks answer at once;
- a service whose queries are tasks (``deferred_queries``) answers a cycle later: meanwhile
  the worker keeps its status ("probe pending"), and a probe older than
  ``probeTimeoutSeconds`` is "could not check";
- during a planned outage every worker keeps its status with "maintenance until ...", so
  Harvester's ``checkTimeout`` does not kill what waits through a maintenance window; an
  unplanned outage is "could not check";
- a final state comes with exit code, Slurm's reason, and, where the service gives file
  access, the pilots' own summaries, read in bulk ("4 pilots, 1 failed, first failure: ...").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..edge import lifecycle as lc
from ..edge import tags
from ..edge.allocations import BOOK
from ..edge.budget import CallBudget
from ..edge.health import GATE
from ..edge.jobs import JobRecord, Resolution, oldest_first
from ..edge.lifecycle import PILOTS, TAG, TASK, WORK_DIR, Phase, attr, phase_of
from ..edge.limits import LIMITS
from ..edge.pilot_summary import EXIT_CVMFS, SUMMARY_FILE, PilotSummary, parse_summary
from ..edge.states import ErrorCode, Verdict, is_submit_limit, verdict_of
from ..edge.watch import WATCH
from ..errors import EdgeAPIError, EdgeNetworkError
from ..facilities.base import Deferred, FacilityClient, chunks
from ..harvester import PluginBase, WorkSpec
from . import batch_log
from .base import LOG, EdgePlugin
from .submitter import cancel_duplicates, submit_refusal

Answer = tuple[str | None, str]

CVMFS_PATTERN_TEXT = "wrapper got cvmfs repos issue"


def could_not(idx: Sequence[int], answers: dict[int, Answer], what: str) -> None:
    """Mark these workers "could not check" (``None``): an API failure never fails a worker."""
    for i in idx:
        answers[i] = (None, f"could not {what}")


def name_mismatch(record: JobRecord, tag: str) -> bool:
    """True when a job's name says it is not this worker's job.  Slurm 22.05's sacct names a
    just-started job ``allocation`` for a few seconds; an empty or that name proves nothing."""
    return bool(record.name) and record.name != "allocation" and record.name != tag


def summary_error_code(summary: PilotSummary) -> int | None:
    """Harvester errorCode for what the pilots' summary reports (None: all pilots fine)."""
    if summary.cvmfs_error:
        return int(ErrorCode.CVMFS)
    if summary.n_failed or summary.n_missing:
        return int(ErrorCode.PILOTS_FAILED)
    return None


def summary_diagnosis(summary: PilotSummary, code: int | None) -> str:
    """The summary's words, prefixed so the diagnosis matches its code's pattern."""
    text = summary.diagnosis()
    if code == ErrorCode.CVMFS:
        return f"{CVMFS_PATTERN_TEXT}: {text}"
    if code == ErrorCode.PILOTS_FAILED:
        return f"Slurm job pilots failed: {text}"
    return text


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
                if health.planned is not None:
                    kept = f"{client.service}: planned maintenance {health.planned.until_text()}"
                    for ws in workspec_list:
                        lc.pause_graces(ws)
                    return True, [
                        (ws.status or WorkSpec.ST_submitted, f"{kept}; status kept")
                        for ws in workspec_list
                    ]
                return True, [(None, message)] * len(workspec_list)
            self._check(client, workspec_list, answers)
        except Exception as exc:  # never abort the queue's update
            log.error(f"unexpected {type(exc).__name__}: {exc}")
        default = (None, "could not check")
        return True, [answers.get(i, default) for i in range(len(workspec_list))]

    # the cycle -----------------------------------------------------------------------------
    def _check(
        self, client: FacilityClient, workers: list[WorkSpec], answers: dict[int, Answer]
    ) -> None:
        opts = self.edge_options
        budget = CallBudget(opts.callDeadline)
        size = min(opts.chunkSize, client.capabilities.max_ids_per_query)
        phases = {i: phase_of(ws) for i, ws in enumerate(workers)}
        for i, phase in phases.items():
            if phase is Phase.NEW:
                answers[i] = (WorkSpec.ST_failed, "worker has neither batch job id nor tag")
        pending = [i for i, p in phases.items() if p is Phase.AWAITING_TASK]
        if pending:
            self._resolve_tasks(client, workers, pending, answers, budget)
        lookup = [
            i
            for i, ws in enumerate(workers)
            if i not in answers and phase_of(ws) is Phase.LOOKING_UP
        ]
        self._parallel(
            chunks(lookup, size),
            lambda part: self._lookup(client, workers, part, answers),
            budget, answers, "look jobs up by tag",
        )  # fmt: skip
        grace = opts.lookupGraceSeconds
        recheck = [
            i for i, ws in enumerate(workers)
            if i not in answers and lc.duplicates_possible(ws, grace)
        ]  # fmt: skip
        for part in chunks(recheck, size):  # rare: only after ambiguous submits
            if budget.spent():
                break
            try:
                self._lookup(client, workers, part, answers)
            except EdgeNetworkError as exc:
                budget.note(exc)
                LOG.info(f"duplicate check by tag failed: {exc}")
            except EdgeAPIError as exc:
                LOG.info(f"duplicate check by tag failed: {exc}")
        tracked = [i for i, ws in enumerate(workers) if i not in answers and lc.job_id_of(ws)]
        finals: list[tuple[int, Verdict]] = []
        self._parallel(
            chunks(tracked, size),
            lambda part: self._poll(client, workers, part, answers, finals),
            budget, answers, "check",
        )  # fmt: skip
        self._finish(client, workers, finals, answers)
        self._watch_orphans(client, budget)

    def _parallel(
        self,
        parts: Sequence[Sequence[int]],
        work: Callable[[Sequence[int]], None],
        budget: CallBudget,
        answers: dict[int, Answer],
        what: str,
    ) -> None:
        """Run ``work(part)`` for each chunk, ``queryConcurrency`` at a time, within the
        call's budget: after a timeout or when time is up, the rest answer "could not"."""

        def one(part: Sequence[int]) -> None:
            spent = budget.spent()
            if spent:
                return could_not(part, answers, f"{what}: {spent}")
            try:
                work(part)
            except EdgeNetworkError as exc:
                budget.note(exc)
                could_not(part, answers, f"{what}: {exc}")
            except EdgeAPIError as exc:
                could_not(part, answers, f"{what}: {exc}")

        if len(parts) <= 1:
            for part in parts:
                one(part)
            return
        threads = min(self.edge_options.queryConcurrency, len(parts))
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, parts))

    def _deferred(
        self,
        probe: Deferred,
        workers: list[WorkSpec],
        idx: Sequence[int],
        answers: dict[int, Answer],
        what: str,
    ) -> None:
        """A probe started (or still running): the workers keep their status until it
        answers, and are "could not check" once it is older than its timeout."""
        age = lc.now() - probe.started
        if age > self.edge_options.probeTimeoutSeconds:
            return could_not(idx, answers, f"{what}: probe {probe.probe} unanswered for {age:.0f}s")
        for i in idx:
            ws = workers[i]
            answers[i] = (
                ws.status or WorkSpec.ST_submitted,
                f"{what}: probe {probe.probe} pending",
            )

    def _resolve_tasks(
        self,
        client: FacilityClient,
        workers: list[WorkSpec],
        idx: list[int],
        answers: dict[int, Answer],
        budget: CallBudget,
    ) -> None:
        try:
            resolved = client.resolve([attr(workers[i], TASK) for i in idx])
        except EdgeNetworkError as exc:
            budget.note(exc)
            return could_not(idx, answers, f"read submit tasks: {exc}")
        except EdgeAPIError as exc:
            return could_not(idx, answers, f"read submit tasks: {exc}")
        for i in idx:
            ws = workers[i]
            task = attr(ws, TASK)
            res = resolved.get(task)
            if res is None or (res.state == Resolution.DONE and not res.job_id):
                lc.look_up(ws)  # unknown to the service (expired, restarted): look the tag up
            elif res.state == Resolution.DONE:
                lc.candidate(ws, str(res.job_id))  # checked against the tag by the poll
            elif res.state == Resolution.ERROR and is_submit_limit(res.error):
                # a QOS submit limit is "not now": the throttler stops new workers for a while
                LIMITS.hit(tags.prefix_of(attr(ws, TAG) or "") or "", res.error)
                self._observe(ws, live=False)
                answers[i] = (WorkSpec.ST_missed, f"facility submit limit reached: {res.error}")
            elif res.state == Resolution.ERROR:
                # sbatch may have created the job before it failed (a socket timeout): watch
                WATCH.add(client.cache_key, attr(ws, TAG))
                diag = submit_refusal(client.service, res.error)
                self._final(
                    ws, Verdict(WorkSpec.ST_failed, diag, ErrorCode.SUBMIT_REJECTED), answers, i
                )
            else:
                age = lc.now() - float(attr(ws, lc.SUBMITTED_AT) or lc.now())
                late = (
                    " (longer than taskTimeoutSeconds)"
                    if age > self.edge_options.taskTimeoutSeconds
                    else ""
                )
                answers[i] = (
                    WorkSpec.ST_submitted,
                    f"submit task {task} pending for {age:.0f}s{late}",
                )

    def _lookup(
        self,
        client: FacilityClient,
        workers: list[WorkSpec],
        idx: Sequence[int],
        answers: dict[int, Answer],
    ) -> None:
        found = client.find([attr(workers[i], TAG) for i in idx])
        if isinstance(found, Deferred):
            pending = [i for i in idx if not workers[i].batchID]
            return self._deferred(found, workers, pending, answers, "look jobs up by tag")
        for i in idx:
            ws = workers[i]
            tag = attr(ws, TAG)
            jobs = oldest_first([j for j in found.get(tag, []) if j.name == tag])
            if ws.batchID:  # an ambiguous submit already adopted: only duplicates matter
                extra = [
                    j.job_id for j in jobs if j.job_id != str(ws.batchID) and not j.state.is_final
                ]
                if extra:
                    cancel_duplicates(client, tag, extra)
                continue
            if jobs:
                lc.candidate(ws, jobs[0].job_id)
                extra = [j.job_id for j in jobs[1:] if not j.state.is_final]
                if extra:
                    cancel_duplicates(client, tag, extra)
                continue  # verified and polled with the tracked workers
            since = lc.lookup_started(ws)
            grace = self.edge_options.lookupGraceSeconds
            if lc.now() - since > grace:
                diag = f"Slurm job never appeared under tag {tag} within {grace:.0f}s of looking"
                WATCH.add(client.cache_key, tag)
                self._final(
                    ws, Verdict(WorkSpec.ST_failed, diag, ErrorCode.SUBMIT_LOST), answers, i
                )
            else:
                answers[i] = (WorkSpec.ST_submitted, "waiting for the batch job to appear")

    def _poll(
        self,
        client: FacilityClient,
        workers: list[WorkSpec],
        idx: Sequence[int],
        answers: dict[int, Answer],
        finals: list[tuple[int, Verdict]],
    ) -> None:
        ids = [str(lc.job_id_of(workers[i])) for i in idx]
        records = client.poll(ids)
        if isinstance(records, Deferred):
            return self._deferred(records, workers, idx, answers, "check")
        for i, job_id in zip(idx, ids, strict=True):
            ws = workers[i]
            record = records.get(job_id)
            if record is not None and name_mismatch(record, attr(ws, TAG) or ""):
                self._wrong_job(client, ws, record, i, answers)
                continue
            if not ws.batchID and record is not None and record.name == attr(ws, TAG):
                lc.verified(ws, job_id)  # the job carries this worker's tag
            if record is None or (record.state.is_final and not record.confirmed_final):
                self._missing(ws, i, answers, record, finals)
                continue
            lc.seen(ws)
            self._apply(ws, record, i, answers, finals)

    # outcomes -----------------------------------------------------------------------------
    def _wrong_job(
        self,
        client: FacilityClient,
        ws: WorkSpec,
        record: JobRecord,
        i: int,
        answers: dict[int, Answer],
    ) -> None:
        """A job id that names another job: never adopt it (the sweeper would kill it)."""
        tag = attr(ws, TAG)
        diag = (
            f"Slurm job {record.job_id} is not this worker's: it is named {record.name!r}, "
            f"the worker's tag is {tag!r}"
        )
        LOG.error(f"workerID={ws.workerID}: {diag}")
        if ws.batchID and str(ws.batchID) == record.job_id:
            lc.disowned(ws)
            self._final(ws, Verdict(WorkSpec.ST_failed, diag, ErrorCode.WRONG_JOB), answers, i)
            WATCH.add(client.cache_key, tag)
            return
        # a task's answer named someone else's job: look the worker's own job up by tag
        lc.look_up(ws)
        answers[i] = (WorkSpec.ST_submitted, f"{diag}; not adopted, looking up the tag")

    def _apply(
        self,
        ws: WorkSpec,
        record: JobRecord,
        i: int,
        answers: dict[int, Answer],
        finals: list[tuple[int, Verdict]],
        note: str = "",
    ) -> None:
        verdict = verdict_of(record)
        ws.nativeStatus = record.native_status
        if record.exit_code is not None:
            ws.nativeExitCode = record.exit_code
        if record.nodes and not record.state.is_final:
            ws.nodeID = record.nodes[:100]
        if verdict.status is None:  # a state we cannot read: this record only
            answers[i] = (None, verdict.diagnosis)
            return
        self._observe(ws, live=not verdict.is_final)
        if not verdict.is_final:
            answers[i] = (verdict.status, verdict.diagnosis)
            return
        if record.exit_code == EXIT_CVMFS and verdict.status == WorkSpec.ST_failed:
            verdict = Verdict(
                verdict.status,
                f"{CVMFS_PATTERN_TEXT}: CVMFS check failed on a node (exit {EXIT_CVMFS}); "
                f"{verdict.diagnosis}",
                ErrorCode.CVMFS,
            )
        if note:
            verdict = Verdict(
                verdict.status, f"{verdict.diagnosis}; {note}".lstrip("; "), verdict.error_code
            )
        finals.append((i, verdict))

    def _missing(
        self,
        ws: WorkSpec,
        i: int,
        answers: dict[int, Answer],
        record: JobRecord | None,
        finals: list[tuple[int, Verdict]],
    ) -> None:
        since = lc.missing_since(ws)
        grace = self.edge_options.missingGraceSeconds
        job_id = lc.job_id_of(ws)
        expired = lc.now() - since > grace
        if expired and not ws.batchID:
            # a task named a job nobody can see: never trust it, look the tag up instead
            LOG.warning(f"workerID={ws.workerID}: job {job_id} named by its task never showed")
            lc.look_up(ws)
            answers[i] = (
                WorkSpec.ST_submitted,
                f"job {job_id} named by the submit task never showed; looking up the tag",
            )
            return
        if expired and record is not None:  # final but never confirmed: trust what we saw
            note = f"accounting never confirmed it within {grace:.0f}s"
            return self._apply(ws, record, i, answers, finals, note)
        if expired:
            diag = f"Slurm job {job_id} vanished: in neither queue nor accounting for {grace:.0f}s"
            self._final(ws, Verdict(WorkSpec.ST_failed, diag, ErrorCode.JOB_LOST), answers, i)
            return
        seen = f" (queue says {record.native_status})" if record else ""
        answers[i] = (
            ws.status or WorkSpec.ST_submitted,
            f"batch job {job_id} not in accounting yet{seen}",
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

    # final verdicts with the pilots' summaries, read in bulk ------------------------------
    def _finish(
        self,
        client: FacilityClient,
        workers: list[WorkSpec],
        finals: list[tuple[int, Verdict]],
        answers: dict[int, Answer],
    ) -> None:
        wanted = {}
        if client.capabilities.files and self.edge_options.readPilotSummary:
            for i, _ in finals:
                ws = workers[i]
                work_dir = attr(ws, WORK_DIR)
                if work_dir and not isinstance(attr(ws, PILOTS), dict):
                    wanted[i] = f"{work_dir.rstrip('/')}/{SUMMARY_FILE}"
        deferred = client.capabilities.deferred_queries
        # a task-based service reads the batch logs' ends in the summaries' probe
        logs = {}
        if deferred:
            found = batch_log.wanted_paths(
                client, self.edge_options, [workers[i] for i, _ in finals]
            )
            logs = {finals[k][0]: path for k, path in found.items()}
        texts: dict[str, str | None] = {}
        tails: dict[str, str | None] = {}
        if wanted or logs:
            try:
                if deferred:
                    texts, tails = client.read_texts_and_tails(
                        sorted(set(wanted.values())), sorted(set(logs.values())),
                        self.edge_options.batchLogMaxBytes,
                    )  # fmt: skip
                else:
                    texts = client.read_texts(sorted(set(wanted.values())))
            except EdgeAPIError as exc:
                LOG.info(f"pilot summaries could not be read now: {exc}")
        for i, verdict in finals:
            ws = workers[i]
            reading = i in wanted and wanted[i] not in texts
            if deferred and (reading or (i in logs and logs[i] not in tails)):
                if self._await_summary(ws):
                    # a task-based service reads files with a probe answered next cycle:
                    # the final status waits for it (at most probeTimeoutSeconds)
                    what = "the pilots' summary" if reading else "the batch log"
                    answers[i] = (
                        ws.status or WorkSpec.ST_submitted,
                        f"{verdict.status}: reading {what}, probe pending",
                    )
                    continue
            if i in wanted and wanted[i] in texts:
                ws.set_work_attributes({PILOTS: self._pilots(ws, texts[wanted[i]])})
            if i in logs and logs[i] in tails:
                batch_log.keep(ws, tails[logs[i]])
            self._final(ws, self._with_pilot_summary(ws, verdict), answers, i)
        if not deferred:
            batch_log.fetch_batch_logs(client, self.edge_options, [workers[i] for i, _ in finals])

    def _await_summary(self, ws: WorkSpec) -> bool:
        """True while a final worker may still wait for its summary's probe."""
        asked = attr(ws, lc.SUMMARY_ASKED_AT)
        if asked is None:
            ws.set_work_attributes({lc.SUMMARY_ASKED_AT: lc.now()})
            return True
        return lc.now() - float(asked) <= self.edge_options.probeTimeoutSeconds

    @staticmethod
    def _pilots(ws: WorkSpec, text: str | None) -> dict[str, Any]:
        """The summary as kept in work attributes ({"none": True}: no file, not asked again)."""
        if not text:
            return {"none": True}
        try:
            summary = parse_summary(text)
        except EdgeAPIError as exc:
            LOG.info(f"workerID={ws.workerID}: unreadable pilot summary ({exc})")
            return {"none": True, "error": str(exc)[:200]}
        code = summary_error_code(summary)
        return {
            "n": summary.n_pilots,
            "failed": summary.n_failed,
            "diag": summary_diagnosis(summary, code),
            "code": code,
        }

    @staticmethod
    def _with_pilot_summary(ws: WorkSpec, verdict: Verdict) -> Verdict:
        """Fold the pilots' own summary (kept in attributes, so a re-check after a restart
        does not read it again) into a final verdict.  A cancelled job stays cancelled with
        Slurm's words first: its pilots' SIGTERM exits are the cancellation, not failures."""
        pilots = attr(ws, PILOTS)
        if not isinstance(pilots, dict) or pilots.get("none"):
            return verdict
        code, diag = pilots.get("code"), str(pilots.get("diag") or "")
        if verdict.status == WorkSpec.ST_cancelled:
            # the pilots' exits (SIGTERM, 143) are the cancellation: counted, not blamed
            ended = f"{pilots.get('n', 0)} pilots ended with the allocation"
            return Verdict(verdict.status, f"{verdict.diagnosis}; {ended}", verdict.error_code)
        if code is None and verdict.status != WorkSpec.ST_failed:
            joined = "; ".join(x for x in (verdict.diagnosis, diag) if x)
            return Verdict(verdict.status, joined, verdict.error_code)
        diagnosis = "; ".join(x for x in (diag, verdict.diagnosis) if x)
        return Verdict(verdict.status, diagnosis, code if code is not None else verdict.error_code)

    # jobs under the tags of workers that already ended ------------------------------------
    def _watch_orphans(self, client: FacilityClient, budget: CallBudget) -> None:
        watched = WATCH.tags(client.cache_key, self.edge_options.orphanWatchSeconds)
        if not watched or budget.spent():
            return
        size = min(self.edge_options.chunkSize, client.capabilities.max_ids_per_query)
        for part in chunks(watched, size):
            try:
                found = client.find(list(part))
            except EdgeAPIError as exc:
                LOG.info(f"orphan watch could not look tags up: {exc}")
                return
            if isinstance(found, Deferred):
                continue  # answered on a later cycle
            for tag, jobs in found.items():
                live = [j.job_id for j in jobs if j.name == tag and not j.state.is_final]
                if live:
                    LOG.warning(f"tag {tag}: its worker already ended; cancelling {live}")
                    try:
                        client.cancel(live)
                    except EdgeAPIError as exc:
                        LOG.warning(f"tag {tag}: could not cancel {live}: {exc}")
