"""Shared helpers of the loopback-gateway tests (polling, job scripts, raw API calls)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from harvester_edge.localsite.sfapi_gateway import SFAPIGateway

T = TypeVar("T")
MACHINE = "perlmutter"


def poll(fn: Callable[[], T], timeout: float = 20.0, interval: float = 0.2, what: str = "") -> T:
    """Call ``fn`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or fn}")
        time.sleep(interval)


def unique_name() -> str:
    return f"hx{uuid.uuid4().hex[:10]}"


def script(name: str, body: str, *directives: str) -> str:
    extra = "".join(f"#SBATCH {d}\n" for d in directives)
    return f"#!/bin/bash\n#SBATCH -J {name}\n#SBATCH -t 2\n#SBATCH -o /dev/null\n{extra}{body}\n"


def submit_raw(api: httpx.Client, text: str, **extra: str) -> str:
    """POST a job, wait for its task and return the Slurm id."""
    r = api.post(f"/compute/jobs/{MACHINE}", data={"job": text, "isPath": "false", **extra})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "OK"
    result = wait_task(api, r.json()["task_id"])
    assert result["status"] == "ok", result
    return str(result["jobid"])


def wait_task(api: httpx.Client, task_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """Poll a task until it reports; assert it completed and return its parsed result."""

    def done() -> dict[str, Any] | None:
        task = api.get(f"/tasks/{task_id}").json()
        return task if task["status"] != "new" else None

    task = poll(done, timeout, 0.05, what=f"task {task_id}")
    assert task["status"] == "completed", task
    result: dict[str, Any] = json.loads(task["result"])
    return result


def run_command(api: httpx.Client, line: str) -> dict[str, Any]:
    """Run a command line through the command utility; its parsed task result."""
    r = api.post(f"/utilities/command/{MACHINE}", data={"executable": line})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["status"] == "OK" and answer["error"] is None, answer
    assert isinstance(answer["task_id"], str) and answer["task_id"]
    return wait_task(api, answer["task_id"])


def query(api: httpx.Client, sacct: bool, *kwargs: str) -> list[dict[str, str]]:
    params: list[tuple[str, str]] = [("sacct", str(sacct).lower()), ("cached", "false")]
    params += [("kwargs", k) for k in kwargs]
    r = api.get(f"/compute/jobs/{MACHINE}", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "OK", body
    rows: list[dict[str, str]] = body["output"]
    return rows


def admin(gw: SFAPIGateway, **knobs: Any) -> dict[str, Any]:
    r = httpx.post(gw.base_url + "/_admin/knobs", json=knobs, timeout=5)
    assert r.status_code == 200, r.text
    state: dict[str, Any] = r.json()
    return state
