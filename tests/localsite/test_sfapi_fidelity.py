"""Fidelity of the loopback SFAPI gateway to the real service and to sfapi_client 0.6.

Task ids across restarts, the command utility, task cancel, account look-ups, array and
heterogeneous job ids, symbolic links in the file utilities, outages of unknown machines,
an unavailable machine, the ``error_after_submit`` knob, and the official client's own
methods end to end.
"""

from __future__ import annotations

import io
import json
import os
import pwd
import subprocess
import uuid
import warnings
from pathlib import Path
from typing import Any

import authlib.deprecate  # noqa: F401 (installs its warning filter now, see below)
import httpx
import pytest

from harvester_edge.localsite.faults import Knobs
from harvester_edge.localsite.sfapi_gateway import SFAPIGateway
from harvester_edge.localsite.slurm import LocalSlurm
from harvester_edge.localsite.tasks import TaskStore

from ._helpers import (
    MACHINE,
    admin,
    poll,
    query,
    run_command,
    script,
    submit_raw,
    unique_name,
    wait_task,
)

# authlib (imported by sfapi_client) warns on import that it falls back to httpx, and its
# deprecate module (imported above, so its "always" filter is already in place) would show
# it: silence exactly that notice for the import.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from sfapi_client import Client, SfApiError


def real_cat(cwd: Path, *args: str) -> tuple[int, str, str]:
    """What the real cat prints for these arguments (the reference for the utility)."""
    proc = subprocess.run(
        ["cat", *args], cwd=cwd, capture_output=True, text=True, env={"LC_ALL": "C"}
    )
    return proc.returncode, proc.stdout, proc.stderr


def real_scancel(slurm: LocalSlurm, *ids: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        ["scancel", *ids],
        capture_output=True,
        text=True,
        env={**os.environ, "SLURM_CONF": slurm.slurm_conf or ""},
    )
    return proc.returncode, proc.stdout, proc.stderr


def as_result(code: int, out: str, err: str) -> dict[str, Any]:
    """The task result the utility must give for a command's exit status and streams."""
    if code == 0:
        return {"status": "ok", "output": out + err, "error": None, "exit_code": 0}
    return {"status": "error", "output": out, "error": err, "exit_code": code}


# ---------------------------------------------------------------------- task ids
def test_task_ids_unique_across_stores() -> None:
    stores = [TaskStore(1), TaskStore(1)]
    try:
        ids = [s.create("me", "noop", dict, 0).id for s in stores for _ in range(3)]
    finally:
        for store in stores:
            store.shutdown()
    assert len(set(ids)) == len(ids)
    assert all(i.isdigit() for i in ids) and ids == sorted(ids, key=int)


def test_task_ids_unique_across_gateway_restarts(
    client_key: tuple[Path, str, str], site_dir: Path
) -> None:
    (site_dir / "f.txt").write_text("x\n")
    seen: list[str] = []

    def tasks_on(gw: SFAPIGateway, n: int) -> None:
        with Client(key=client_key[0], api_base_url=gw.api_url, token_url=gw.token_url) as c:
            for old in seen:  # an id of an earlier run is unknown, never another task
                with pytest.raises(httpx.HTTPStatusError) as err:
                    c.get(f"tasks/{old}")
                assert err.value.response.status_code == 404
            for _ in range(n):
                r = c.post(f"utilities/command/{MACHINE}", data={"executable": "cat f.txt"})
                seen.append(str(r.json()["task_id"]))

    gw = SFAPIGateway(workdir=site_dir, file_roots=[site_dir])
    gw.register_client(client_key[1], client_key[2])
    for _ in range(2):  # stop() then start() again: a restart of the same gateway
        with gw:
            tasks_on(gw, 2)
    other = SFAPIGateway(workdir=site_dir, file_roots=[site_dir])  # a new gateway
    other.register_client(client_key[1], client_key[2])
    with other:
        tasks_on(other, 1)
    assert len(set(seen)) == len(seen) == 5


