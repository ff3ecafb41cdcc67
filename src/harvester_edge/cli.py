"""The ``harvester-edge`` command: operators' tools and the local demo.

harvester-edge demo            every family on the loopback facility over real Slurm, no account
harvester-edge cluster start   the local multi-node Slurm test cluster (root)
harvester-edge gateway ...     run a loopback SFAPI gateway (its options: gateway --help);
                               --family gc: the loopback Globus Compute service
harvester-edge check F         a queue config against the plugins' schema, every plugin built;
                               --online, --render, --submit-test (check-config: alias)
harvester-edge workers Q       the facility's view of a queue's jobs (--config F, --json)
harvester-edge render F QUEUE  print the batch script a queue would submit
harvester-edge creds ...       the credential manager: keygen, status, renew (cli_creds.py)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ._quiet import quiet_imports
from .config import redact
from .errors import EdgeConfigError
from .queue_config import (
    MANDATORY_SECTIONS,
    PLUGIN_SECTIONS,
    build_plugin,
    is_template,
    merged_queue,
    plugin_sections,
)

# Queue-level keys stock Harvester's QueueConfigMapper (harvestercore/queue_config_mapper.py)
# reads; how it merges templates and ``common`` into plugin sections: queue_config.py.
#: queue limits; stock silently replaces a non-integer by None (maxWorkers by 0)
QUEUE_LIMITS = (
    "maxWorkers", "maxNewWorkersPerCycle",
    "nQueueLimitWorker", "nQueueLimitWorkerMax", "nQueueLimitWorkerRatio", "nQueueLimitWorkerMin",
    "nQueueLimitWorkerCores", "nQueueLimitWorkerCoresRatio", "nQueueLimitWorkerCoresMin",
    "nQueueLimitWorkerMemory", "nQueueLimitWorkerMemoryRatio", "nQueueLimitWorkerMemoryMin",
    "nQueueLimitJob", "nQueueLimitJobMax", "nQueueLimitJobRatio", "nQueueLimitJobMin",
    "nQueueLimitJobCores", "nQueueLimitJobCoresRatio", "nQueueLimitJobCoresMin",
)  # fmt: skip
MAP_TYPES = ("NoJob", "OneToOne", "ManyToOne", "OneToMany")
DROPPED = "Harvester drops the queue"
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_PLACEHOLDER = re.compile(r"\$\{([a-zA-Z\d_.]+)\}")


# ------------------------------------------------------------ the credmanager agent's sections
def credmanager_conf(
    queue_name: str, queue: Mapping[str, Any], entry: Mapping[str, Any]
) -> dict[str, Any]:
    """A per-queue ``credmanagers`` entry as the credmanager agent builds it: no ``common``
    merge, but ``${harvesterID}``, ``${queueName}``, ``${common.KEY}`` expanded and
    ``setup_name``/``queueName`` set.  Raises EdgeConfigError where stock would fail."""
    from .harvester import harvester_id

    common = queue.get("common")
    common = common if isinstance(common, dict) else {}
    conf: dict[str, Any] = {"setup_name": queue_name, "queueName": queue_name}
    for key, value in entry.items():
        if isinstance(value, str) and "$" in value:
            for name in _PLACEHOLDER.findall(value):
                if name == "harvesterID":
                    sub: Any = harvester_id()
                elif name == "queueName":
                    sub = queue_name
                elif name.startswith("common.") and name[7:] in common:
                    sub = common[name[7:]]
                else:
                    continue
                if not isinstance(sub, str):
                    raise EdgeConfigError(
                        f"config key '{key}' uses ${{{name}}}, which is not a string "
                        "(the credmanager agent fails on it)"
                    )
                value = value.replace("${" + name + "}", sub)
        conf[key] = value
    return conf


# ------------------------------------------------------------ check-config
class NetworkAttempt(Exception):
    """A plugin constructor tried to open a connection or resolve a name."""


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Fail any connect or name lookup in this block (constructors must do no I/O)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NetworkAttempt("the constructor opened a network connection or looked up a host")

    saved = (socket.socket.connect, socket.create_connection, socket.getaddrinfo)
    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
    try:
        yield
    finally:
        socket.socket.connect, socket.create_connection, socket.getaddrinfo = saved  # type: ignore[method-assign]


def error_key(message: str, conf: Mapping[str, Any]) -> str | None:
    """The config key an EdgeConfigError message names, when it names one."""
    match = re.search(r"config key '([^']+)'", message)
    if match:
        return match.group(1)
    for match in re.finditer(r"(?:^|: )([A-Za-z_]\w*)(?:\[\d+\])?: ", message):
        if match.group(1) in conf:
            return match.group(1)
    return None


def _have_pandaharvester() -> bool:
    try:
        importlib.import_module("pandaharvester")
    except ImportError:
        return False
    return True


@dataclass
class Checker:
    """Collects ``ok`` and ``ERROR`` lines; secret-looking values never reach them."""

    lines: list[str] = field(default_factory=list)
    problems: int = 0
    #: "queue.section" with a problem: no "ok" line for them
    bad: set[str] = field(default_factory=set)
    stock_importable: bool = field(default_factory=_have_pandaharvester)

    def ok(self, where: str, message: str) -> None:
        if where not in self.bad:
            self.lines.append(f"ok     {where}: {message}")

    def error(
        self, queue: str, section: str | None, key: str | None, message: str, conf: Any = None
    ) -> None:
        where = ".".join(p for p in (queue, section, key) if p)
        self.bad.add(".".join(p for p in (queue, section) if p))
        if isinstance(conf, Mapping):
            message = redact(message, conf)
        self.lines.append(f"ERROR  {where}: {message}")
        self.problems += 1

    # -- the file
    def check_file(self, path: str) -> None:
        try:
            config = json.loads(Path(path).read_text())
        except OSError as exc:
            self.error(path, None, None, f"cannot read ({exc.strerror})")
            return
        except json.JSONDecodeError as exc:
            self.error(path, None, None, f"invalid JSON: {exc}")
            return
        if not isinstance(config, dict):
            self.error(path, None, None, "must be a JSON object of queues")
            return
        used: dict[str, list[str]] = {}
        for name, raw in config.items():
            if not isinstance(raw, dict):
                self.error(name, None, None, "must be a JSON object (Harvester cannot load it)")
                continue
            if is_template(name, raw):
                continue
            template = raw.get("templateQueueName")
            if template is not None:
                if not isinstance(config.get(template), dict) or not is_template(
                    template, config[template]
                ):
                    self.error(
                        name,
                        "templateQueueName",
                        None,
                        f"no template queue {template!r} in this file (Harvester skips the queue)",
                    )
                    continue
                used.setdefault(template, []).append(name)
            self.check_queue(name, merged_queue(config, name))
        for name, raw in config.items():
            if isinstance(raw, dict) and is_template(name, raw):
                users = used.get(name)
                self.lines.append(
                    f"ok     {name}: template, checked through {', '.join(users)}"
                    if users
                    else f"note   {name}: template not used by any queue here (not checked)"
                )

    # -- one queue, after its template
    def check_queue(self, name: str, queue: dict[str, Any]) -> None:
        common = queue.get("common")
        if common is not None and not isinstance(common, dict):
            self.error(name, "common", None, "must be an object (Harvester ignores it)")
        self.check_queue_values(name, queue)
        sections = dict(plugin_sections(name, queue))
        for section in MANDATORY_SECTIONS:
            if section not in queue:
                self.error(name, section, None, f"mandatory section missing; {DROPPED}")
        for key, value in queue.items():
            if key in sections:
                continue
            if key in PLUGIN_SECTIONS or (
                isinstance(value, dict) and ("module" in value or "name" in value)
            ):
                missing = [
                    k for k in ("module", "name") if not isinstance(value, dict) or k not in value
                ]
                self.error(
                    name,
                    key,
                    None,
                    f"not a plugin section (needs {' and '.join(repr(k) for k in missing)}); "
                    "Harvester loads it but its agents cannot build the plugin",
                )
        if "messenger" in sections:
            self.check_messenger(name, sections["messenger"])
        for section, conf in sections.items():
            self.check_plugin(name, section, conf)
        self.check_access_points(name, sections)
        self.check_credmanagers(name, queue)

    def check_queue_values(self, name: str, queue: Mapping[str, Any]) -> None:
        map_type = queue.get("mapType")
        if map_type is not None and map_type not in MAP_TYPES:
            self.error(name, "mapType", None, f"must be one of {', '.join(MAP_TYPES)}")
        for key in QUEUE_LIMITS:
            value = queue.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                self.error(name, key, None, "must be an integer (Harvester ignores other values)")
        status = queue.get("queueStatus")
        if status is not None and not isinstance(status, str):
            self.error(name, "queueStatus", None, "must be a string such as online or offline")
        criteria = queue.get("getJobCriteria")
        if criteria is not None and (
            not isinstance(criteria, str)
            or any(item.count("=") != 1 for item in criteria.split(","))
        ):
            self.error(name, "getJobCriteria", None, "must be 'key=value,key=value'")

    # -- one plugin section: module/name like the mapper, build like PluginFactory
    def check_plugin(self, queue: str, section: str, conf: dict[str, Any]) -> bool:
        module, cls_name = conf["module"], conf["name"]
        where = f"{queue}.{section}"
        good = True
        if not isinstance(module, str) or not _DOTTED.fullmatch(module):
            self.error(queue, section, "module", f"is not a dotted module name; {DROPPED}")
            good = False
        if not isinstance(cls_name, str) or not cls_name.isidentifier():
            self.error(queue, section, "name", f"is not a class name; {DROPPED}")
            good = False
        if not good:
            return False
        if module.split(".")[0] == "pandaharvester" and not self.stock_importable:
            self.ok(where, f"{cls_name} (stock plugin; pandaharvester not installed, name only)")
            return True
        try:
            with quiet_imports():
                found = importlib.import_module(module)
        except ImportError as exc:
            self.error(queue, section, "module", f"cannot import {module} ({exc}); {DROPPED}")
            return False
        except Exception as exc:
            self.error(queue, section, "module", f"importing {module} failed ({exc!r}); {DROPPED}")
            return False
        if not hasattr(found, cls_name):
            self.error(queue, section, "name", f"{module} has no {cls_name}; {DROPPED}")
            return False
        if module.split(".")[0] != "harvester_edge":
            self.ok(where, f"{cls_name} (imported; not ours, not built)")
            return True
        return self.build(queue, section, conf)

    def build(self, queue: str, section: str, conf: dict[str, Any]) -> bool:
        try:
            with no_network():
                build_plugin(conf)
        except EdgeConfigError as exc:
            self.error(queue, section, error_key(str(exc), conf), str(exc), conf)
            return False
        except NetworkAttempt as exc:
            self.error(queue, section, None, f"{exc} (constructors must do no I/O)")
            return False
        except Exception as exc:
            self.error(queue, section, None, f"building failed: {type(exc).__name__}: {exc}", conf)
            return False
        self.ok(f"{queue}.{section}", str(conf["name"]))
        return True

    # -- keys stock agents read from the messenger section
    def check_messenger(self, queue: str, conf: Mapping[str, Any]) -> None:
        access_point = conf.get("accessPoint")
        if access_point is None:
            self.error(
                queue,
                "messenger",
                "accessPoint",
                "missing: the stock submitter reads messenger['accessPoint'] for every worker "
                "(KeyError for the whole cycle)",
            )
        elif not isinstance(access_point, str) or not access_point.strip():
            self.error(queue, "messenger", "accessPoint", "must be a non-empty path template")
        heartbeat = conf.get("worker_heartbeat")
        if heartbeat is not None:
            try:
                int(heartbeat)
            except (TypeError, ValueError):
                self.error(
                    queue,
                    "messenger",
                    "worker_heartbeat",
                    "must be an integer number of seconds (the stock monitor calls int() on it)",
                )
        spec_file = conf.get("jobSpecFileName")
        if spec_file is not None and not isinstance(spec_file, str):
            self.error(queue, "messenger", "jobSpecFileName", "must be a file name")

    def check_access_points(self, queue: str, sections: Mapping[str, Mapping[str, Any]]) -> None:
        """Our plugins read ``accessPoint`` (from ``common``) to know the worker's directory,
        the sweeper to know what it may delete: it must be the messenger's."""
        messenger = sections.get("messenger", {}).get("accessPoint")
        if not isinstance(messenger, str):
            return
        for section, conf in sections.items():
            if not str(conf["module"]).startswith("harvester_edge."):
                continue
            own = conf.get("accessPoint")
            if own is not None and own != messenger:
                self.error(
                    queue,
                    section,
                    "accessPoint",
                    f"differs from messenger.accessPoint {messenger!r}: the worker's directory "
                    "is the messenger's",
                )

    def check_credmanagers(self, queue: str, queue_dict: Mapping[str, Any]) -> None:
        entries = queue_dict.get("credmanagers")
        if entries is None:
            return
        if not isinstance(entries, list):
            self.error(queue, "credmanagers", None, "must be a list (Harvester ignores it)")
            return
        for i, entry in enumerate(entries):
            section = f"credmanagers[{i}]"
            if not isinstance(entry, dict):
                self.error(queue, section, None, "must be an object with 'module' and 'name'")
                continue
            missing = [k for k in ("module", "name") if k not in entry]
            if missing:
                for key in missing:
                    self.error(queue, section, key, "missing (the credmanager agent fails)")
                continue
            try:
                conf = credmanager_conf(queue, queue_dict, entry)
            except EdgeConfigError as exc:
                self.error(queue, section, error_key(str(exc), entry), str(exc), entry)
                continue
            self.check_plugin(queue, section, conf)


