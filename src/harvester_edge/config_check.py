"""``harvester-edge check``: a queue config (and our panda_harvester.cfg sections) against the
one schema the plugins read (``plugins/schema.py``), then every plugin built like Harvester.

Offline (the default) nothing is sent anywhere: one line per problem naming queue, section and
key (unknown keys with the nearest known one, wrong types, missing required keys, plugins
that cannot be imported or built, templates that cannot be read, a messenger without
``accessPoint``), exit 2 when there is any.  ``--online`` asks each queue's facility for its
status and makes one authenticated request; ``--render`` prints what a worker's submit would
send; ``--submit-test`` submits one short worker (a script that starts no pilot) and follows it
to its end through the queue's own plugins.
"""

from __future__ import annotations

import configparser
import copy
import difflib
import importlib
import json
import os
import posixpath
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ._quiet import quiet_imports
from .cli import Checker
from .config import convert, is_secret_key
from .credentials.harvester_cfg import _substitute as substitute_env
from .edge import tags
from .edge.batch import BatchConfig, WorkerInfo
from .edge.spec import JobSpec, build_job_spec
from .errors import EdgeAPIError, EdgeConfigError
from .facilities.base import FacilityClient
from .harvester import WorkSpec, harvester_id
from .plugins.schema import plugin_keys, type_name
from .queue_config import build_plugin, merged_queue, plugin_section, plugin_sections

FINAL = ("finished", "failed", "cancelled", "missed")
#: worker ids of submit tests: far above Harvester's sequence, so no tag meets a real worker's
SUBMIT_TEST_ID_BASE = 900_000_000
#: the submit test's batch job: the queue's own directives, no pilot
SUBMIT_TEST_TEMPLATE = """#!/bin/bash
#SBATCH --job-name={jobName}
{sbatchDirectives!raw}
# harvester-edge check --submit-test: worker {workerID} of queue {pandaQueueName}; no pilot
echo "harvester-edge submit test: worker {workerID} on $(hostname) at $(date -u +%FT%TZ)"
"""


def _plugin_class(conf: Mapping[str, Any]) -> type | None:
    """The class a plugin section names, None when it cannot be imported (reported elsewhere)."""
    try:
        with quiet_imports():
            module = importlib.import_module(str(conf["module"]))
    except Exception:
        return None
    cls = getattr(module, str(conf["name"]), None)
    return cls if isinstance(cls, type) else None