# ---------------------------------------------------------------------- command utility
def test_command_cat_wire_format_and_real_cat_output(
    gateway: SFAPIGateway, api: httpx.Client, site_dir: Path
) -> None:
    (site_dir / "a.txt").write_text("alpha\n")
    (site_dir / "b c.txt").write_text("beta\n")
    (site_dir / "sub").mkdir()
    gateway.reset_counters()

    r = api.post(f"/utilities/command/{MACHINE}", data={"executable": "cat a.txt"})
    assert r.status_code == 200
    answer = r.json()
    assert set(answer) == {"task_id", "status", "error"}
    assert answer["status"] == "OK" and answer["error"] is None
    task = poll(
        lambda: (t := api.get(f"/tasks/{answer['task_id']}").json())["status"] != "new" and t
    )
    assert task["status"] == "completed" and isinstance(task["result"], str)
    assert json.loads(task["result"]) == {
        "status": "ok",
        "output": "alpha\n",
        "error": None,
        "exit_code": 0,
    }

    # Missing files: cat's own message on stderr, exit 1, the other files still printed.
    for line, args in (
        ("cat a.txt nope.txt 'b c.txt'", ("a.txt", "nope.txt", "b c.txt")),
        (f"cat {site_dir}/gone 'no such' sub", (f"{site_dir}/gone", "no such", "sub")),
    ):
        expected = as_result(*real_cat(site_dir, *args))
        assert expected["exit_code"] == 1
        assert run_command(api, line) == expected
    result = run_command(api, "cat a.txt nope.txt")
    assert result["output"] == "alpha\n"
    assert result["error"] == "cat: nope.txt: No such file or directory\n"
    assert gateway.counters["command"] == 4


REFUSED_LINES = (
    "rm -rf /",
    "bash -c id",
    "sh",
    "echo hi; id",
    "/bin/cat a.txt",
    "cat /etc/passwd",
    "cat ../outside.txt",
    "cat escape/passwd",
    "cat -n a.txt",
    "cat -- a.txt",
    "cat - ",
    "cat",
    "scancel",
    "scancel -u root",
    "scancel --me",
    "scancel 12;id",
    "scancel 12_[1-3]",
    "scancel 12.0",
    "scancel 12,13",
    "cat 'a.txt",
    "cat a.txt fifo",
    "cat /dev/zero",
    "",
)


def test_command_refuses_everything_else(
    gateway: SFAPIGateway, api: httpx.Client, site_dir: Path
) -> None:
    (site_dir / "a.txt").write_text("alpha\n")
    (site_dir / "escape").symlink_to("/etc")
    os.mkfifo(site_dir / "fifo")  # cat would block on it forever
    for line in REFUSED_LINES:
        result = run_command(api, line)
        assert result["status"] == "error" and result["exit_code"] is None, (line, result)
        assert result["error"] and result["output"] is None, line
    assert (site_dir / "a.txt").exists()


def test_command_runs_no_shell(gateway: SFAPIGateway, api: httpx.Client, site_dir: Path) -> None:
    (site_dir / "a.txt").write_text("alpha\n")
    # Shell syntax is just more file names for cat: nothing is piped, expanded or chained.
    marker = site_dir / "pwned"
    result = run_command(api, f"cat a.txt '|' touch {marker} '$(id)' '*'")
    assert result["exit_code"] == 1 and result["output"] == "alpha\n"
    assert result["error"].splitlines() == [
        "cat: '|': No such file or directory",
        "cat: touch: No such file or directory",
        f"cat: {marker}: No such file or directory",
        "cat: '$(id)': No such file or directory",
        "cat: '*': No such file or directory",
    ]
    assert not marker.exists()


def test_command_route_errors(gateway: SFAPIGateway, api: httpx.Client) -> None:
    r = api.post(f"/utilities/command/{MACHINE}", data={})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "executable"]
    r = api.post("/utilities/command/nosuchmachine", data={"executable": "cat x"})
    assert r.status_code == 404
    assert (
        httpx.post(f"{gateway.api_url}/utilities/command/{MACHINE}", timeout=5).status_code == 403
    )