def cmd_check_config(args: argparse.Namespace) -> int:
    """``check`` (and its alias ``check-config``): offline first; exit 2 on any problem,
    and then nothing is rendered, asked or submitted."""
    from . import config_check as cc

    checker = cc.EdgeChecker()
    queue = getattr(args, "queue", None)
    if queue is not None:
        try:
            config = json.loads(Path(args.file).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"ERROR  {args.file}: cannot read ({exc})")
            return 2
        if not isinstance(config, dict) or queue not in config:
            print(f"ERROR  {args.file}: no queue {queue}")
            return 2
        if is_template(queue, config[queue]):
            print(f"ERROR  {queue}: a template queue; check a queue that uses it")
            return 2
        checker.check_queue(queue, merged_queue(config, queue))
    else:
        checker.check_file(args.file)
    if getattr(args, "harvester_cfg", None):
        checker.check_harvester_cfg(args.harvester_cfg)
    for line in checker.lines:
        print(line)
    if checker.problems:
        print(f"{checker.problems} problem(s) in {args.file}")
        return 2
    print(f"{args.file}: no problems")
    if not (getattr(args, "render", False) or getattr(args, "online", False)):
        if not getattr(args, "submit_test", False):
            return 0
    config = json.loads(Path(args.file).read_text())
    queues = cc.edge_queues(config, queue)
    failed = False
    for name in queues if getattr(args, "render", False) else []:
        print(f"\n===== {name}: what worker 1 would be submitted with")
        print(cc.render(config, name), end="")
    for name in queues if getattr(args, "online", False) else []:
        ok, text = cc.online(config, name)
        print(f"{'online' if ok else 'ERROR '} {name}: {text}")
        failed |= not ok
    if getattr(args, "submit_test", False):
        if queue is None:
            print("--submit-test needs --queue (it submits a real job)", file=sys.stderr)
            return 2
        ok, lines = cc.submit_test(config, queue, timeout=args.timeout)
        for line in lines:
            print(f"submit-test {queue}: {line}")
        print(f"submit-test {queue}: {'finished' if ok else 'FAILED'}")
        failed |= not ok
    return 1 if failed else 0


