"""The command line, the queue-config checker and the config rules for secrets.

- ``check-config`` loads a queue config the way stock Harvester's QueueConfigMapper does
  (templates, ``common`` merged into plugin sections, mandatory sections, module/name
  import) and builds every harvester-edge plugin like PluginFactory, with no network I/O.
- The shipped example configs pass it; broken ones name queue, section and key.
- Importing the package prints no warning; secrets are never echoed.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harvester_edge import cli, queue_config
from harvester_edge.config import Secret, convert, parse_config
from harvester_edge.errors import EdgeAuthError, EdgeConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "etc").glob("*.json"))
EXAMPLE = ROOT / "etc" / "panda_queueconfig.example.json"
QUEUE = "NERSC_Perlmutter_GPU_edge"
STOCK_PLACEHOLDERS = {"${harvesterID}", "${workerID}", "${queueName}"}


def example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text())


def check_config(tmp_path: Path, config: Any, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "queues.json"
    path.write_text(json.dumps(config))
    rc = cli.main(["check-config", str(path)])
    out = capsys.readouterr().out
    return rc, out.splitlines()


def errors(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("ERROR")]


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("network I/O while checking a config")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# ------------------------------------------------------------------ the example config
def test_example_messenger_carries_the_access_point_stock_reads() -> None:
    queue = example()[QUEUE]
    messenger = queue["messenger"]
    assert "accessPointBase" not in messenger
    access_point = messenger["accessPoint"]
    assert access_point.startswith("/") and "${workerID}" in access_point
    # the harvester-edge sweeper reads the same template from common (its own option)
    assert queue["common"]["accessPoint"] == access_point


def test_example_remote_work_dir_is_absolute_without_environment_variables() -> None:
    remote = example()[QUEUE]["submitter"]["remoteWorkDir"]
    assert remote.startswith("/")
    assert set(re.findall(r"\$\{?\w+\}?", remote)) <= STOCK_PLACEHOLDERS


def test_example_has_the_edge_throttler() -> None:
    assert example()[QUEUE]["throttler"] == {
        "module": "harvester_edge.plugins.throttler",
        "name": "EdgeThrottler",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_shipped_example_passes_check_config(
    path: Path, no_network: None, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = cli.main(["check-config", str(path)])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0, "\n".join(lines)
    assert not errors(lines)
    for queue_name, queue in json.loads(path.read_text()).items():
        for section, conf in queue.items():
            if isinstance(conf, dict) and "module" in conf:
                assert any(line.startswith(f"ok     {queue_name}.{section}:") for line in lines)


def test_examples_are_found() -> None:
    assert EXAMPLE in EXAMPLES


# ------------------------------------------------------------------ broken configs
def test_missing_messenger_access_point(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = example()
    del config[QUEUE]["messenger"]["accessPoint"]
    del config[QUEUE]["common"]["accessPoint"]  # common reaches the messenger too
    config[QUEUE]["messenger"]["accessPointBase"] = "/var/lib/harvester/${workerID}"
    rc, lines = check_config(tmp_path, config, capsys)
    assert rc == 2
    assert any(f"{QUEUE}.messenger.accessPoint" in line for line in errors(lines))


def test_access_point_in_common_does_not_replace_the_messenger_key(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # common fills only plugin sections (stock merges it before the messenger is read,
    # so common's accessPoint does reach the messenger section): this one is fine ...
    config = example()
    del config[QUEUE]["messenger"]["accessPoint"]
    rc, lines = check_config(tmp_path, config, capsys)
    assert not any(".messenger.accessPoint" in line for line in errors(lines))
    # ... but a messenger that is not a plugin section gets nothing from common
    config[QUEUE]["messenger"] = {"accessPoint": "/x/${workerID}"}
    rc, lines = check_config(tmp_path, config, capsys)
    assert rc == 2
    assert any(f"{QUEUE}.messenger" in line and "module" in line for line in errors(lines))


def test_access_point_disagreeing_with_the_messenger(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = example()
    config[QUEUE]["sweeper"]["accessPoint"] = "/somewhere/else/${workerID}"
    rc, lines = check_config(tmp_path, config, capsys)
    assert rc == 2
    assert any(f"{QUEUE}.sweeper.accessPoint" in line for line in errors(lines))


@pytest.mark.parametrize(
    "section,key,value",
    [
        ("monitor", "chunkSize", "lots"),
        ("submitter", "submitConcurrency", 0),
        ("sweeper", "apiUrl", "ftp://x"),
        ("submitter", "pilotsPerNode", -2),
    ],
)
def test_bad_plugin_option(
    tmp_path: Path, capsys: pytest.CaptureFixture, section: str, key: str, value: Any
) -> None:
    config = example()
    config[QUEUE][section][key] = value
    rc, lines = check_config(tmp_path, config, capsys)
    assert rc == 2
    assert any(line.startswith(f"ERROR  {QUEUE}.{section}.{key}:") for line in lines), lines


def test_bad_option_in_common_is_one_problem_named_where_it_is_set(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = example()
    config[QUEUE]["common"]["readTimeout"] = "soon"
    rc, lines = check_config(tmp_path, config, capsys)
    assert rc == 2
    assert [line for line in errors(lines) if "readTimeout" in line] == [
        f"ERROR  {QUEUE}.common.readTimeout: must be a number, got 'soon' (type float)"
    ]
    # the sections it reaches are not reported as built
    for section in ("submitter", "monitor", "sweeper"):
        assert not any(line.startswith(f"ok     {QUEUE}.{section}:") for line in lines)


@pytest.mark.parametrize(
    "section,module,name",
    [
        ("sweeper", "harvester_edge.plugins.nowhere", "SFAPISweeper"),
        ("sweeper", "harvester_edge.plugins.sfapi", "NoSuchSweeper"),
        ("stager", "pandaharvester.harvesterstager..dummy_stager", "DummyStager"),
        ("stager", "pandaharvester.harvesterstager.dummy_stager", "Dummy Stager"),
        ("stager", "no_such_package_anywhere.stager", "Stager"),
    ],
)
def test_unknown_module_or_class(
    tmp_path: Path, capsys: pytest.CaptureFixture, section: str, module: str, name: str
) -> None:
    config = example()
    config[QUEUE][section].update(module=module, name=name)
    rc, lines = check_config(tmp_path, config, capsys)
    assert rc == 2
    bad = errors(lines)
    key = "module" if "nowhere" in module or ".." in module or "no_such" in module else "name"
    assert any(line.startswith(f"ERROR  {QUEUE}.{section}.{key}:") for line in bad), lines
    assert any("drops the queue" in line for line in bad)


@pytest.mark.parametrize("section", ["messenger", "stager", "workerMaker", "sweeper"])
def test_missing_mandatory_section(
    tmp_path: Path, capsys: pytest.CaptureFixture, section: str
) -> None:
    config = example()
    del config[QUEUE][section]
    rc, lines = check_config(tmp_path, config, capsys)
    assert rc == 2
    assert any(line.startswith(f"ERROR  {QUEUE}.{section}:") for line in lines)


def test_queue_level_values(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = example()
    config[QUEUE].update(maxWorkers="80", mapType="OneToTwo", getJobCriteria="a=1,b")
    config[QUEUE]["messenger"]["worker_heartbeat"] = "often"
    rc, lines = check_config(tmp_path, config, capsys)
    assert rc == 2
    bad = errors(lines)
    for where in ("maxWorkers", "mapType", "getJobCriteria", "messenger.worker_heartbeat"):
        assert any(line.startswith(f"ERROR  {QUEUE}.{where}:") for line in bad), where


def test_invalid_json_and_non_object_queue(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    assert cli.main(["check-config", str(path)]) == 2
    assert "invalid JSON" in capsys.readouterr().out
    rc, lines = check_config(tmp_path, {"Q": ["not", "a", "queue"]}, capsys)
    assert rc == 2 and errors(lines)[0].startswith("ERROR  Q:")


def test_template_queue_is_merged_like_harvester(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    template = example()[QUEUE]
    queue = {
        "templateQueueName": "EDGE_TEMPLATE",
        "queueStatus": "online",
        "monitor": {"chunkSize": 50},  # updates the template's section, keeps module/name
    }
    config = {"EDGE_TEMPLATE": template, "NERSC_other": queue}
    rc, lines = check_config(tmp_path, config, capsys)
    assert rc == 0, lines
    assert "ok     NERSC_other.monitor: SFAPIMonitor" in lines
    queue["monitor"]["chunkSize"] = 0
    rc, lines = check_config(tmp_path, config, capsys)
    assert any(line.startswith("ERROR  NERSC_other.monitor.chunkSize:") for line in lines)
    queue["templateQueueName"] = "MISSING_TEMPLATE"
    rc, lines = check_config(tmp_path, config, capsys)
    assert rc == 2
    assert any(line.startswith("ERROR  NERSC_other.templateQueueName:") for line in lines), lines


# ------------------------------------------------------------------ queue_config: stock's rules
def test_plugin_section_merges_common_like_queue_config_mapper() -> None:
    queue = {
        "common": {"machine": "perlmutter", "chunkSize": 100, "name": "Other"},
        "monitor": {"module": "m.mod", "name": "Mon", "chunkSize": 50},
        "submitter": {"module": "s.mod", "name": "Sub", "siteName": "OWN", "queueName": "OWN_Q"},
        "messenger": {"accessPoint": "/ap"},  # no module/name: not a plugin section
    }
    before = copy.deepcopy(queue)
    monitor = queue_config.plugin_section("SITE/SCORE", queue, "monitor")
    # the section's own keys win (its name too); queueName whole, siteName before the /
    assert monitor == {
        "module": "m.mod", "name": "Mon", "chunkSize": 50, "machine": "perlmutter",
        "siteName": "SITE", "queueName": "SITE/SCORE",
    }  # fmt: skip
    submitter = queue_config.plugin_section("SITE/SCORE", queue, "submitter")
    assert (submitter["siteName"], submitter["queueName"]) == ("OWN", "OWN_Q")
    assert [name for name, _ in queue_config.plugin_sections("Q", queue)] == [
        "monitor",
        "submitter",
    ]
    monitor["machine"] = "changed"
    assert queue == before  # a new dict each time, the queue untouched
    with pytest.raises(ValueError, match="messenger"):
        queue_config.plugin_section("Q", queue, "messenger")


def test_plugin_section_ignores_a_common_that_is_not_an_object() -> None:
    queue = {"common": ["machine"], "monitor": {"module": "m", "name": "Mon"}}
    conf = queue_config.plugin_section("Q", queue, "monitor")
    assert conf == {"module": "m", "name": "Mon", "siteName": "Q", "queueName": "Q"}


def test_merged_queue_updates_template_sections_key_by_key() -> None:
    config = {
        "EDGE_TEMPLATE": {
            "common": {"a": 1, "b": 1},
            "monitor": {"module": "m", "name": "Mon", "x": 1},
            "maxWorkers": 5,
            "getJobCriteria": "a=1",
        },
        "Q": {
            "templateQueueName": "EDGE_TEMPLATE",
            "common": {"b": 2},
            "monitor": {"x": 2},
            "getJobCriteria": "b=2",
        },
    }
    queue = queue_config.merged_queue(config, "Q")
    assert queue["common"] == {"a": 1, "b": 2}
    assert queue["monitor"] == {"module": "m", "name": "Mon", "x": 2}
    assert (queue["maxWorkers"], queue["getJobCriteria"]) == (5, "b=2")
    assert config["EDGE_TEMPLATE"]["common"] == {"a": 1, "b": 1}  # the template is copied
    assert queue_config.plugin_section("Q", queue, "monitor")["b"] == 2


def test_queue_credmanagers_get_no_common_but_placeholders(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []

    class Recorder:
        def __init__(self, **kwargs: Any) -> None:
            seen.append(kwargs)

    monkeypatch.setattr("harvester_edge.plugins.sfapi.RecordingCred", Recorder, raising=False)
    config = example()
    config[QUEUE]["credmanagers"] = [
        {
            "module": "harvester_edge.plugins.sfapi",
            "name": "RecordingCred",
            "outDir": "/creds/${queueName}/${common.machine}",
        },
        {"module": "harvester_edge.plugins.sfapi"},
    ]
    rc, lines = check_config(tmp_path, config, capsys)
    assert rc == 2
    assert f"ok     {QUEUE}.credmanagers[0]: RecordingCred" in lines
    assert any(line.startswith(f"ERROR  {QUEUE}.credmanagers[1].name:") for line in lines)
    (kwargs,) = seen
    assert kwargs["setup_name"] == kwargs["queueName"] == QUEUE
    assert kwargs["outDir"] == f"/creds/{QUEUE}/perlmutter"
    assert "machine" not in kwargs  # stock does not merge common into credmanagers


def test_constructor_network_io_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harvester_edge.plugins import sfapi

    original = sfapi.SFAPIMonitor.__init__

    def connecting_init(self: Any, **kwargs: Any) -> None:
        original(self, **kwargs)
        socket.create_connection(("192.0.2.1", 443), timeout=0.01)

    monkeypatch.setattr(sfapi.SFAPIMonitor, "__init__", connecting_init)
    rc, lines = check_config(tmp_path, example(), capsys)
    assert rc == 2
    assert any(line.startswith(f"ERROR  {QUEUE}.monitor:") and "network" in line for line in lines)


def test_render_still_merges_common(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["render", str(EXAMPLE), QUEUE, "--worker-id", "7"]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#!") and "#SBATCH" in script


# ------------------------------------------------------------------ gateway options
def test_gateway_options_reach_the_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[list[str]] = []

    def fake_main(argv: list[str] | None = None) -> int:
        received.append(list(argv or []))
        return 0

    monkeypatch.setattr("harvester_edge.localsite.sfapi_gateway.main", fake_main)
    key = str(tmp_path / "key.pem")
    argv = ["--key-file", key, "--port", "0", "--file-root", "/a", "--file-root=/b"]
    assert cli.main(["gateway", *argv]) == 0
    assert cli.main(["gateway", "--help"]) == 0
    assert cli.main(["gateway"]) == 0
    assert received == [argv, ["--help"], []]


def test_unknown_options_of_other_commands_are_still_refused(
    capsys: pytest.CaptureFixture,
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["check-config", str(EXAMPLE), "--key-file", "x"])
    assert exc.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


# ------------------------------------------------------------------ import warnings
def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    return env


def test_importing_the_package_prints_no_warning() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-W",
            "error::Warning",
            "-c",
            "import harvester_edge.plugins.sfapi, harvester_edge.cli",
        ],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


QUIET_PROBE = """
import warnings
from harvester_edge import _quiet
warnings.resetwarnings()
warnings.simplefilter("error")
if {quiet}:
    with _quiet.quiet_imports():
        import authlib.integrations.httpx_client
