"""Globus Compute client parts: the rate bucket, the shell functions' wire, credentials,
options, and the request rules (retries off, registration once, submit never resent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from globus_compute_sdk.sdk.shell_function import ShellFunction

from harvester_edge.config import Secret
from harvester_edge.edge.spec import JobSpec
from harvester_edge.errors import EdgeAPIError, EdgeAuthError, EdgeConfigError
from harvester_edge.facilities import gc_functions, gc_http
from harvester_edge.facilities import gc_wire as wire
from harvester_edge.facilities.gc_auth import GCCredential, GCCredentialSettings
from harvester_edge.facilities.gc_http import RateBucket
from harvester_edge.facilities.globus_compute import GCClient
from harvester_edge.plugins.globus_compute import GCMonitor, GCSubmitter, settings_of
from harvester_edge.testing import FakeFacility
from harvester_edge.testing_gc import GCDouble

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


# the rate bucket --------------------------------------------------------------------------
def test_bucket_keeps_the_window_and_never_waits_past_the_deadline() -> None:
    clock = Clock()
    bucket = RateBucket(3, 10.0, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        bucket.acquire(0)
    with pytest.raises(EdgeAPIError) as info:
        bucket.acquire(1.0)  # the next slot is 10 s away
    assert info.value.status == 429 and info.value.transient
    assert clock.t == 100.0  # refused at once, no wait past the deadline
    bucket.acquire(15.0)  # waits for the slot
    assert clock.t == pytest.approx(110.0)
    assert bucket.granted == 4 and bucket.peak == 3


def test_a_429_holds_the_bucket_for_its_retry_after() -> None:
    clock = Clock()
    bucket = RateBucket(18, 10.0, clock=clock, sleep=clock.sleep)
    bucket.hold(5.0)
    with pytest.raises(EdgeAPIError):
        bucket.acquire(1.0)
    bucket.acquire(6.0)
    assert clock.t == pytest.approx(105.0)


def test_one_bucket_per_credential() -> None:
    gc_http.forget_buckets()
    a = gc_http.bucket_for(("globus-client", "x"), 18, 10.0)
    assert gc_http.bucket_for(("globus-client", "x"), 18, 10.0) is a
    assert gc_http.bucket_for(("globus-client", "y"), 18, 10.0) is not a


# the wire ---------------------------------------------------------------------------------
HOSTILE = "#!/bin/bash\necho '{x}' {0} $(touch /tmp/pwned) `id` \"; rm -rf /\n{{}}\n"


def test_values_travel_as_base64_never_in_the_command() -> None:
    kwargs = wire.sbatch_kwargs(HOSTILE, "/work/{dir} ; x")
    fn = ShellFunction(wire.SBATCH)
    cmd = fn.cmd.format(**kwargs)  # what the SDK runs: no KeyError, no value spliced in
    assert "touch" not in cmd and "rm -rf" not in cmd and "{dir}" not in cmd
    assert all(set(v) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
               for v in kwargs.values())  # fmt: skip
    for template in (wire.PROBE, wire.SCANCEL, wire.PILOT):
        ShellFunction(template).cmd.format(
            **{**wire.probe_kwargs(["1"], ["t"], ["/a"], "/m"), **wire.pilot_kwargs(
                HOSTILE, "/w", "tag-1", "/m"), **wire.scancel_kwargs(["1"])}
        )  # fmt: skip


def test_the_pilot_command_records_its_job_and_return_code(tmp_path: Path, monkeypatch) -> None:
    """Task mode's pilot: ``$SLURM_JOB_ID`` first, the script's return code last."""
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("GC_TASK_SANDBOX_DIR", str(tmp_path / "sandbox"))
    marks = tmp_path / "marks"
    result = ShellFunction(wire.PILOT)(
        **wire.pilot_kwargs(
            "#!/bin/bash\necho '{brace}'\nexit 3\n", str(tmp_path), "tag-9", str(marks)
        )  # fmt: skip
    )
    assert result.returncode == 3, result
    assert (marks / "tag-9.job").read_text().strip() == "4242"
    assert (marks / "tag-9.rc").read_text().strip() == "3"


def test_hostile_ids_tags_and_paths_are_refused() -> None:
    for bad in (["1; rm -rf /"], ["$(id)"], ["1 2"]):
        with pytest.raises(EdgeAPIError):
            wire.check_ids(bad)
    with pytest.raises(EdgeAPIError):
        wire.check_tags(["a b"])
    with pytest.raises(EdgeAPIError):
        wire.probe_kwargs([], [], ["relative/path"], "")
    with pytest.raises(EdgeAPIError):
        wire.pilot_kwargs("x", "/w", "../../etc", "/m")


def test_sbatch_answer() -> None:
    assert wire.parse_sbatch("123\n") == "123"
    assert wire.parse_sbatch("warning: x\n123;perlmutter\n") == "123"
    assert wire.parse_sbatch("sbatch: error: nope") is None


def test_probe_output_read() -> None:
    text = "\n".join([
        "Q|10|hedge-a|RUNNING|None|nid001",
        "Q|11|odd|name|PENDING|Priority|",
        "A|12|hedge-b|COMPLETED|0:0|nid002",
        "A|12.batch|batch|COMPLETED|0:0|nid002",
        f"F|{wire.b64('/w/s.json')}|{wire.b64('{}')}",
        f"N|{wire.b64('/w/none.json')}",
        "M|hedge-c|13|0",
        "M|hedge-d|14|",
        "END",
    ])  # fmt: skip
    answer = wire.parse_probe(text)
    assert answer.live["10"].name == "hedge-a" and answer.live["11"].name == "odd|name"
    assert answer.accounting["12"].confirmed_final and answer.accounting["12"].exit_code == 0
    assert answer.files == {"/w/s.json": "{}", "/w/none.json": None}
    assert answer.markers == {"hedge-c": ("13", 0), "hedge-d": ("14", None)}
    assert answer.record("12") is answer.accounting["12"]
    with pytest.raises(EdgeAPIError) as info:
        wire.parse_probe("Q|1|a|RUNNING||\n")  # cut short
    assert info.value.transient
    with pytest.raises(EdgeAPIError):
        wire.parse_probe("E|squeue|1|slurm_load_jobs error\nEND\n")
    no_db = wire.parse_probe("Q|1|a|RUNNING||\nE|sacct|1|Unable to connect to database\nEND\n")
    assert no_db.live["1"].name == "a"
    with pytest.raises(EdgeAPIError) as info:  # "could not ask" is not "seen nowhere"
        no_db.check_accounting()
    assert info.value.transient and "database" in str(info.value)


# credentials and options ------------------------------------------------------------------
def _options(tmp_path: Path, **extra):
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-value-xyz\n")
    os.chmod(secret, 0o600)
    conf = {"queueName": "Q", "endpointId": "2a2b1e6c-5f3d-4c1a-9f0e-6d1c2b3a4f5e",
            "clientId": "cid", "clientSecretFile": str(secret)}  # fmt: skip
    conf.update(extra)
    return conf


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"endpointId": "not-a-uuid"}, "endpointId"),
        ({"mode": "pilot"}, "mode"),
        ({"mode": "task"}, "markerDir"),
        ({"serviceUrl": "ftp://x"}, "serviceUrl"),
        ({"clientSecret": "inline-secret"}, "clientSecret"),
        ({"rateLimitRequests": 50}, "rateLimitRequests"),
        ({"userEndpointConfig": "provider=local"}, "userEndpointConfig"),
    ],
)
def test_bad_options_name_their_key(tmp_path: Path, extra, key) -> None:
    with pytest.raises(EdgeConfigError) as info:
        GCSubmitter(**_options(tmp_path, **extra))
    assert key in str(info.value)
    assert "inline-secret" not in str(info.value)


def test_no_credential_at_all_is_a_config_error(monkeypatch) -> None:
    monkeypatch.delenv("GLOBUS_COMPUTE_CLIENT_ID", raising=False)
    monkeypatch.delenv("GLOBUS_COMPUTE_CLIENT_SECRET", raising=False)
    with pytest.raises(EdgeConfigError) as info:
        GCMonitor(queueName="Q", endpointId="2a2b1e6c-5f3d-4c1a-9f0e-6d1c2b3a4f5e")
    assert "clientId" in str(info.value)


def test_the_sdk_environment_variables_are_read(monkeypatch) -> None:
    monkeypatch.setenv("GLOBUS_COMPUTE_CLIENT_ID", "env-client")
    monkeypatch.setenv("GLOBUS_COMPUTE_CLIENT_SECRET", "env-secret-value")
    mon = GCMonitor(queueName="Q", endpointId="2a2b1e6c-5f3d-4c1a-9f0e-6d1c2b3a4f5e")
    settings = settings_of(mon.edge_options)  # type: ignore[arg-type]
    assert settings.credential.client_id == "env-client"
    assert "env-secret-value" not in repr(settings)


def test_a_secret_file_others_may_read_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-value-xyz\n")
    os.chmod(secret, 0o644)
    cred = GCCredential(GCCredentialSettings("https://auth.invalid", "cid",
                                             Secret(f"file:{secret}")))  # fmt: skip
    facts = cred.facts()
    assert facts.problem and "chmod 600" in facts.problem
    with pytest.raises(EdgeAuthError) as info:
        cred.auth().headers()
    assert "s3cr3t" not in str(info.value) and "s3cr3t" not in repr(cred)
    assert facts.identity == "cid@clients.auth.globus.org" and facts.expires_at is None


# requests ---------------------------------------------------------------------------------
@pytest.fixture
def double(tmp_path: Path):
    gc_functions.forget_functions()
    gc_http.forget_buckets()
    fake = FakeFacility(profile="tasks")
    with GCDouble(fake) as gc:
        gc.secret_path = gc.write_secret(tmp_path / "gc.secret")  # type: ignore[attr-defined]
        yield gc


def _client(gc: GCDouble, **extra) -> GCClient:
    conf = {**gc.options(), "queueName": "Q", "clientSecretFile": str(gc.secret_path),  # type: ignore[attr-defined]
            "retryBackoff": 0.01, **extra}  # fmt: skip
    return GCClient(settings_of(GCMonitor(**conf).edge_options))  # type: ignore[arg-type]


def _spec(tag: str) -> JobSpec:
    return JobSpec(tag=tag, script=f"#!/bin/bash\n#SBATCH --job-name={tag}\ntrue\n",
                   work_dir="/w", nodes=1, walltime_s=60)  # fmt: skip


def test_sdk_retries_are_off_on_every_client(double: GCDouble) -> None:
    client = _client(double)
    service = client.batches.service
    assert service.v2.retry_config.max_retries == 0
    assert service.v3.retry_config.max_retries == 0
    client.health()  # the token is fetched through the auth client, itself without retries
    authorizer = client.credential_.auth().authorizer._real  # type: ignore[attr-defined]
    assert authorizer.confidential_client.retry_config.max_retries == 0


def test_a_5xx_submit_is_sent_once_and_raised_as_maybe_sent(double: GCDouble) -> None:
    client = _client(double, retryAttempts=5)
    double.facility.script("submit", "created_then_502")
    with pytest.raises(EdgeAPIError) as info:
        client.submit(_spec("hedge-x-Q-w1"))
    assert info.value.status == 502 and info.value.transient
    assert double.calls["submit"] == 1
    assert len(double.facility.tasks) == 1  # the job exists: the caller looks the tag up


def test_a_429_submit_backs_off_and_is_sent_again(double: GCDouble) -> None:
    client = _client(double, retryAttempts=3)
    double.facility.script("submit", "busy_429")
    receipt = client.submit(_spec("hedge-x-Q-w2"))
    assert receipt.handle and double.calls["submit"] == 2


def test_functions_are_registered_once_per_content(double: GCDouble) -> None:
    first, second = _client(double), _client(double, readTimeout=7)
    for client in (first, second, first):
        client.submit(_spec("hedge-x-Q-w3"))
    assert double.calls["register"] == 1


# the MEP template in etc/ -------------------------------------------------------------------
@pytest.mark.parametrize("provider", ["local", "slurm"])
def test_the_mep_template_renders_the_keys_we_send(provider: str) -> None:
    jinja2 = pytest.importorskip("jinja2")
    yaml = pytest.importorskip("yaml")
    text = (ROOT / "etc" / "globus_compute" / "user_config_template.yaml.j2").read_text()
    values = {
        "provider": provider, "account": "m1234", "partition": "regular", "qos": "debug",
        "walltime": "00:30:00", "nodes_per_block": 2,
        "scheduler_options": "#SBATCH --constraint=gpu", "worker_init": "module load x",
    }  # fmt: skip
    config = yaml.safe_load(jinja2.Template(text).render(**values))
    provider_conf = config["engine"]["provider"]
    if provider == "slurm":
        assert provider_conf["type"] == "SlurmProvider"
        assert provider_conf["account"] == "m1234" and provider_conf["nodes_per_block"] == 2
        assert "--constraint=gpu" in provider_conf["scheduler_options"]
    else:
        assert provider_conf["type"] == "LocalProvider"
    assert "module load x" in provider_conf["worker_init"]
    env = yaml.safe_load((ROOT / "etc" / "globus_compute" / "user_environment.yaml").read_text())
    assert set(values) <= set(env["schema"]["properties"])


def test_the_probe_reads_log_ends_with_tail(tmp_path: Path, monkeypatch) -> None:
    """The batch logs' ends ride in the probe: ``tail -c N`` per path on the login node,
    a missing file said so, a hostile path read as a path (never run)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("squeue", "sacct"):
        (bin_dir / tool).write_text("#!/bin/bash\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("GC_TASK_SANDBOX_DIR", str(tmp_path / "sandbox"))
    log = tmp_path / "job.out"
    log.write_text("x" * 5000 + "the end\n")
    hostile = tmp_path / "$(touch pwned) {x}.out"
    hostile.write_text("short\n")
    missing = str(tmp_path / "none.out")
    summary = tmp_path / "summary.json"
    summary.write_text("{}")
    kwargs = wire.probe_kwargs(
        [], [], [str(summary)], "", [str(log), str(hostile), missing], 100
    )  # fmt: skip
    result = ShellFunction(wire.PROBE, snippet_lines=wire.SNIPPET_LINES)(**kwargs)
    answer = wire.parse_probe(result.stdout)
    assert answer.tails[str(log)] == ("x" * 92 + "the end\n")
    assert answer.tails[str(hostile)] == "short\n"
    assert answer.tails[missing] is None
    assert answer.files == {str(summary): "{}"}
    assert not list(tmp_path.rglob("pwned")) and not Path("pwned").exists()
    with pytest.raises(EdgeAPIError, match="tail bytes"):
        wire.probe_kwargs([], [], [], "", [str(log)], 0)


@pytest.mark.parametrize("prefetch", [False, True])
def test_summaries_and_log_ends_ride_in_one_probe(double: GCDouble, prefetch: bool) -> None:
    """The monitor asks a cycle's summaries and batch-log ends together: ONE probe task (one
    submit request), read by one status request, answers both; the ends cut to size."""
    client = _client(double, statusShareSeconds=0, prefetchProbes=prefetch)
    fake = double.facility
    fake.files["/w/a/summary.json"] = "{}"
    fake.files["/w/a.out"] = "x" * 3000 + "end\n"
    ask = (["/w/a/summary.json", "/w/b/summary.json"], ["/w/a.out", "/w/b.out"], 1024)
    if prefetch:  # first asked: rides with the next status probe, none of its own yet
        assert client.read_texts_and_tails(*ask) == ({}, {})
        assert double.calls["submit"] == 0
    submits = double.calls["submit"]
    assert client.read_texts_and_tails(*ask) == ({}, {})  # the probe started: Deferred
    assert double.calls["submit"] == submits + 1
    texts, ends = client.read_texts_and_tails(*ask)
    assert texts == {"/w/a/summary.json": "{}", "/w/b/summary.json": None}
    assert ends["/w/b.out"] is None and len(ends["/w/a.out"]) == 1024
    assert ends["/w/a.out"].endswith("end\n")
    assert double.calls["submit"] == submits + 1
    assert fake.requests["read"] == 1 and fake.requests["tail"] == 1


def test_the_pilot_task_writes_its_output_to_the_batch_log(tmp_path: Path, monkeypatch) -> None:
    """Task mode: the script's output goes where the monitor's batch-log copy looks."""
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("GC_TASK_SANDBOX_DIR", str(tmp_path / "sandbox"))
    out = tmp_path / "hedge-t.out"
    kwargs = wire.pilot_kwargs(
        "#!/bin/bash\necho to-the-log\necho err >&2\n", str(tmp_path), "hedge-t",
        str(tmp_path / "marks"), str(out),
    )  # fmt: skip
    result = ShellFunction(wire.PILOT)(**kwargs)
    assert result.returncode == 0, result
    assert out.read_text() == "to-the-log\nerr\n"
    with pytest.raises(EdgeAPIError, match="batch log path"):
        wire.pilot_kwargs("x", "/w", "hedge-t", "/m", "relative.out")


def test_task_mode_forgets_a_pilot_task_an_hour_after_its_worker_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-running Harvester holds its live workers' pilot tasks only: an hour after a
    worker's final answer its tag, task id and status are gone; live ones stay."""
    from harvester_edge.edge import lifecycle
    from harvester_edge.facilities import registry
    from harvester_edge.harvester import WorkSpec

    from ..conformance._helpers import drive, only_job, submit, tag_of
    from ..conformance.conftest import GCTaskFamily

    registry.forget_clients()
    gc_functions.forget_functions()
    gc_http.forget_buckets()
    family = GCTaskFamily(tmp_path)
    try:
        family.reconfigure()
        sub, mon, _ = family.plugins()
        ended, live = family.workspec(1), family.workspec(2)
        submit(sub, [ended, live])
        drive(mon, [ended, live])
        family.facility.finish(only_job(family.facility, ended).job_id)
        ((status, diag), _) = drive(mon, [ended, live])
        assert status == WorkSpec.ST_finished, diag
        client = mon._edge.client()
        assert isinstance(client, GCClient) and len(client._pilot_tasks) == 2
        clock = lifecycle.now()
        monkeypatch.setattr(lifecycle, "now", lambda: clock + 3500)
        drive(mon, [live])
        assert len(client._pilot_tasks) == 2  # within the hour: Harvester may ask again
        monkeypatch.setattr(lifecycle, "now", lambda: clock + 3700)
        ((status, diag),) = drive(mon, [live])
        assert status == WorkSpec.ST_submitted, diag
        assert list(client._pilot_tasks) == [tag_of(live)]
        task = client._pilot_tasks[tag_of(live)]
        assert client._tag_of_task == {task: tag_of(live)}
        assert not set(client._statuses) - {task} - set(client._probes)
    finally:
        family.close()
        registry.forget_clients()