def cmd_render(args: argparse.Namespace) -> int:
    from .edge.batch import BatchConfig, WorkerInfo, render_batch_script
    from .edge.tags import job_tag
    from .harvester import WorkSpec, harvester_id

    config = json.loads(Path(args.file).read_text())
    if args.queue not in config:
        print(f"no queue {args.queue} in {args.file}", file=sys.stderr)
        return 1
    sections = dict(plugin_sections(args.queue, merged_queue(config, args.queue)))
    submitter = sections.get("submitter")
    if submitter is None or not str(submitter["module"]).startswith("harvester_edge."):
        print(f"queue {args.queue} has no harvester-edge submitter", file=sys.stderr)
        return 1
    cfg = BatchConfig.from_config(submitter)
    ws = WorkSpec()
    ws.workerID, ws.computingSite, ws.nCore, ws.maxWalltime = args.worker_id, args.queue, None, 3600
    hid = harvester_id()
    tag = job_tag(hid, args.queue, args.worker_id)
    info = WorkerInfo.from_workspec(
        ws, harvester_id=hid, job_name=tag, work_dir=cfg.worker_dir(hid, args.worker_id, args.queue)
    )
    print(render_batch_script(cfg, info), end="")
    return 0


def default_queue_config() -> str:
    """Harvester's own queue config: ``$PANDA_HOME/etc/panda/panda_queueconfig.json``."""
    return os.path.join(os.environ.get("PANDA_HOME", "/"), "etc/panda/panda_queueconfig.json")