else:
    import authlib.integrations.httpx_client
# only that one warning is silenced: others still raise
from authlib.deprecate import AuthlibDeprecationWarning
try:
    warnings.warn(AuthlibDeprecationWarning("something else is deprecated"))
except AuthlibDeprecationWarning:
    print("other warnings still raise")
"""


def test_quiet_imports_silences_exactly_the_authlib_httpx_warning() -> None:
    run = [sys.executable, "-c"]
    quiet = subprocess.run(
        [*run, QUIET_PROBE.format(quiet=True)], capture_output=True, text=True, env=_clean_env()
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == "other warnings still raise"
    loud = subprocess.run(
        [*run, QUIET_PROBE.format(quiet=False)], capture_output=True, text=True, env=_clean_env()
    )
    assert loud.returncode != 0 and "httpx2" in loud.stderr


# ------------------------------------------------------------------ secrets
TOKEN = "hunter2-very-secret-token-value"


def test_secret_reference_is_kept_not_read(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "token"
    secret = convert("apiToken", f"file:{path}", Secret)  # the file does not exist yet
    assert isinstance(secret, Secret)
    path.write_text(TOKEN + "\n")
    assert secret.reveal() == TOKEN
    path.write_text("rotated\n")
    assert secret.reveal() == "rotated"  # read when needed: a renewed token is picked up
    monkeypatch.setenv("EDGE_TEST_TOKEN", TOKEN)
    from_env = convert("apiToken", "env:EDGE_TEST_TOKEN", Secret)
    assert from_env.reveal() == TOKEN
    assert TOKEN not in repr(secret) + str(secret) + repr(from_env) + f"{from_env}"
    assert repr(secret) == "Secret('***')"
    assert convert("apiToken", secret, Secret) is secret


def test_secret_reveal_errors_name_the_reference_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("EDGE_TEST_UNSET", raising=False)
    with pytest.raises(EdgeAuthError, match="EDGE_TEST_UNSET"):
        convert("apiToken", "env:EDGE_TEST_UNSET", Secret).reveal()
    with pytest.raises(EdgeAuthError, match="missing"):
        convert("apiToken", f"file:{tmp_path}/missing", Secret).reveal()


@pytest.mark.parametrize(
    "value", [TOKEN, f"file:relative/{TOKEN}", f"env:{TOKEN}-x", f"inline:{TOKEN}", 12345]
)
def test_inline_secret_is_refused_without_echo(value: Any) -> None:
    with pytest.raises(EdgeConfigError) as exc:
        convert("apiToken", value, Secret)
    message = str(exc.value)
    assert "apiToken" in message
    assert TOKEN not in message and "12345" not in message


@pytest.mark.parametrize(
    "key",
    ["token", "clientSecret", "password", "db_passwd", "credentials", "privateKey", "API_KEY"],
)
@pytest.mark.parametrize("kind", [int, float, bool, list[str], dict[str, Any]])
def test_secret_looking_keys_never_echo_values(key: str, kind: Any) -> None:
    with pytest.raises(EdgeConfigError) as exc:
        convert(key, TOKEN, kind)
    assert key in str(exc.value) and TOKEN not in str(exc.value)


def test_other_keys_still_show_the_bad_value() -> None:
    with pytest.raises(EdgeConfigError, match="'lots'"):
        convert("chunkSize", "lots", int)
    with pytest.raises(EdgeConfigError, match="'soon'"):
        convert("keyFile", "soon", int)  # a path, not a secret


def test_parsed_options_with_a_secret_do_not_show_it(monkeypatch) -> None:
    import dataclasses

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Options:
        apiToken: Secret
        backupToken: Secret | None = None
        machine: str = "perlmutter"

    monkeypatch.setenv("EDGE_TEST_TOKEN", TOKEN)
    options = parse_config(Options, {"apiToken": "env:EDGE_TEST_TOKEN"}, "Plugin")
    assert options.apiToken.reveal() == TOKEN and options.backupToken is None
    assert TOKEN not in repr(options) and "EDGE_TEST_TOKEN" not in repr(options)
    assert "Secret('***')" in repr(options)
    assert copy.deepcopy(options).apiToken.reveal() == TOKEN
    with pytest.raises(EdgeConfigError) as exc:
        parse_config(Options, {"apiToken": TOKEN}, "Plugin")
    assert "Plugin" in str(exc.value) and "apiToken" in str(exc.value)
    assert TOKEN not in str(exc.value)
    with pytest.raises(EdgeConfigError, match="required config key 'apiToken'"):
        parse_config(Options, {}, "Plugin")


def test_parse_config_scrubs_secret_values_from_post_init_messages() -> None:
    import dataclasses

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Options:
        clientSecret: str = ""

        def __post_init__(self) -> None:
            if len(self.clientSecret) < 64:
                raise EdgeConfigError(
                    f"config key 'clientSecret' is too short: {self.clientSecret!r}"
                )

    with pytest.raises(EdgeConfigError) as exc:
        parse_config(Options, {"clientSecret": TOKEN}, "Plugin")
    assert "clientSecret" in str(exc.value) and TOKEN not in str(exc.value)


def test_check_config_never_echoes_a_secret(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = example()
    config[QUEUE]["common"]["password"] = TOKEN  # unknown to the plugins: ignored, not shown
    config[QUEUE]["monitor"]["connectTimeout"] = {"password": TOKEN}
    config[QUEUE]["sweeper"]["apiToken"] = TOKEN
    # not a secret-looking key: its bad value is shown, unless it is a secret's value
    config[QUEUE]["submitter"]["retryAttempts"] = TOKEN
    rc, lines = check_config(tmp_path, config, capsys)
    assert rc == 2
    bad = errors(lines)
    assert any(f"{QUEUE}.monitor.connectTimeout" in line for line in bad)
    assert any(f"{QUEUE}.submitter.retryAttempts" in line and "'***'" in line for line in bad)
    assert not any(TOKEN in line for line in lines)
    config[QUEUE]["submitter"]["retryAttempts"] = "lots"
    rc, lines = check_config(tmp_path, config, capsys)
    assert any(f"{QUEUE}.submitter.retryAttempts" in line and "'lots'" in line for line in lines)


# ------------------------------------------------------------------ repository hygiene
def test_no_stray_slurm_output_in_the_repository() -> None:
    assert not list(ROOT.glob("slurm-*.out"))
    assert "slurm-*.out" in (ROOT / ".gitignore").read_text().splitlines()
