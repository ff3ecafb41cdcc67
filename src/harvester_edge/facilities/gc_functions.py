"""Registered shell functions and batches: each function registered once per content hash.

A function's id is cached process-wide by (web service, credential, content hash), so new
plugin instances, new clients after a restart of the sharing registry and every thread reuse
it (upstream registered one function per worker).  Python functions (``python_function_id``:
the credential manager's site receiver) are registered by their source text
(``PureSourceTextInspect``): the endpoint needs nothing of harvester-edge to run them.
``Batches`` builds globus-compute-sdk ``Batch`` payloads (the SDK's serializer, the queue's
fixed ``user_endpoint_config``) and posts them with ``/v3/endpoints/{id}/submit``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from globus_compute_sdk.sdk.batch import Batch, UserRuntime, create_user_runtime
from globus_compute_sdk.sdk.client import FunctionRegistrationData
from globus_compute_sdk.sdk.shell_function import ShellFunction
from globus_compute_sdk.serialize import ComputeSerializer, PureSourceTextInspect

from ..errors import EdgeAPIError
from . import gc_wire as wire
from .gc_http import GCService

_FUNCTIONS: dict[Hashable, str] = {}
_FUNCTIONS_LOCK = threading.Lock()
#: registrations sent by this process (tests count them)
REGISTRATIONS: list[str] = []

_RUNTIME: UserRuntime | None = None

#: the shell functions by name: (cmd, walltime)
COMMANDS: dict[str, str] = {
    wire.SBATCH_NAME: wire.SBATCH,
    wire.PROBE_NAME: wire.PROBE,
    wire.SCANCEL_NAME: wire.SCANCEL,
    wire.PILOT_NAME: wire.PILOT,
}


def shell_function(name: str) -> ShellFunction:
    return ShellFunction(COMMANDS[name], name=name, snippet_lines=wire.SNIPPET_LINES)


def content_hash(fn: ShellFunction) -> str:
    text = json.dumps([fn.__name__, fn.cmd, fn.walltime, fn.snippet_lines, fn.return_dict])
    return hashlib.sha256(text.encode()).hexdigest()


def forget_functions() -> None:
    with _FUNCTIONS_LOCK:
        _FUNCTIONS.clear()


def runtime() -> UserRuntime:
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = create_user_runtime()
    return _RUNTIME


class Batches:
    """Function ids and batch submits for one service, endpoint and credential."""

    def __init__(self, service: GCService, endpoint_id: str, identity: str) -> None:
        self.service = service
        self.endpoint_id = endpoint_id
        self.identity = identity
        self.serializer = ComputeSerializer()
        self._lock = threading.Lock()

    def function_id(self, name: str, deadline: float) -> str:
        fn = shell_function(name)
        key = (self.service.url, self.identity, content_hash(fn))
        return self._register(
            key, name, lambda: FunctionRegistrationData(function=fn, serializer=self.serializer),
            deadline,
        )  # fmt: skip

    def python_function_id(self, fn: Callable[..., Any], deadline: float) -> str:
        """A Python function's id, registered by its source text (a module-level function
        whose imports are inside it)."""
        source = inspect.getsource(fn)
        digest = hashlib.sha256(f"py\0{fn.__name__}\0{source}".encode()).hexdigest()
        by_source = ComputeSerializer(strategy_code=PureSourceTextInspect())
        return self._register(
            (self.service.url, self.identity, digest),
            fn.__name__,
            lambda: FunctionRegistrationData(function=fn, serializer=by_source),
            deadline,
        )

    def _register(
        self,
        key: Hashable,
        name: str,
        data: Callable[[], FunctionRegistrationData],
        deadline: float,
    ) -> str:
        with _FUNCTIONS_LOCK:
            known = _FUNCTIONS.get(key)
        if known:
            return known
        with self._lock:  # one registration per function even when threads race
            with _FUNCTIONS_LOCK:
                known = _FUNCTIONS.get(key)
            if known:
                return known
            body = data().to_dict()
            answer = self.service.call(
                "register function",
                lambda: self.service.v3.register_function(body),
                idempotent=True,  # a duplicate registration is harmless: a second id
                deadline=deadline,
            )
            fid = answer.data.get("function_uuid") if isinstance(answer.data, dict) else None
            if not fid:
                raise EdgeAPIError("globus compute register function: no function_uuid")
            with _FUNCTIONS_LOCK:
                _FUNCTIONS[key] = str(fid)
                REGISTRATIONS.append(name)
            return str(fid)

    def run(
        self,
        calls: Sequence[tuple[str, Mapping[str, str]]],
        user_endpoint_config: Mapping[str, Any] | None,
        *,
        idempotent: bool,
        deadline: float,
    ) -> list[str]:
        """One ``/v3/endpoints/{id}/submit`` for ``calls`` (function name, kwargs); the task
        ids in the same order.  Never retried after it may have been sent (``idempotent``
        False): the caller decides what an ambiguous answer means."""
        ids = {name: self.function_id(name, deadline) for name, _ in calls}
        by_id = [(ids[name], kwargs) for name, kwargs in calls]
        return self.submit(by_id, user_endpoint_config, idempotent=idempotent, deadline=deadline)

    def submit(
        self,
        calls: Sequence[tuple[str, Mapping[str, Any]]],
        user_endpoint_config: Mapping[str, Any] | None,
        *,
        idempotent: bool,
        deadline: float,
    ) -> list[str]:
        """``run`` for registered function ids: ``calls`` are (function id, kwargs)."""
        batch = Batch(
            None,
            user_endpoint_config=dict(user_endpoint_config) if user_endpoint_config else None,
            serializer=self.serializer,
            user_runtime=runtime(),
        )
        for fid, kwargs in calls:
            batch.add(fid, (), dict(kwargs))
        payload = batch.prepare()
        answer = self.service.call(
            "submit",
            lambda: self.service.v3.submit(self.endpoint_id, payload),
            idempotent=idempotent,
            deadline=deadline,
        )
        tasks = answer.data.get("tasks") if isinstance(answer.data, dict) else None
        if not isinstance(tasks, dict):
            raise EdgeAPIError("globus compute submit: answer has no 'tasks'", status=502)
        queues = {fid: list(tasks.get(fid) or []) for fid, _ in calls}
        out = []
        for fid, _ in calls:
            queue = queues[fid]
            if not queue:
                raise EdgeAPIError("globus compute submit: fewer task ids than tasks", status=502)
            out.append(str(queue.pop(0)))
        return out

    def statuses(self, task_ids: Sequence[str], deadline: float) -> dict[str, dict[str, Any]]:
        """The raw ``/v2/batch_status`` entries (failed tasks included: the SDK's
        ``get_batch_result`` leaves them out).  Ids absent: unknown to the service."""
        if not task_ids:
            return {}
        answer = self.service.call(
            "batch status",
            lambda: self.service.v2.get_task_batch(list(task_ids)),
            idempotent=True,
            deadline=deadline,
        )
        results = answer.data.get("results") if isinstance(answer.data, dict) else None
        if not isinstance(results, dict):
            raise EdgeAPIError("globus compute batch status: no 'results'", transient=True)
        return {str(k): v for k, v in results.items() if isinstance(v, dict)}

    def outcome(self, entry: Mapping[str, Any]) -> tuple[str, Any, str]:
        """A task's state: ``("pending", None, status)``, ``("done", result, "")`` or
        ``("failed", None, why)``; the result deserialized by the SDK's serializer."""
        status = str(entry.get("status") or "").lower()
        if status not in ("success", "failed") and "result" not in entry:
            if "exception" not in entry:
                return "pending", None, status or "unknown"
        if "result" in entry:
            try:
                return "done", self.serializer.deserialize(entry["result"]), ""
            except Exception as exc:  # noqa: BLE001 - a result we cannot read
                return "failed", None, f"unreadable result ({type(exc).__name__})"
        why = str(entry.get("exception") or entry.get("reason") or f"task {status}")
        lines = [ln for ln in why.strip().splitlines() if ln.strip()]
        return "failed", None, (lines[-1] if lines else why)[:300]
