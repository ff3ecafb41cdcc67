"""The task table of the loopback Globus Compute service: states, documents, retention.

Semantics kept from the real service (what clients must cope with):

- States only move forward: ``received`` -> ``waiting-for-ep`` (endpoint offline) ->
  ``waiting-for-launch`` -> ``waiting-for-nodes`` (the block is pending) -> ``running`` ->
  ``success`` | ``failed``.
- A finished task's document carries ``result`` (serialized by the SDK's serializer) or
  ``exception`` (traceback text) and ``completion_t``; while the ``task_delay`` knob holds
  results back, or the task ended while the endpoint is offline, it still reads ``running``.
- Results are kept until fetched and abandoned ``result_ttl`` seconds (30 minutes) after
  completion, or after their first delivery; an abandoned task reads like an unknown one.
- Each identity sees only its own tasks.
- One user endpoint is started per distinct ``user_endpoint_config`` (counted).
"""

from __future__ import annotations

import platform
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from .gc_exec import FINAL_STATES, Task, UserEndpointConfig
from .gc_knobs import GCKnobs

#: Order of the states: a task never moves back.
_RANK = {
    "received": 0,
    "waiting-for-ep": 1,
    "waiting-for-launch": 2,
    "waiting-for-nodes": 3,
    "running": 4,
    "success": 5,
    "failed": 5,
}


def unknown_doc(task_id: str) -> dict[str, Any]:
    """The batch-status entry of an id the service does not know (or has abandoned)."""
    return {"task_id": task_id, "status": "unknown", "reason": "unknown task"}


def _worker_details() -> dict[str, str]:
    """What a worker reports about its environment (the SDK compares it with its own)."""
    import dill  # type: ignore[import-untyped]
    from globus_compute_sdk.version import __version__

    return {
        "os": platform.platform(),
        "python_version": platform.python_version(),
        "dill_version": str(dill.__version__),
        "globus_compute_sdk_version": str(__version__),
    }


class TaskTable:
    """Every task of one endpoint, thread-safe; ``dispatch`` starts a task (the runner)."""

    def __init__(self, endpoint_id: str, knobs: GCKnobs, clock: Callable[[], float]) -> None:
        self.endpoint_id = endpoint_id
        self.knobs = knobs
        self.clock = clock
        self.dispatch: Callable[[Task], None] = lambda task: None
        self._tasks: dict[str, Task] = {}
        self._groups: dict[str, list[str]] = {}
        self._held: list[Task] = []
        self._user_endpoints: dict[str, dict[str, Any]] = {}
        self._details = _worker_details()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ creation
    def create(
        self,
        owner: str,
        calls: list[tuple[str, dict[str, Any], str]],
        group: str,
        config: UserEndpointConfig,
        key: str,
        raw_config: dict[str, Any],
    ) -> list[Task]:
        """Create one task per ``(function_id, function doc, payload)`` and start them, or hold
        them while the endpoint is offline."""
        offline = self.knobs.endpoint_offline
        created: list[Task] = []
        with self._lock:
            uep = self._user_endpoints.setdefault(
                key,
                {"config": raw_config, "provider": config.provider, "started": time.time()},
            )
            uep["tasks"] = uep.get("tasks", 0) + len(calls)
            for function_id, fn, payload in calls:
                code = {k: fn[k] for k in ("function_code", "function_name", "serialized")}
                task = Task(
                    str(uuid.uuid4()),
                    owner,
                    function_id,
                    self.endpoint_id,
                    group,
                    config,
                    key,
                    code,
                    payload,
                    time.monotonic(),
                )
                task.transitions["received"] = time.time()
                if offline:
                    task.state = "waiting-for-ep"
                    task.transitions["waiting-for-ep"] = time.time()
                    self._held.append(task)
                self._tasks[task.id] = task
                created.append(task)
            self._groups.setdefault(group, []).extend(t.id for t in created)
        if not offline:
            for task in created:
                self.dispatch(task)
        return created

    # ------------------------------------------------------------------ runner callbacks
    def on_state(self, task: Task, state: str) -> None:
        with self._lock:
            if task.final or _RANK[state] <= _RANK[task.state]:
                return
            task.state = state
            task.transitions.setdefault(state, time.time())

    def on_done(self, task: Task, outcome: dict[str, str]) -> None:
        with self._lock:
            if task.final:
                return
            if "result" in outcome:
                task.state, task.result = "success", outcome["result"]
            else:
                task.state, task.exception = "failed", outcome.get("exception", "")
            task.transitions["execution-end"] = time.time()
            task.completed_at = self.clock()
            task.ended_mono = time.monotonic()

    # ------------------------------------------------------------------ housekeeping
    def release_held(self) -> None:
        """Start the tasks held while the endpoint was offline."""
        if self.knobs.endpoint_offline:
            return
        with self._lock:
            held, self._held = self._held, []
        for task in held:
            self.dispatch(task)

    def abandon(self) -> list[str]:
        """Drop finished tasks past ``result_ttl``; their ids."""
        now, ttl = self.clock(), self.knobs.result_ttl
        with self._lock:
            gone = [
                t.id
                for t in self._tasks.values()
                if t.completed_at is not None and (t.fetched_at or t.completed_at) + ttl < now
            ]
            for task_id in gone:
                del self._tasks[task_id]
        return gone

    # ------------------------------------------------------------------ documents
    def _doc(self, task: Task) -> dict[str, Any]:
        """A task document (lock held); a delivered result counts as fetched."""
        state = task.state
        offline_since = self.knobs.offline_since()
        if task.final and (
            time.monotonic() < task.created_mono + self.knobs.task_delay  # results delayed
            or (offline_since is not None and task.ended_mono >= offline_since)
        ):
            state = "running"  # the outcome has not reached the service yet
        transitions = dict(task.transitions)
        if state not in FINAL_STATES:
            transitions.pop("execution-end", None)
        details = {**self._details, "endpoint_id": task.endpoint_id}
        details["task_transitions"] = transitions  # type: ignore[assignment]
        doc: dict[str, Any] = {"task_id": task.id, "status": state, "details": details}
        if state in FINAL_STATES:
            if task.result is not None:
                doc["result"] = task.result
            else:
                doc["exception"] = task.exception or ""
            doc["completion_t"] = str(task.completed_at)
            if task.fetched_at is None:
                task.fetched_at = self.clock()
        return doc

    def docs(self, owner: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        """``/v2/batch_status`` results: every requested id answered."""
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for task_id in ids:
                task = self._tasks.get(task_id)
                ok = task is not None and task.owner == owner
                out[task_id] = self._doc(task) if task is not None and ok else unknown_doc(task_id)
        return out

    def doc(self, owner: str, task_id: str) -> dict[str, Any] | None:
        with self._lock:
            task = self._tasks.get(task_id)
            return self._doc(task) if task is not None and task.owner == owner else None

    def group(self, group_id: str) -> list[str] | None:
        with self._lock:
            ids = self._groups.get(group_id)
            return None if ids is None else list(ids)

    # ------------------------------------------------------------------ inspection
    def pending(self) -> int:
        with self._lock:
            return sum(1 for t in self._tasks.values() if not t.final)

    def states(self) -> dict[str, str]:
        with self._lock:
            return {t.id: t.state for t in self._tasks.values()}

    def state_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(t.state for t in self._tasks.values()))

    def job_of(self, task_id: str) -> str | None:
        with self._lock:
            task = self._tasks.get(task_id)
            return task.job_id if task is not None else None

    def user_endpoints(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self._user_endpoints.items()}