@pytest.mark.slurm
def test_command_scancel_reports_what_real_scancel_prints(
    gateway: SFAPIGateway, api: httpx.Client, slurm: LocalSlurm
) -> None:
    jobid = submit_raw(api, script(unique_name(), "sleep 60"))
    # A component of a job that is not heterogeneous: scancel's error and exit status.
    failed = run_command(api, f"scancel {jobid}+0")
    assert failed["status"] == "error" and failed["exit_code"] not in (0, None)
    assert failed["output"] == ""
    assert failed["error"] == (
        f"scancel: error: Kill job error on job id {jobid}+0: Job not heterogeneous job\n"
    )
    assert run_command(api, f"scancel {jobid}") == {
        "status": "ok",
        "output": "",
        "error": None,
        "exit_code": 0,
    }

    def cancelled() -> bool:
        rows = query(api, True, f"jobid={jobid}")
        return bool(rows) and rows[0]["state"].startswith("CANCELLED")

    poll(cancelled, 15, 0.2, "cancelled in sacct")
    # Already ended, an array task of a plain job, a component, an unknown id: each
    # answered exactly as the real scancel answers it (22.05: mostly silent, exit 0).
    for ids in ([jobid], [f"{jobid}_1"], [f"{jobid}+0"], ["999999999"], [jobid, "999999999"]):
        expected = as_result(*real_scancel(slurm, *ids))
        assert run_command(api, "scancel " + " ".join(ids)) == expected, ids


# ---------------------------------------------------------------------- tasks
def test_delete_task(gateway: SFAPIGateway, api: httpx.Client, site_dir: Path) -> None:
    (site_dir / "a.txt").write_text("alpha\n")
    done = api.post(f"/utilities/command/{MACHINE}", data={"executable": "cat a.txt"}).json()
    wait_task(api, done["task_id"])
    gateway.knobs.task_delay = 30  # the next task stays "new" for the whole test
    pending = api.post(f"/utilities/command/{MACHINE}", data={"executable": "cat a.txt"}).json()
    gateway.reset_counters()

    r = api.delete(f"/tasks/{pending['task_id']}")
    assert r.status_code == 200
    cancelled = {"id": pending["task_id"], "status": "cancelled", "result": None}
    assert r.json() == cancelled
    assert api.get(f"/tasks/{pending['task_id']}").json() == cancelled
    # A task that already reported keeps its outcome.
    r = api.delete(f"/tasks/{done['task_id']}")
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert json.loads(r.json()["result"])["output"] == "alpha\n"
    assert api.delete("/tasks/123").status_code == 404
    assert api.delete(f"/tasks/{uuid.uuid4().hex}").status_code == 404
    assert gateway.counters["task_delete"] == 4


def test_sfapi_client_command_task_cancel(gateway: SFAPIGateway, sfapi: Any) -> None:
    gateway.knobs.task_delay = 30
    compute = sfapi.compute(MACHINE)
    task = compute.run_task("cat nothing")
    task.cancel()  # DELETE /tasks/{id}
    task.update()
    assert task.status.value == "CANCELLED" and task.result is None


# ---------------------------------------------------------------------- account
def test_account_username(gateway: SFAPIGateway, api: httpx.Client, sfapi: Any) -> None:
    me = pwd.getpwuid(os.getuid())
    other = next(e for e in pwd.getpwall() if e.pw_uid != me.pw_uid)
    assert api.get("/account/").json()["name"] == me.pw_name
    r = api.get("/account/", params={"username": other.pw_name})
    assert r.status_code == 200
    assert (r.json()["uid"], r.json()["name"]) == (other.pw_uid, other.pw_name)
    assert api.get("/account/", params={"username": "nosuchuser" + "x" * 8}).status_code == 404
    user = sfapi.user(other.pw_name)
    assert (user.uid, user.name) == (other.pw_uid, other.pw_name)


# ---------------------------------------------------------------------- status
def test_outages_and_notes_of_unknown_machines_are_404(gateway: SFAPIGateway) -> None:
    gateway.knobs.maintenance = True
    base = gateway.api_url + "/status"
    for route in ("/outages", "/outages/planned", "/notes", ""):
        assert httpx.get(f"{base}{route}/nosuch", timeout=5).status_code == 404, route
        assert httpx.get(f"{base}{route}/{MACHINE}", timeout=5).status_code == 200, route
    planned = httpx.get(f"{base}/outages/planned/{MACHINE}", timeout=5).json()
    assert [o["name"] for o in planned] == [MACHINE]


