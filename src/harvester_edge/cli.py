"""The ``harvester-edge`` command: operators' tools and the local demo.

harvester-edge demo            full local demo: real Slurm + loopback SFAPI, no account
harvester-edge cluster start   the local multi-node Slurm test cluster (root)
harvester-edge gateway ...     run a loopback SFAPI gateway
harvester-edge check-config F  build every harvester-edge plugin of a queue config (no I/O)
harvester-edge render F QUEUE  print the batch script a queue would submit
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import EdgeConfigError

PLUGIN_SECTIONS = ("submitter", "monitor", "sweeper", "credmanagers")


def plugin_sections(queue_name: str, queue: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """harvester-edge plugin sections of a queue, with ``common`` merged in as Harvester does."""
    found = []
    for section in PLUGIN_SECTIONS:
        entries = queue.get(section)
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict) and str(entry.get("module", "")).startswith(
                "harvester_edge."
            ):
                conf = dict(entry)
                for key, value in queue.get("common", {}).items():
                    conf.setdefault(key, value)
                conf.setdefault("siteName", queue_name)
                conf.setdefault("queueName", queue_name)
                found.append((section, conf))
    return found


def build_plugin(conf: dict[str, Any]) -> Any:
    """What Harvester's PluginFactory does: import ``module``, get ``name``, call it."""
    module = __import__(conf["module"], fromlist=[conf["name"]])
    cls = getattr(module, conf["name"])
    return cls(**{k: v for k, v in conf.items() if k not in ("module", "name")})


def cmd_check_config(args: argparse.Namespace) -> int:
    config = json.loads(Path(args.file).read_text())
    bad = 0
    for queue_name, queue in config.items():
        if not isinstance(queue, dict):
            continue
        for section, conf in plugin_sections(queue_name, queue):
            try:
                build_plugin(conf)
                print(f"ok     {queue_name}.{section}: {conf['name']}")
            except (EdgeConfigError, ImportError, AttributeError, TypeError) as exc:
                bad += 1
                print(f"ERROR  {queue_name}.{section}: {exc}")
    return 1 if bad else 0


def cmd_render(args: argparse.Namespace) -> int:
    from .edge.batch import BatchConfig, WorkerInfo, render_batch_script
    from .edge.tags import job_tag
    from .harvester import WorkSpec, harvester_id

    queue = json.loads(Path(args.file).read_text())[args.queue]
    sections = dict(plugin_sections(args.queue, queue))
    if "submitter" not in sections:
        print(f"queue {args.queue} has no harvester-edge submitter", file=sys.stderr)
        return 1
    cfg = BatchConfig.from_config(sections["submitter"])
    ws = WorkSpec()
    ws.workerID, ws.computingSite, ws.nCore, ws.maxWalltime = args.worker_id, args.queue, None, 3600
    hid = harvester_id()
    tag = job_tag(hid, args.queue, args.worker_id)
    info = WorkerInfo.from_workspec(
        ws, harvester_id=hid, job_name=tag, work_dir=cfg.worker_dir(hid, args.worker_id, args.queue)
    )
    print(render_batch_script(cfg, info), end="")
    return 0


def cluster_script() -> str:
    return str(resources.files("harvester_edge.localsite").joinpath("slurm-cluster.sh"))


def cmd_cluster(args: argparse.Namespace) -> int:
    return subprocess.call(["bash", cluster_script(), args.action])


def cmd_gateway(args: argparse.Namespace) -> int:
    from .localsite.sfapi_gateway import main as gateway_main

    return gateway_main(args.rest)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    if os.geteuid() == 0 and subprocess.call(["bash", cluster_script(), "start"]) != 0:
        return 1
    os.environ.setdefault("SLURM_CONF", "/tmp/hedge-slurm/etc/slurm.conf")
    return run_demo(Path(args.dir), cycles=args.max_cycles)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harvester-edge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run the full local demo (needs root for Slurm)")
    p.add_argument("--dir", default="demo-run", help="where the demo keeps its files")
    p.add_argument("--max-cycles", type=int, default=90)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("cluster", help="the local Slurm test cluster")
    p.add_argument("action", choices=["start", "stop", "status", "env"])
    p.set_defaults(func=cmd_cluster)
    p = sub.add_parser("gateway", help="run a loopback SFAPI gateway (see --help after it)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_gateway)
    p = sub.add_parser(
        "check-config", help="validate the harvester-edge sections of a queue config"
    )
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)
    p = sub.add_parser("render", help="print the batch script of a queue's submitter")
    p.add_argument("file")
    p.add_argument("queue")
    p.add_argument("--worker-id", type=int, default=1)
    p.set_defaults(func=cmd_render)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except EdgeConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
