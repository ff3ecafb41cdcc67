"""What bench_s3m.py and bench_iri.py share on top of ``bench_sfapi.Bench``: a family's
bench set up around its own gateway process, the timed monitor check, the submit_200 row
with its one-job-per-worker check (by tag, in Slurm), held jobs made in batches with a time
limit, and the command-line options and row choice of both scripts.

A family's bench names its queue, plugins, template's gateway (``start_gateway``) and the
client methods ``client_calls`` reports (``poll_names``); the rows stay in its script.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# bench_sfapi sets SLURM_CONF's default and a fresh HARVESTER_ID before harvester_edge loads
import bench_sfapi as base
from bench_sfapi import LATENCY, Bench, ClientSpy, Gateway

from harvester_edge.edge.health import GATE
from harvester_edge.facilities.registry import forget_clients
from harvester_edge.harvester import WorkSpec, harvester_id
from harvester_edge.localsite.slurm import LocalSlurm, default_slurm_conf


class FamilyBench(Bench):
    """``bench_sfapi.Bench`` without the SFAPI gateway: the family's own (``start_gateway``);
    the generic helpers (sbatch_tagged, held_workers, cleanup, budget, measure, target,
    wait_accounted) are inherited."""

    #: the client methods whose calls ``client_calls`` reports
    poll_names: Sequence[str] = ()

    def __init__(
        self, root: Path, quick: bool, chunk: int, real_setup_limit: float
    ):  # no super().__init__: it starts the SFAPI gateway
        self.root = root
        self.chunk = chunk
        self.quick = quick
        self.real_10000 = False
        self.real_setup_limit = real_setup_limit
        self.slurm = LocalSlurm(default_slurm_conf())
        self.hid = harvester_id()
        self.created: list[str] = []
        (root / "template.sh").write_text(base.TEMPLATE)
        (root / "work").mkdir()  # remoteWorkDir's fixed part: the job starts in it
        self.gw = self.start_gateway(root)
        self.rows: dict[str, dict[str, Any]] = {}
        self.checks: dict[str, bool] = {}
        self.setup_s: dict[str, float] = {}
        self._warm: WorkSpec | None = None

    def start_gateway(self, root: Path) -> Gateway:
        raise NotImplementedError

    def measure_check(
        self, workers: list[WorkSpec], conf: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """One check_workers by a new monitor (Harvester builds one per cycle), with the
        shared client's ``poll_names`` calls timed."""
        conf = conf or self.conf
        spy = ClientSpy(self.gw)
        client = self.monitor_cls(**conf).edge_client()
        with spy.watch(client, list(self.poll_names)):
            result, fig = self.measure(lambda: self.monitor_cls(**conf).check_workers(workers))
        calls = spy.summary()
        for stats in calls.values():
            stats["mean_s"] = round(stats["total_s"] / stats["calls"], 4)
        fig["client_calls"] = calls
        return result, fig

    def latency_check(
        self, workers: list[WorkSpec], conf: dict[str, Any] | None = None
    ) -> tuple[list[tuple[str | None, str]], dict[str, Any]]:
        """``measure_check`` at LATENCY; the answers, and the figures with one answer the
        monitor could not give (``sample_unanswered``), if any."""
        with self.latency():
            (_, answers), fig = self.measure_check(workers, conf)
        unanswered = [a[1] for a in answers if a[0] is None]
        if unanswered:
            fig["sample_unanswered"] = unanswered[0][:200]
        return answers, fig

    def held_in_batches(
        self, submit: Callable[[list[int]], list[str]], wids: list[int], ids: list[str]
    ) -> None:
        """Held jobs for ``wids``, 500 at a time by ``submit``, appended to ``ids`` (so the
        caller can cancel what was made when this stops); given up once it takes longer
        than ``real_setup_limit``."""
        start = time.perf_counter()
        for i in range(0, len(wids), 500):
            if time.perf_counter() - start > self.real_setup_limit:
                raise RuntimeError(
                    f"setup given up: {len(ids)} of {len(wids)} more held jobs submitted "
                    f"in {time.perf_counter() - start:.0f}s "
                    f"(limit {self.real_setup_limit:.0f}s)"
                )
            ids += submit(wids[i : i + 500])

    def submit_first_id(self) -> int:
        """The first worker id of submit_200 (the tag derives from the worker id)."""
        return base.SUBMIT_IDS

    def row_submit_200(self) -> None:
        row, n, seconds = self.row_name("submit_200"), 200, 5.0
        forget_clients()  # a cold client: the health and discovery calls are in the figure
        GATE.forget()
        created_before = set(self.gw.jobs_created())
        first = self.submit_first_id()
        workers = [self.worker(w) for w in range(first, first + n)]
        with self.latency():
            results, fig = self.measure(
                lambda: self.submitter_cls(**self.conf).submit_workers(workers)
            )
        ok = sum(1 for r in results if r[0] is True)
        refused = Counter(f"{r[0]}: {r[1][:160]}" for r in results if r[0] is not True)
        made = [j for j in self.gw.jobs_created() if j not in created_before]
        per_worker, states = self.jobs_by_tag(workers)
        one_each = sum(
            1 for ws in workers if per_worker.get(self.tag(ws.workerID)) == [str(ws.batchID)]
        )
        fig.update(n=n, latency_s=LATENCY, submitted=ok, sample_result=list(results[0]),
                   not_submitted=dict(refused.most_common(3)), gateway_jobs_created=len(made),
                   workers_with_exactly_their_job=one_each, slurm_states=states,
                   sample_batch_id=workers[0].batchID)  # fmt: skip
        self.rows[row] = fig
        self.target_wall(row, seconds)
        self.target(row, "all_submitted", ok, f"== {n}", ok == n)
        self.target(row, "one_job_per_worker", {"gateway_jobs": len(made), "by_tag": one_each},
                    f"{n} jobs made, each worker's tag names exactly its batch id",
                    len(made) == n and one_each == n)  # fmt: skip

    def jobs_by_tag(self, workers: list[WorkSpec]) -> tuple[dict[str, list[str]], dict[str, int]]:
        """Every Slurm job carrying one of these workers' tags (live list, then accounting),
        and their states (held jobs: PENDING/JobHeldUser)."""
        tags = {self.tag(ws.workerID) for ws in workers}
        found: dict[str, set[str]] = {}
        states: Counter[str] = Counter()
        for job in self.slurm.squeue_json():
            if job.get("name") in tags:
                found.setdefault(job["name"], set()).add(str(job.get("job_id")))
                state = job.get("job_state")
                state = "/".join(state) if isinstance(state, list) else str(state)
                states[f"{state} ({job.get('state_reason', '')})"] += 1
        for rec in self.slurm.sacct(names=sorted(tags)):  # ended ones (not expected: held)
            found.setdefault(rec["jobname"], set()).add(rec["jobidraw"])
        return {k: sorted(v) for k, v in found.items()}, dict(states)