def test_unavailable_machine_refuses_compute(
    gateway: SFAPIGateway, api: httpx.Client, site_dir: Path
) -> None:
    (site_dir / "a.txt").write_text("alpha\n")
    admin(gateway, machine_status="unavailable", status_description="Scheduled maintenance")
    calls = [
        ("POST", f"/compute/jobs/{MACHINE}", {"job": script(unique_name(), "exit 0")}),
        ("GET", f"/compute/jobs/{MACHINE}", None),
        ("GET", f"/compute/jobs/{MACHINE}/12", None),
        ("DELETE", f"/compute/jobs/{MACHINE}/12", None),
        ("POST", f"/utilities/command/{MACHINE}", {"executable": "cat a.txt"}),
    ]
    for method, url, data in calls:
        r = api.request(method, url, data=data)
        assert r.status_code == 503, (method, url)
        body = r.json()
        assert body["status"] == "ERROR" and "unavailable" in body["error"], body
        assert "Scheduled maintenance" in body["error"]
    assert gateway.jobs_created == [] and api.get("/tasks").json()["tasks"] == []
    # Status routes still answer (that is how a client learns of the outage).
    assert api.get(f"/status/{MACHINE}").json()["status"] == "unavailable"

    admin(gateway, machine_status="degraded")
    assert run_command(api, "cat a.txt")["output"] == "alpha\n"


# ---------------------------------------------------------------------- job ids
def het_script(name: str, body: str) -> str:
    head = f"#!/bin/bash\n#SBATCH -J {name}\n#SBATCH -t 2\n#SBATCH -o /dev/null\n"
    return head + f"#SBATCH hetjob\n#SBATCH -t 2\n{body}\n"


@pytest.mark.slurm
def test_array_and_het_job_ids(gateway: SFAPIGateway, api: httpx.Client, sfapi: Any) -> None:
    arr = submit_raw(api, script(unique_name(), "sleep 30", "-a 1-2"))
    het = submit_raw(api, het_script(unique_name(), "sleep 30"))

    rows = query(api, False, f"jobid={arr}_1,{het}+1")
    # A pending array may still be listed as one row "N_[1-2]"; components are separate.
    assert any(r["jobid"].startswith(f"{arr}_") for r in rows), rows
    assert f"{het}+1" in {r["jobid"] for r in rows}, rows
    for jobid in (f"{arr}_2", f"{het}+0"):
        r = api.get(f"/compute/jobs/{MACHINE}/{jobid}", params={"sacct": "false"})
        assert r.status_code == 200 and r.json()["status"] == "OK", r.text
        assert r.json()["output"], jobid
    assert f"{het}+0" in {j.jobid for j in sfapi.compute(MACHINE).jobs(jobids=[f"{het}+0"])}

    r = api.delete(f"/compute/jobs/{MACHINE}/{arr}_1")
    assert r.status_code == 200
    assert wait_task(api, r.json()["task_id"]) == {"status": "ok", "error": None}
    r = api.delete(f"/compute/jobs/{MACHINE}/{het}+1")  # the real scancel refuses this
    result = wait_task(api, r.json()["task_id"])
    assert result["status"] == "error"
    assert "Operation not permitted on individual component" in result["error"]

    for bad in ("1_[1-3]", "1.0", "1_", "1+", "1_2_3", "1 2", "-1", "1,2"):
        if "," not in bad:  # a list is fine in kwargs, not as one job's id
            r = api.get(f"/compute/jobs/{MACHINE}", params={"kwargs": f"jobid=3,{bad}"})
            assert r.status_code == 400, bad
        assert api.get(f"/compute/jobs/{MACHINE}/{bad}").status_code == 400, bad
        assert api.delete(f"/compute/jobs/{MACHINE}/{bad}").status_code == 400, bad