def _nearest(key: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


class EdgeChecker(Checker):
    """The stock rules of ``cli.Checker`` plus the schema: keys, types, template files."""

    def __init__(self) -> None:
        super().__init__()
        #: (queue, key) the schema already reported: a build failing on it adds no line
        self.keyed: set[tuple[str, str]] = set()
        self._building = False
        self.secrets: dict[str, Any] = {}

    def error(
        self, queue: str, section: str | None, key: str | None, message: str, conf: Any = None
    ) -> None:
        if key and self._building and (queue, key) in self.keyed:
            self.bad.add(".".join(p for p in (queue, section) if p))
            return
        if key:  # a required key missing from common fails each section's build: one line
            self.keyed.add((queue, key))
        super().error(queue, section, key, message, conf)

    def build(self, queue: str, section: str, conf: dict[str, Any]) -> bool:
        self._building = True
        try:
            return super().build(queue, section, conf)
        finally:
            self._building = False

    def check_queue(self, name: str, queue: dict[str, Any]) -> None:
        self.check_keys(name, queue)
        super().check_queue(name, queue)

    # -- the schema
    def check_keys(self, name: str, queue: Mapping[str, Any]) -> None:
        """Unknown keys and wrong types of our sections and of ``common``; template files."""
        known_by: dict[str, dict[str, Any]] = {}
        self.secrets = _secret_values(queue)
        for section, conf in plugin_sections(name, queue):
            if not str(conf["module"]).startswith("harvester_edge."):
                continue
            cls = _plugin_class(conf)
            keys = plugin_keys(cls) if cls is not None else None
            if keys is None:
                continue
            known_by[section] = keys
            for key, value in queue[section].items():
                if key not in keys:
                    self.error(
                        name, section, key,
                        f"unknown key: {cls.__name__ if cls else 'the plugin'} does not read "
                        f"it{_nearest(key, keys)}",
                    )  # fmt: skip
                else:
                    self.check_type(name, section, key, value, keys[key])
            self.check_template(name, section, conf, queue)
        common = queue.get("common")
        if not isinstance(common, dict) or not known_by:
            return
        for key, value in common.items():
            kinds = [keys[key] for keys in known_by.values() if key in keys]
            if not kinds:
                merged: dict[str, Any] = {}
                for keys in known_by.values():
                    merged.update(keys)
                self.error(
                    name, "common", key,
                    "unknown key: no harvester-edge plugin of this queue reads it"
                    + _nearest(key, merged),
                )  # fmt: skip
            else:
                self.check_type(name, "common", key, value, kinds[0])

    def check_type(self, queue: str, section: str, key: str, value: Any, kind: Any) -> None:
        if value is None:
            return
        try:
            convert(key, value, kind)
        except EdgeConfigError as exc:
            text = re.sub(rf"^config key '{re.escape(key)}' ", "", str(exc))
            masked = {**self.secrets, key: value}
            self.error(queue, section, key, f"{text} (type {type_name(kind)})", masked)

    def check_template(
        self, queue: str, section: str, conf: Mapping[str, Any], raw: Mapping[str, Any]
    ) -> None:
        template = conf.get("templateFile")
        if not isinstance(template, str) or not template:
            return
        where = section if "templateFile" in raw.get(section, {}) else "common"
        path = Path(template)
        if not path.is_absolute():
            self.error(queue, where, "templateFile", f"must be an absolute path: {template!r}")
        elif not path.is_file():
            self.error(queue, where, "templateFile", f"no such file on this host: {template}")
        elif not os.access(path, os.R_OK):
            self.error(queue, where, "templateFile", f"not readable by this user: {template}")

    # -- panda_harvester.cfg
    def check_harvester_cfg(self, path: str) -> None:
        """The ``[credmanager]`` section as Harvester's config loader and cred_manager agent
        read it: parallel lists, multi-line JSON ``pluginConfigs``, ``$VAR`` expansion, then
        every plugin imported and (ours) built."""
        parser = configparser.ConfigParser()  # as LiveConfigParser: % interpolation on
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        label = f"{Path(path).name}[credmanager]"
        try:
            with open(path, encoding="utf-8") as handle:
                parser.read_file(handle)
            section = (
                dict(parser.items("credmanager")) if parser.has_section("credmanager") else None
            )
        except OSError as exc:
            self.error(path, None, None, f"cannot read ({exc.strerror})")
            return
        except configparser.Error as exc:
            self.error(path, None, None, f"not an INI file Harvester can read: {exc}")
            return
        if section is None:
            self.lines.append(f"note   {path}: no [credmanager] section")
            return
        self.check_cred_lists(label, section)
        raw = section.get("pluginConfigs")
        if raw is None:
            return
        if "\n" not in raw.strip():
            self.error(
                label, None, "pluginConfigs",
                "must span several lines: Harvester decodes JSON only from a multi-line value "
                "(a one-line list stays a string and the agent skips it)",
            )  # fmt: skip
            return
        try:
            configs = json.loads(raw)
        except json.JSONDecodeError as exc:
            self.error(label, None, "pluginConfigs", f"invalid JSON: {exc}")
            return
        if not isinstance(configs, list):
            self.error(label, None, "pluginConfigs", "must be a JSON list of plugin entries")
            return
        for i, entry in enumerate(configs):
            self.check_cred_entry(label, i, entry)

    def check_cred_lists(self, label: str, section: Mapping[str, str]) -> None:
        names = ("moduleName", "className", "inCertFile", "outCertFile", "voms")
        lists = {
            k: [x.strip() for x in section[k].split("\n") if x.strip()]
            for k in names
            if k in section
        }
        if not lists:
            return
        sizes = {k: len(v) for k, v in lists.items()}
        if len(set(sizes.values())) > 1:
            self.error(
                label, None, None,
                f"moduleName, className, inCertFile, outCertFile and voms are zipped: lengths "
                f"differ ({sizes}); the agent builds only the shortest",
            )  # fmt: skip
        for i, (module, name) in enumerate(
            zip(lists.get("moduleName", []), lists.get("className", []), strict=False)
        ):
            conf = {"module": module, "name": name}
            for key in ("inCertFile", "outCertFile", "voms"):
                if i < len(lists.get(key, [])):
                    conf[key] = lists[key][i]
            self.check_plugin(label, f"moduleName[{i}]", conf)

    def check_cred_entry(self, label: str, i: int, entry: Any) -> None:
        where = f"pluginConfigs[{i}]"
        if not isinstance(entry, dict):
            self.error(label, where, None, "must be an object with module, name and configs")
            return
        missing = [k for k in ("module", "name", "configs") if k not in entry]
        for key in missing:
            self.error(label, where, key, "missing (the credmanager agent skips the entry)")
        if missing:
            return
        setups = entry["configs"]
        if not isinstance(setups, dict) or not setups:
            self.error(label, where, "configs", "must be an object of named setups")
            return
        for setup, values in setups.items():
            if not isinstance(values, dict):
                self.error(label, f"{where}.{setup}", None, "must be an object of keys")
                continue
            expanded = copy.deepcopy(values)
            try:  # what the agent gets: every string holding "$" replaced whole by a variable
                substitute_env(expanded)
            except KeyError as exc:
                self.error(
                    label, f"{where}.{setup}", None,
                    f"{exc.args[0]} Harvester's config loader stops there (KeyError)",
                )  # fmt: skip
                continue
            conf = {"module": entry["module"], "name": entry["name"], "setup_name": setup}
            conf.update(expanded)
            self.check_plugin(label, f"{where}.{setup}", conf)


def _secret_values(queue: Mapping[str, Any]) -> dict[str, Any]:
    """Every value of a secret-looking key anywhere in the queue, for ``redact``: a wrong
    value that is a secret's is never echoed, whichever key it was put under."""
    found: dict[str, Any] = {}
    for part in queue.values():
        if isinstance(part, Mapping):
            for key, value in part.items():
                if is_secret_key(key):
                    found[f"{key}#{len(found)}"] = value
    return found


# ------------------------------------------------------------------ the queue's own plugins
def edge_queues(config: Mapping[str, Any], only: str | None) -> list[str]:
    """Queues whose submitter is ours (``only``: that one, whatever it is)."""
    if only is not None:
        return [only]
    found = []
    for name, raw in config.items():
        if not isinstance(raw, dict) or raw.get("isTemplateQueue") or name.endswith("_TEMPLATE"):
            continue
        submitter = merged_queue(config, name).get("submitter")
        if isinstance(submitter, dict) and str(submitter.get("module", "")).startswith(
            "harvester_edge."
        ):
            found.append(name)
    return found


def _worker(queue: Mapping[str, Any], name: str, worker_id: int) -> WorkSpec:
    ws = WorkSpec()
    ws.workerID, ws.computingSite, ws.mapType = worker_id, name, WorkSpec.MT_NoJob
    ws.nCore, ws.maxWalltime, ws.status = 1, 600, WorkSpec.ST_pending
    ws.accessPoint = str((queue.get("messenger") or {}).get("accessPoint") or "")
    return ws


def _sample_spec(config: Mapping[str, Any], name: str, worker_id: int = 1) -> JobSpec:
    """The job a worker of queue ``name`` would get."""
    queue = merged_queue(config, name)
    cfg = BatchConfig.from_config(plugin_section(name, queue, "submitter"))
    hid = harvester_id()
    tag = tags.job_tag(hid, name, worker_id)
    ws = _worker(queue, name, worker_id)
    info = WorkerInfo.from_workspec(
        ws, harvester_id=hid, job_name=tag, work_dir=cfg.worker_dir(hid, worker_id, name)
    )
    return build_job_spec(cfg, info)


def render(config: Mapping[str, Any], name: str, worker_id: int = 1) -> str:
    """What a worker of queue ``name`` would be submitted with: the batch script, or the
    service's JSON body (S3M, IRI) after it."""
    plugin = build_plugin(plugin_section(name, merged_queue(config, name), "submitter"))
    spec = _sample_spec(config, name, worker_id)
    body = plugin._edge.make_client().submit_body(spec)
    if isinstance(body, str):
        return body
    shown = _elide(body, spec.script, "<the batch script above>")
    return f"{spec.script}\n# --- the request body:\n{json.dumps(shown, indent=2)}\n"


def _elide(obj: Any, text: str, mark: str) -> Any:
    """``obj`` with every string holding ``text`` shortened to ``mark`` (printed once)."""
    if isinstance(obj, str):
        return obj.replace(text, mark) if text in obj else obj
    if isinstance(obj, dict):
        return {k: _elide(v, text, mark) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_elide(v, text, mark) for v in obj]
    return obj


def online(config: Mapping[str, Any], name: str) -> tuple[bool, str]:
    """Facility status, credential facts and one authenticated request for queue ``name``."""
    queue = merged_queue(config, name)
    plugin = build_plugin(plugin_section(name, queue, "submitter"))
    client = plugin._edge.client()
    try:
        health = client.health()
    except EdgeAPIError as exc:
        return False, f"{client.service}: status not readable: {exc}"
    status = f"{client.service} machine {health.state}" + (
        f" ({health.message})" if health.message else ""
    )
    cred = client.credential()
    try:
        live = client.live_tags(tags.queue_prefix(harvester_id(), name))
        request = f"authenticated request ok, {len(live)} live job(s) of this queue"
    except NotImplementedError:
        request = "no authenticated listing for this service"
    except EdgeAPIError as exc:
        return False, f"{status}; credential refused or request failed: {exc}"
    expiry = ""
    if cred.expires_at is not None:
        expiry = " expires " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(cred.expires_at))
    credential = f"credential {cred.kind} {cred.identity}".rstrip() + expiry
    if cred.problem:
        return False, f"{status}; {credential}: {cred.problem}"
    ok, dirs = _remote_dirs(client, _sample_spec(config, name))
    return health.available and ok, f"{status}; {credential}; {request}; {dirs}"