def family_parser(
    description: str, rows: Sequence[str], chunk: int, real_setup_limit: float,
    quick_help: str, chunk_help: str, limit_help: str,
) -> argparse.ArgumentParser:  # fmt: skip
    """The options both scripts take: --quick, --rows, --chunk-size, --real-setup-limit,
    --keep (a script adds its own after these)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument(
        "--rows", default="", help=f"comma-separated rows (default all): {','.join(rows)}"
    )
    parser.add_argument(
        "--chunk-size", type=int, default=chunk,
        help=f"the queue's chunkSize (default {chunk}, {chunk_help})",
    )  # fmt: skip
    parser.add_argument(
        "--real-setup-limit", type=float, default=real_setup_limit,
        help=f"monitor_10000_real: give up when {limit_help} takes longer "
        f"(seconds, default {real_setup_limit:g})",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser


def chosen_rows(
    parser: argparse.ArgumentParser, rows_arg: str, rows: Sequence[str], quick_rows: Sequence[str]
) -> list[str]:
    """The rows --rows names (each must be one of ``rows``), else every row (``quick_rows``
    with --quick, already applied by the caller)."""
    named = [r.strip() for r in rows_arg.split(",") if r.strip()]
    unknown = [r for r in named if r not in rows]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(rows)}")
    return named or list(quick_rows)