# ---------------------------------------------------------------------- files and links
def test_ls_reports_symlinks_as_links(
    gateway: SFAPIGateway, api: httpx.Client, sfapi: Any, site_dir: Path
) -> None:
    (site_dir / "data.txt").write_text("payload\n")
    (site_dir / "sub").mkdir()
    (site_dir / "to-file").symlink_to("data.txt")
    (site_dir / "to-dir").symlink_to(site_dir / "sub")
    (site_dir / "dangling").symlink_to("not-there-yet")
    (site_dir / "out").symlink_to("/etc/hostname")

    for name, target in (
        ("to-file", "data.txt"),
        ("to-dir", str(site_dir / "sub")),
        ("dangling", "not-there-yet"),
    ):
        body = api.get(f"/utilities/ls/{MACHINE}/{site_dir}/{name}").json()
        assert body["status"] == "OK", body
        [entry] = body["entries"]
        assert entry["perms"].startswith("l"), entry
        assert entry["name"] == f"{site_dir}/{name} -> {target}"
        assert entry["size"] == len(target)  # the link's own size, not its target's
    # A trailing slash follows the link, like ls -l dir/.
    listed = api.get(f"/utilities/ls/{MACHINE}/{site_dir}/to-dir/").json()["entries"]
    assert [e["name"] for e in listed][:2] == [".", ".."]
    # Confinement still applies to where the link leads.
    r = api.get(f"/utilities/ls/{MACHINE}/{site_dir}/out")
    assert r.status_code == 403 and r.json()["status"] == "ERROR"

    compute = sfapi.compute(MACHINE)
    [link] = compute.ls(f"{site_dir}/to-file")
    assert link.is_symlink() and not link.is_file()
    [as_dir] = compute.ls(f"{site_dir}/to-dir")
    assert as_dir.is_symlink() and not as_dir.is_dir()
    # Downloading through a link inside the roots reads its target, like cat.
    assert link.download().read() == "payload\n"