def cmd_workers(args: argparse.Namespace) -> int:
    from .errors import EdgeAPIError
    from .workers_view import queue_client, render_json, render_table, worker_rows

    path = args.config or default_queue_config()
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"cannot read the queue config {path}: {exc}", file=sys.stderr)
        return 2
    if args.queue not in config:
        print(f"no queue {args.queue} in {path}", file=sys.stderr)
        return 2
    try:
        client = queue_client(config, args.queue)
        rows = worker_rows(client, args.queue, args.worker)
    except (EdgeAPIError, NotImplementedError, TimeoutError, ValueError) as exc:
        print(f"{args.queue}: {exc}", file=sys.stderr)
        return 1
    print(render_json(rows) if args.json else render_table(rows))
    return 0


def cluster_script() -> str:
    return str(resources.files("harvester_edge.localsite").joinpath("slurm-cluster.sh"))


def cmd_cluster(args: argparse.Namespace) -> int:
    return subprocess.call(["bash", cluster_script(), args.action])


def cmd_gateway(args: argparse.Namespace) -> int:
    # --family picks the gateway (default SFAPI); every other argument is the gateway's own
    picker = argparse.ArgumentParser(add_help=False)
    picker.add_argument("--family", choices=("sfapi", "gc"), default="sfapi")
    chosen, rest = picker.parse_known_args(list(args.gateway_args))
    if chosen.family == "gc":
        from .localsite import gc_service

        return int(gc_service.main(rest) or 0)
    from .localsite import sfapi_gateway

    return int(sfapi_gateway.main(rest) or 0)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .localsite.families import pick

    try:
        families = pick(args.family)
    except ValueError as exc:
        print(f"harvester-edge demo: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("SLURM_CONF", "/tmp/hedge-slurm/etc/slurm.conf")
    if os.geteuid() == 0 and subprocess.call(["bash", cluster_script(), "start"]) != 0:
        return 1
    config = Path(args.config) if args.config else None
    return run_demo(Path(args.dir), families, config, timeout=args.timeout)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harvester-edge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "demo", help="every family on the loopback facility over local Slurm (root for Slurm)"
    )
    p.add_argument(
        "--family",
        action="append",
        help="only this family (sfapi, s3m, iri-v2, iri-v1, gc-batch, gc-task; iri or gc for "
        "both); repeatable",
    )
    p.add_argument("--config", help="queue config (default etc/panda_queueconfig.example.json)")
    p.add_argument("--dir", default="demo-run", help="where the demo keeps its files")
    p.add_argument("--timeout", type=float, default=300, help="seconds per family")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("cluster", help="the local Slurm test cluster")
    p.add_argument("action", choices=["start", "stop", "status", "env"])
    p.set_defaults(func=cmd_cluster)
    # The gateway parses its own options (--key-file, --port, ... and --help): every
    # argument after "gateway" goes to it unchanged (see main()).
    p = sub.add_parser(
        "gateway",
        help="run a loopback SFAPI gateway (options: harvester-edge gateway --help)",
        add_help=False,
    )
    p.set_defaults(func=cmd_gateway, gateway_args=[])
    for command in ("check", "check-config"):
        p = sub.add_parser(
            command,
            help="check a queue config against the plugins' schema and build every plugin"
            + (" (alias of check)" if command == "check-config" else ""),
        )
        p.add_argument("file", help="the queue config (panda_queueconfig.json)")
        p.add_argument("--harvester-cfg", help="also check panda_harvester.cfg's [credmanager]")
        p.add_argument("--queue", help="only this queue")
        p.add_argument(
            "--online", action="store_true", help="ask each facility (status, credential)"
        )
        p.add_argument("--render", action="store_true", help="print what a worker would send")
        p.add_argument(
            "--submit-test",
            action="store_true",
            help="submit one short worker of --queue (no pilot) and follow it to its end",
        )
        p.add_argument("--timeout", type=float, default=900, help="submit-test: seconds to wait")
        p.set_defaults(func=cmd_check_config)
    p = sub.add_parser("workers", help="the facility's view of a queue's jobs (read only)")
    p.add_argument("queue")
    p.add_argument("--config", help="queue config (default $PANDA_HOME/etc/panda/...json)")
    p.add_argument("--worker", type=int, action="append", help="also this (ended) worker id")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(func=cmd_workers)
    p = sub.add_parser("render", help="print the batch script of a queue's submitter")
    p.add_argument("file")
    p.add_argument("queue")
    p.add_argument("--worker-id", type=int, default=1)
    p.set_defaults(func=cmd_render)
    from . import cli_creds

    cli_creds.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.command == "gateway":
        args.gateway_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args))
    except EdgeConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
