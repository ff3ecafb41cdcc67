"""Run one Globus Compute task in its own process, as an endpoint worker does.

The loopback Globus Compute service (``gc_service``) starts ``python -m
harvester_edge.localsite.gc_worker TASK_FILE RESULT_FILE`` for every task: on the login node
(the ``local`` provider) or inside a Slurm job (the ``slurm`` provider's block).  A separate
process is needed because the SDK's ``ShellFunction`` changes the working directory of the
process it runs in (``os.chdir($GC_TASK_SANDBOX_DIR)``), which a thread of the service must
never do.

``TASK_FILE`` is JSON ``{"function_code", "serialized", "function_name", "payload"}`` as the
SDK sent them; the function and its arguments are unpacked and deserialized by the real
``globus_compute_sdk`` serializer and the result is serialized by it too.  ``RESULT_FILE``
receives ``{"result": <serialized>}`` or ``{"exception": <traceback text>}`` (what a real
endpoint reports), written atomically: a worker killed half-way (a cancelled block) leaves no
result, which the service reports as a lost worker.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any


def load_function(task: dict[str, Any]) -> Any:
    """The callable of a task: deserialized, or exec'd from source (``serialized`` false)."""
    from globus_compute_sdk.serialize import ComputeSerializer

    if task.get("serialized", True):
        serde = ComputeSerializer()
        return serde.deserialize(serde.unpack_buffers(task["function_code"])[0])
    namespace: dict[str, Any] = {}
    # register_source_code: the user's own source, run as the user (as a real endpoint does)
    exec(compile(task["function_code"], "<registered source>", "exec"), namespace)  # noqa: S102
    return namespace[task["function_name"]]


#: Largest serialized result the service takes (Globus Compute: 10 MB).
MAX_RESULT = 10 * 1024 * 1024


def run_task(task: dict[str, Any]) -> dict[str, str]:
    """Execute one task; ``{"result": ...}`` or ``{"exception": ...}``."""
    from globus_compute_sdk.errors import MaxResultSizeExceeded
    from globus_compute_sdk.serialize import ComputeSerializer

    serde = ComputeSerializer()
    try:
        function = load_function(task)
        args, kwargs = (serde.deserialize(b) for b in serde.unpack_buffers(task["payload"]))
        result = serde.serialize(function(*args, **kwargs))
        if len(result) > MAX_RESULT:
            raise MaxResultSizeExceeded(len(result), MAX_RESULT)
        return {"result": result}
    except BaseException as exc:  # noqa: BLE001 - every failure is the task's outcome
        return {"exception": "".join(traceback.format_exception(exc))}


def write_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so a reader sees the whole file or none."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m harvester_edge.localsite.gc_worker TASK_FILE RESULT_FILE")
        return 2
    task = json.loads(Path(args[0]).read_text())
    sandbox = os.environ.get("GC_TASK_SANDBOX_DIR")
    if sandbox:
        os.makedirs(sandbox, exist_ok=True)
        os.chdir(sandbox)
    write_atomically(Path(args[1]), run_task(task))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