def test_upload_never_writes_through_symlinks(
    gateway: SFAPIGateway, api: httpx.Client, site_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside-target.txt"  # not under the gateway's roots
    (site_dir / "dangling-out").symlink_to(outside)
    (site_dir / "data.txt").write_text("original\n")
    (site_dir / "to-data").symlink_to("data.txt")
    (site_dir / "dangling-in").symlink_to("new.txt")
    (site_dir / "to-site").symlink_to(site_dir)
    files = {"file": ("dangling-out", b"evil", "application/octet-stream")}

    for name in ("dangling-out", "to-data", "dangling-in", "to-site"):
        r = api.put(f"/utilities/upload/{MACHINE}/{site_dir}/{name}", files=files)
        assert r.status_code == 403, name
        assert r.json()["status"] == "ERROR" and "symbolic link" in r.json()["error"]
    # Onto a directory: the file name given by the client must not be a link either.
    r = api.put(f"/utilities/upload/{MACHINE}/{site_dir}", files=files)
    assert r.status_code == 403
    assert not outside.exists() and not (site_dir / "new.txt").exists()
    assert (site_dir / "data.txt").read_text() == "original\n"

    # Plain files are still written, and overwritten in place.
    good = {"file": ("fresh.txt", b"fresh", "text/plain")}
    assert api.put(f"/utilities/upload/{MACHINE}/{site_dir}", files=good).json()["status"] == "OK"
    r = api.put(f"/utilities/upload/{MACHINE}/{site_dir}/data.txt", files=good)
    assert r.json()["status"] == "OK"
    assert (site_dir / "fresh.txt").read_bytes() == (site_dir / "data.txt").read_bytes() == b"fresh"


# ---------------------------------------------------------------------- error_after_submit
def test_error_after_submit_knob_is_validated_seeded_and_separate() -> None:
    knobs = Knobs(seed=3)
    with pytest.raises(ValueError):
        knobs.error_after_submit = 1.5
    assert knobs.draw_after_submit() is None  # off by default
    knobs.update(error_after_submit=0.5, error_rate=0.5, seed=11)
    first = [knobs.draw_after_submit() for _ in range(40)]
    errors = [knobs.draw_error("/p", "/p", False) for _ in range(20)]
    knobs.seed = 11
    assert [knobs.draw_after_submit() for _ in range(40)] == first
    assert None in first and set(first) - {None} <= {500, 502, 503, 504}
    assert len(set(first) - {None}) >= 2
    knobs.seed = 11  # the error_rate sequence does not depend on error_after_submit draws
    assert [knobs.draw_error("/p", "/p", False) for _ in range(20)] == errors
    assert "error_after_submit" in Knobs.names() and knobs.snapshot()["error_after_submit"] == 0.5


@pytest.mark.slurm
def test_error_after_submit_answers_5xx_once_the_job_exists(
    gateway: SFAPIGateway, api: httpx.Client
) -> None:
    admin(gateway, error_after_submit=1.0, seed=5)
    name = unique_name()
    r = api.post(f"/compute/jobs/{MACHINE}", data={"job": script(name, "sleep 20")})
    assert r.status_code in (500, 502, 503, 504) and "task_id" not in r.json()
    assert len(gateway.jobs_created) == 1  # created before the error was answered
    assert [row["jobid"] for row in query(api, False, f"name={name}")] == gateway.jobs_created
    [task] = api.get("/tasks").json()["tasks"]
    assert json.loads(task["result"])["jobid"] == gateway.jobs_created[0]
    # Refused submits (bad input) create nothing and are not turned into a 5xx.
    assert api.post(f"/compute/jobs/{MACHINE}", data={}).status_code == 400
    admin(gateway, error_after_submit=0)
    assert api.post(f"/compute/jobs/{MACHINE}", data={"job": script(name, "exit 0")}).is_success


# ---------------------------------------------------------------------- sfapi_client itself
@pytest.mark.slurm
def test_sfapi_client_methods_end_to_end(gateway: SFAPIGateway, sfapi: Any, site_dir: Path) -> None:
    """The official client's own methods against the gateway (what real users call)."""
    compute = sfapi.compute(MACHINE)
    name = unique_name()
    job = compute.submit_job(script(name, "sleep 60"))
    assert job.jobid in gateway.jobs_created
    [listed] = compute.jobs(jobids=[job.jobid])
    assert listed.jobid == job.jobid and listed.name == name
    job.cancel()

    def cancelled() -> bool:
        rows = compute.jobs(jobids=[job.jobid], command="sacct")
        return bool(rows) and rows[0].state.value == "CANCELLED"

    poll(cancelled, 15, 0.3, "cancelled in sacct")

    # Files: upload into a directory and onto a new path, list, download.
    [folder] = compute.ls(str(site_dir), directory=True)
    assert folder.is_dir()
    upload = io.BytesIO(b"line one\nline two\n")
    upload.filename = "notes.txt"  # type: ignore[attr-defined]
    folder.upload(upload)
    created = folder.__class__(path=f"{site_dir}/new.bin", compute=compute)
    created.upload(io.BytesIO(b"\x00\x01binary"))
    assert (site_dir / "new.bin").read_bytes() == b"\x00\x01binary"
    names = {p.name for p in compute.ls(str(site_dir))}
    assert {"notes.txt", "new.bin"} <= names
    [notes] = compute.ls(f"{site_dir}/notes.txt")
    assert notes.is_file() and notes.download().read() == "line one\nline two\n"
    [binary] = compute.ls(f"{site_dir}/new.bin")
    assert binary.download(binary=True).read() == b"\x00\x01binary"

    # The command utility through Compute.run().
    assert compute.run(f"cat {site_dir}/notes.txt") == "line one\nline two\n"
    assert compute.run(["cat", "notes.txt", "new.bin"]).startswith("line one\n")
    with pytest.raises(SfApiError, match="No such file or directory"):
        compute.run("cat notes.txt missing.txt")
    with pytest.raises(SfApiError, match="not allowed"):
        compute.run("rm notes.txt")
    assert (site_dir / "notes.txt").exists()
    assert compute.run(f"scancel {job.jobid}") == ""  # ended: real scancel is silent
