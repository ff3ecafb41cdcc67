"""Asynchronous tasks as the SFAPI models them (``GET /tasks/{id}``).

SFAPI answers a submit or cancel with a task id and runs the Slurm command later; clients poll
the task for the outcome.  Reproducing that split matters: it is where clients lose jobs
(timeouts after the job exists) and where "task not done yet" must not be read as failure.
Work runs in a small bounded pool, like a real service under load; a task reports its result
only once the work is done *and* its ``task_delay`` has elapsed.

Task ids are numeric strings drawn from the wall clock (microseconds), strictly increasing in
a process: a restarted gateway (or a new gateway process) never hands out an id it, or an
earlier instance, already used, so a client polling an old id can never read another task.
``DELETE /tasks/{id}`` cancels a task that has not reported yet: queued work is dropped,
running work finishes (its effect stays, as after a revoked job of a real task queue) but the
task reads ``cancelled`` with no result.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Task:
    """One task: who owns it, when it may report, and the outcome of its work."""

    id: str
    owner: str
    kind: str
    ready_at: float  # time.monotonic() before which the task stays "new"
    future: Future[dict[str, Any]] = field(repr=False)
    cancelled: bool = False  # cancelled by its owner (DELETE /tasks/{id}) before reporting

    def reported(self) -> bool:
        """True once the task shows its outcome (work done and delay elapsed)."""
        return self.future.done() and time.monotonic() >= self.ready_at

    def to_api(self) -> dict[str, Any]:
        """The SFAPI task document: status new|completed|failed|cancelled, JSON string result."""
        if self.cancelled:
            return {"id": self.id, "status": "cancelled", "result": None}
        if not self.reported():
            return {"id": self.id, "status": "new", "result": None}
        exc = self.future.exception() if not self.future.cancelled() else None
        if self.future.cancelled() or exc is not None:
            reason = "cancelled" if self.future.cancelled() else type(exc).__name__
            result = {"status": "error", "error": f"task failed: {reason}"}
            return {"id": self.id, "status": "failed", "result": json.dumps(result)}
        return {"id": self.id, "status": "completed", "result": json.dumps(self.future.result())}


_id_lock = threading.Lock()
_last_id = 0


def new_task_id() -> str:
    """A task id unique across stores and restarts: wall-clock microseconds, kept increasing.

    Ids of an earlier process are smaller unless the clock went back or that process issued
    more than a million tasks a second, so a fresh gateway never reuses an old id.
    """
    global _last_id
    with _id_lock:
        _last_id = max(time.time_ns() // 1000, _last_id + 1)
        return str(_last_id)


class TaskStore:
    """Creates tasks, runs their work in a bounded pool and answers task queries per owner."""

    def __init__(self, workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sfapi-task")
        self._tasks: dict[str, Task] = {}
        self._lock = threading.Lock()

    def create(
        self, owner: str, kind: str, work: Callable[[], dict[str, Any]], delay: float
    ) -> Task:
        """Schedule ``work`` now; the task reports no earlier than ``delay`` seconds from now."""
        future = self._pool.submit(self._guard, kind, work)
        with self._lock:
            task = Task(new_task_id(), owner, kind, time.monotonic() + delay, future)
            self._tasks[task.id] = task
        return task

    def get(self, owner: str, task_id: str) -> dict[str, Any] | None:
        """A task of ``owner`` as an API document; None if unknown or someone else's."""
        with self._lock:
            task = self._tasks.get(task_id)
        return task.to_api() if task is not None and task.owner == owner else None

    def cancel(self, owner: str, task_id: str) -> dict[str, Any] | None:
        """Cancel a task of ``owner`` that has not reported yet; its document, None if unknown.

        A task that already reported keeps its outcome (the answer shows it unchanged).
        """
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.owner != owner:
                return None
            if not task.cancelled and not task.reported():
                task.future.cancel()  # drops queued work; running work finishes unseen
                task.cancelled = True
        return task.to_api()

    def list(self, owner: str) -> list[dict[str, Any]]:
        """All tasks of ``owner``, oldest first."""
        with self._lock:
            mine = [t for t in self._tasks.values() if t.owner == owner]
        return [t.to_api() for t in mine]

    def shutdown(self) -> None:
        """Drop queued work and stop taking new work; running commands finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _guard(kind: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return work()
        except Exception:
            log.exception("%s task failed", kind)
            raise
