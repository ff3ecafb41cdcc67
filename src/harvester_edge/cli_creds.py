"""``harvester-edge creds``: the credential manager from a shell.

harvester-edge creds keygen FILE         a new store or envelope key (0600; never overwrites)
harvester-edge creds status [--cfg F]    every EdgeCredManager setup: state, stored, expiry
harvester-edge creds renew [--cfg F]     what the credmanager agent does: check, renew if due

Setups come from panda_harvester.cfg (all three styles, read as Harvester reads it; the
queue config is the cfg's ``[qconf] configFile`` or ``--queues``).  Nothing printed holds a
secret: fingerprints, paths and dates only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .credentials import harvester_cfg
from .credentials.store import new_key
from .errors import EdgeError

MODULE = "harvester_edge.plugins.credmanager"


def add_parser(sub: Any) -> None:
    """Register ``creds`` on the main parser's subcommands."""
    p = sub.add_parser("creds", help="the credential manager: keygen, status, renew")
    actions = p.add_subparsers(dest="creds_action", required=True)
    k = actions.add_parser("keygen", help="write a new key file (mode 0600)")
    k.add_argument("file")
    k.set_defaults(func=cmd_keygen)
    for name, func in (("status", cmd_status), ("renew", cmd_renew)):
        a = actions.add_parser(name, help=f"{name} every EdgeCredManager setup")
        a.add_argument("--cfg", default=_default_cfg(), help="panda_harvester.cfg")
        a.add_argument("--queues", help="queue config JSON (default: [qconf] configFile)")
        a.add_argument("--setup", action="append", help="only this setup (repeat)")
        a.add_argument("--json", action="store_true", help="one JSON object per setup")
        a.set_defaults(func=func)


def _default_cfg() -> str:
    home = os.environ.get("PANDA_HOME")
    return os.path.join(home, "etc/panda/panda_harvester.cfg") if home else "panda_harvester.cfg"


def cmd_keygen(args: argparse.Namespace) -> int:
    try:
        fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"{args.file} exists: not overwritten", file=sys.stderr)
        return 1
    with os.fdopen(fd, "w") as out:
        out.write(new_key() + "\n")
    print(f"wrote a new key to {args.file} (mode 0600)")
    return 0


def managers(args: argparse.Namespace) -> list[Any]:
    """The EdgeCredManager instances Harvester's credmanager agent would build."""
    from .queue_config import build_plugin

    cfg = harvester_cfg.load(args.cfg)
    queues_file = args.queues or cfg.get("qconf", {}).get("configFile")
    queues = None
    if queues_file:
        path = Path(str(queues_file))
        if not path.is_absolute():
            path = Path(args.cfg).resolve().parent / path
        if path.exists():
            queues = json.loads(path.read_text())
    found = []
    for section in harvester_cfg.credmanager_kwargs(cfg, queues):
        if section.get("module") != MODULE:
            continue
        manager = build_plugin(section)
        if not args.setup or manager.setup_name in args.setup:
            found.append(manager)
    return found


def cmd_status(args: argparse.Namespace) -> int:
    failed = 0
    for manager in managers(args):
        try:
            status = manager.keeper().status()
        except EdgeError as exc:  # a parallel-list setup file that cannot be read
            status = {"setup": manager.setup_name, "ok": False, "notes": [str(exc)]}
        failed += not status.get("ok")
        if args.json:
            print(json.dumps(status, sort_keys=True))
            continue
        print(f"{status['setup']}: {'ok' if status.get('ok') else 'NEEDS ATTENTION'}")
        for note in status.get("notes", []):
            print(f"  {note}")
        hours = status.get("lifetime_hours")
        if hours is not None:
            print(f"  shortest remaining lifetime: {hours:.1f} h")
    return 1 if failed else 0


def cmd_renew(args: argparse.Namespace) -> int:
    failed = 0
    for manager in managers(args):
        if manager.check_credential():
            ok, message = True, "valid: nothing to renew"
        else:
            ok, message = manager.renew_credential()
        failed += not ok
        if args.json:
            print(json.dumps({"setup": manager.setup_name, "ok": ok, "message": message}))
        else:
            print(f"{manager.setup_name}: {'ok' if ok else 'FAILED'}: {message}")
    return 1 if failed else 0