def _remote_dirs(client: FacilityClient, spec: JobSpec) -> tuple[bool, str]:
    """Whether the directories a job needs before its script runs exist on the facility:
    the batch log's (Slurm fails a job whose output directory is missing) and the submit
    directory (``remoteWorkDir``'s fixed part)."""
    out_dir = posixpath.dirname(spec.stdout_path)  # a Slurm pattern (%j) is left to Slurm
    wanted = sorted({d for d in (out_dir, spec.submit_dir) if d and "%" not in d})
    if not wanted:
        return True, "no remote directory to check"
    try:
        missing = client.missing_dirs(wanted)
    except NotImplementedError:
        return True, f"remote directories not checked (no file access): {', '.join(wanted)}"
    except EdgeAPIError as exc:
        return False, f"remote directories not checked: {exc}"
    if missing:
        return False, (
            f"missing on the facility: {', '.join(missing)} (remoteWorkDir's fixed part or the "
            "batch log's directory: create it, or every job fails before its script runs)"
        )
    return True, f"remote directories exist: {', '.join(wanted)}"


def submit_test(
    config: Mapping[str, Any], name: str, timeout: float = 900.0, interval: float = 5.0
) -> tuple[bool, list[str]]:
    """One short worker through the queue's own throttler, submitter, monitor and sweeper
    (the script starts no pilot: ``SUBMIT_TEST_TEMPLATE``); True when it ends ``finished``."""
    lines: list[str] = []
    queue = merged_queue(config, name)
    with tempfile.TemporaryDirectory(prefix="hedge-submit-test-") as tmp:
        template = Path(tmp) / "submit-test.sh"
        template.write_text(SUBMIT_TEST_TEMPLATE)
        override = {"templateFile": str(template), "nNode": 1, "walltimeSeconds": 300}

        def plugin(section: str) -> Any:
            conf = plugin_section(name, queue, section)
            if section == "submitter":
                conf.update(override)
            return build_plugin(conf)

        throttler = queue.get("throttler")
        if isinstance(throttler, dict) and str(throttler.get("module", "")).startswith(
            "harvester_edge."
        ):
            view = SimpleNamespace(
                queueName=name,
                submitter={**plugin_section(name, queue, "submitter"), **override},
                walltimeLimit=queue.get("walltimeLimit"),
            )
            throttled, why = plugin("throttler").to_be_throttled(view)
            if throttled:
                return False, [f"throttled, nothing submitted: {why}"]
        ws = _worker(queue, name, SUBMIT_TEST_ID_BASE + int(time.time()) % 10_000_000)
        if ws.accessPoint:
            os.makedirs(ws.get_access_point(), exist_ok=True)
        ok, message = plugin("submitter").submit_workers([ws])[0]
        lines.append(f"worker {ws.workerID}: submit {ok}: {message}")
        if ok is not True:
            return False, lines
        ws.status = WorkSpec.ST_submitted
        deadline = time.monotonic() + timeout
        while ws.status not in FINAL:
            if time.monotonic() > deadline:
                lines.append(f"still {ws.status} after {timeout:.0f}s; not followed further")
                return False, lines
            time.sleep(interval)
            _, answers = plugin("monitor").check_workers([ws])
            status, diag = answers[0]
            if status is not None and status != ws.status:
                ws.status = status
                lines.append(f"worker {ws.workerID}: {status} (job {ws.batchID}) {diag}".rstrip())
        swept, why = plugin("sweeper").sweep_worker(ws)
        lines.append(f"worker {ws.workerID}: sweep {swept}: {why}")
    return ws.status == WorkSpec.ST_finished and swept, lines
