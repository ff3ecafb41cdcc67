"""The S3M binding through Harvester's side, over ``responses``: options checked when the
plugin is built, an expired token stops the queue in the throttler and makes submit answer
with the expiry date without a request, and the monitor's one list per cycle."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import responses

from harvester_edge.edge import health, limits, watch
from harvester_edge.edge.lifecycle import TAG, attr
from harvester_edge.errors import EdgeConfigError
from harvester_edge.facilities import registry
from harvester_edge.facilities.s3m import S3MClient
from harvester_edge.harvester import WorkSpec
from harvester_edge.plugins import throttler
from harvester_edge.plugins.s3m import S3MBinding, S3MMonitor, S3MSubmitter, S3MSweeper
from harvester_edge.plugins.throttler import EdgeThrottler

from .test_s3m_client import TOKEN, ctld, db, introspection, iso

API = "https://s3m.test"
PREFIX = f"{API}/slurm/open/v0.0.43/defiant"
QUEUE = "OLCF_Defiant_edge"


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def reset() -> None:
        registry.forget_clients()
        health.GATE.forget()
        limits.LIMITS.forget()
        watch.WATCH.forget()

    reset()
    monkeypatch.setattr(throttler, "_bindings", {})
    yield
    reset()


@pytest.fixture()
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture()
def conf(tmp_path: Path) -> dict[str, Any]:
    token = tmp_path / "defiant.token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    return {
        "queueName": QUEUE, "siteName": QUEUE, "resource": "defiant", "apiUrl": API,
        "token": f"file:{token}", "profile": "generic", "account": "abc123",
        "partition": "batch", "nNode": 1, "walltimeSeconds": 3600,
        "remoteWorkDir": "/lustre/orion/abc123/scratch/edge/${harvesterID}/${workerID}",
        "accessPoint": str(tmp_path / "ap" / "${workerID}"), "retryBackoff": 0.01,
        "retryAttempts": 2, "callDeadline": 5, "connectTimeout": 1, "readTimeout": 1,
    }  # fmt: skip


def workspec(worker_id: int, tmp_path: Path) -> WorkSpec:
    ws = WorkSpec()
    ws.workerID = worker_id
    ws.computingSite = QUEUE
    ws.queueName = QUEUE
    ws.mapType = WorkSpec.MT_NoJob
    ws.nCore = 1
    ws.minRamCount = 2000
    ws.maxWalltime = 3600
    ws.accessPoint = str(tmp_path / "ap" / str(worker_id))
    return ws


def status(rsps, downtimes: list | None = None) -> None:
    rsps.get(
        f"{API}/olcf/v1alpha/status",
        json={
            "resources": [
                {"name": "defiant", "status": "OPERATIONAL", "upcomingDowntimes": downtimes or []}
            ]
        },
    )


def count(rsps, pattern: str) -> int:
    return sum(1 for c in rsps.calls if re.search(pattern, c.request.url))


# ------------------------------------------------------------------ options
@pytest.mark.parametrize(
    "change, key",
    [
        ({"token": TOKEN}, "token"),  # inline: refused, and never shown
        ({"token": None}, "token"),
        ({"resource": ""}, "resource"),
        ({"apiVersion": "v0.0.43", "submitForm": "jobs"}, "submitForm"),
        ({"apiVersion": "v0.0.40"}, "apiVersion"),
        ({"authHeader": "Basic"}, "authHeader"),
        ({"pathPrefix": "/slurm/{enclave}/{version}/{resource}"}, "pathPrefix"),
    ],
)
def test_bad_options_fail_when_the_plugin_is_built(conf, change, key) -> None:
    conf.update(change)
    for cls in (S3MSubmitter, S3MMonitor, S3MSweeper):
        with pytest.raises(EdgeConfigError) as info:
            cls(**conf)
        assert f"'{key}'" in str(info.value) and cls.__name__ in str(info.value)
        assert TOKEN not in str(info.value)


def test_the_client_key_holds_everything_that_shapes_the_client(conf) -> None:
    one = S3MBinding(conf, "t")
    assert one.client_key() == S3MBinding(dict(conf), "t").client_key()
    hash(one.client_key())
    for change in ({"apiVersion": "v0.0.44"}, {"retryAttempts": 5}, {"authHeader": "bearer"},
                   {"pathPrefix": "/slurm/{version}/{resource}"}, {"resource": "odo"}):  # fmt: skip
        assert S3MBinding({**conf, **change}, "t").client_key() != one.client_key()
    client = one.client()
    assert isinstance(client, S3MClient) and client is one.client()
    assert client.sender._session is None  # built without I/O
    assert TOKEN not in repr(one.client_key()) and TOKEN not in repr(one.options)


def test_v0044_jobs_form_is_accepted(conf) -> None:
    S3MSubmitter(**{**conf, "apiVersion": "v0.0.44", "submitForm": "jobs"})


# ------------------------------------------------------------------ the expired token
def test_an_expired_token_throttles_and_submit_sends_nothing(conf, rsps, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    planned = time.time() - 86400
    status(rsps)
    intro = introspection(rsps, planned)
    submit_route = rsps.post(f"{PREFIX}/job/submit", json={"job_id": 1})
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(planned))
    section = {"module": "harvester_edge.plugins.s3m", "name": "S3MSubmitter", **conf}
    queue = SimpleNamespace(queueName=QUEUE, submitter=section, walltimeLimit=3600)
    flag, reason = EdgeThrottler(queueName=QUEUE).to_be_throttled(queue)
    assert flag is True and f"expired {when}" in reason and reason.startswith("s3m: credential")
    sub = S3MSubmitter(**conf)
    answers = sub.submit_workers([workspec(i, tmp_path) for i in (1, 2, 3)])
    assert all(not ok and f"expired {when}" in diag for ok, diag in answers), answers
    assert submit_route.call_count == 0 and intro.call_count == 1
    assert TOKEN not in caplog.text


def test_a_token_expiring_within_the_margin_throttles_with_the_date(conf, rsps) -> None:
    planned = time.time() + 1800  # inside credentialMarginSeconds (3600), outside the token's
    status(rsps)
    introspection(rsps, planned)
    section = {"module": "harvester_edge.plugins.s3m", "name": "S3MSubmitter", **conf}
    queue = SimpleNamespace(queueName=QUEUE, submitter=section, walltimeLimit=3600)
    flag, reason = EdgeThrottler(queueName=QUEUE).to_be_throttled(queue)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(planned))
    assert flag is True and f"expires {when}" in reason


def test_a_downtime_within_the_walltime_throttles(conf, rsps) -> None:
    now = time.time()
    status(rsps, [{"resourceName": "defiant", "status": "UNAVAILABLE", "start": iso(now + 1800),
                   "end": iso(now + 7200), "description": "Lustre upgrade"}])  # fmt: skip
    introspection(rsps, now + 30 * 86400)
    section = {"module": "harvester_edge.plugins.s3m", "name": "S3MSubmitter", **conf}
    queue = SimpleNamespace(queueName=QUEUE, submitter=section, walltimeLimit=3600)
    flag, reason = EdgeThrottler(queueName=QUEUE).to_be_throttled(queue)
    assert flag is True and "Lustre upgrade" in reason
    queue.walltimeLimit = 600
    health.GATE.forget()
    assert EdgeThrottler(queueName=QUEUE).to_be_throttled(queue) == (False, "")


# ------------------------------------------------------------------ a cycle end to end
def test_submit_monitor_kill_with_one_list_per_monitor_cycle(conf, rsps, tmp_path) -> None:
    status(rsps)
    introspection(rsps, time.time() + 30 * 86400)
    ids = iter(range(500, 600))
    rsps.add_callback(
        responses.POST, f"{PREFIX}/job/submit",
        callback=lambda r: (200, {}, f'{{"job_id": {next(ids)}, "errors": []}}'),
    )  # fmt: skip
    sub = S3MSubmitter(**conf)
    workers = [workspec(i, tmp_path) for i in range(1, 6)]
    answers = sub.submit_workers(workers)
    assert all(ok for ok, _ in answers), answers
    for ws in workers:
        ws.status = WorkSpec.ST_submitted
    jobs = [ctld(int(ws.batchID), "RUNNING", name=attr(ws, TAG)) for ws in workers]
    jobs[0] = dict(jobs[0], job_state=["COMPLETED"])
    rsps.get(f"{PREFIX}/jobs", json={"jobs": jobs})
    rsps.get(f"{PREFIX}/job/{workers[0].batchID}", json={"jobs": [
        db(int(workers[0].batchID), "FAILED", rc=64, name=jobs[0]["name"])]})  # fmt: skip
    mon = S3MMonitor(**conf)
    ok, statuses = mon.check_workers(workers)
    assert ok and [s for s, _ in statuses] == [WorkSpec.ST_failed] + [WorkSpec.ST_running] * 4
    assert "cvmfs" in statuses[0][1].lower()  # exit 64: the wrapper's CVMFS code
    assert workers[0].errorCode == 2064 and "exit 64" in workers[0].errorDiag
    assert S3MClient.capabilities.files is False  # Slurm's own record: no pilot summary read
    assert count(rsps, r"/jobs$") == 1 and count(rsps, r"/job/\d+$") == 1
    rsps.add_callback(
        responses.DELETE, re.compile(rf"{re.escape(PREFIX)}/job/\d+$"),
        callback=lambda r: (200, {}, '{"errors": [], "warnings": []}'),
    )  # fmt: skip
    ended = [dict(j, job_state=["CANCELLED"]) for j in jobs[1:]]
    rsps.replace(responses.GET, f"{PREFIX}/jobs", json={"jobs": ended})
    for j in ended:
        rsps.get(f"{PREFIX}/job/{j['job_id']}",
                 json={"jobs": [db(j["job_id"], "CANCELLED", name=j["name"])]})  # fmt: skip
    swp = S3MSweeper(**conf)
    killed = swp.kill_workers(workers[1:])
    assert all(ok for ok, _ in killed), killed
    assert sum(1 for c in rsps.calls if c.request.method == "DELETE") == 4


# ------------------------------------------------------------------ the shipped example
def test_the_example_s3m_queue_loads_like_harvester(monkeypatch) -> None:
    import json
    import socket

    from harvester_edge.queue_config import build_plugin, plugin_section

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a plugin constructor opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    example = Path(__file__).resolve().parents[2] / "etc" / "panda_queueconfig.example.json"
    queue = json.loads(example.read_text())["OLCF_Defiant_edge"]
    for section, cls in (("submitter", S3MSubmitter), ("monitor", S3MMonitor),
                         ("sweeper", S3MSweeper)):  # fmt: skip
        conf = {**plugin_section("OLCF_Defiant_edge", queue, section), "dbInterface": object()}
        plugin = build_plugin(conf)
        assert isinstance(plugin, cls) and plugin.queueName == "OLCF_Defiant_edge"
        opts = plugin.edge_options
        assert opts.resource == "defiant" and opts.token is not None
        assert opts.token.source == "file /opt/harvester/etc/s3m/defiant.token"
    assert queue["throttler"]["module"] == "harvester_edge.plugins.throttler"
    assert queue["messenger"]["accessPoint"] == queue["common"]["accessPoint"]
