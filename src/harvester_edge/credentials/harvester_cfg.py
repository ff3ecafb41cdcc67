"""``panda_harvester.cfg`` read the way Harvester reads it, and its credential managers.

Reproduces ``harvesterconfig/harvester_config.py`` on ``liveconfigparser``'s
``LiveConfigParser`` (a ``configparser.ConfigParser``, default interpolation, keys kept
case-sensitive) and ``harvesterbody/cred_manager.py``'s three ways of building credential
managers.  The parser's traps, kept on purpose so the example and the docs are tested
against them:

- a value is decoded as JSON only when it spans several lines and looks like ``[...]`` or
  ``{...}``; a one-line ``pluginConfigs = [...]`` stays a string;
- inside decoded JSON any string containing ``$`` is replaced *whole* by an environment
  variable (``/scratch/$USER/x`` becomes the value of a variable named ``USER/x``), and an
  undefined one raises KeyError while the config loads;
- a top-level value starting with ``$`` is replaced the same way; other multi-line values
  become lists of their non-empty lines; ``True``/``False``/``None``/digits are converted.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import socket
from collections.abc import Mapping
from typing import Any


def _env(value: str) -> str:
    match = re.search(r"\$\{*([^\}]+)\}*", value)
    if match is None:
        return value
    name = match.group(1)
    if name.upper() == "HOSTNAME":
        return socket.gethostname().split(".")[0]
    if name not in os.environ:
        raise KeyError(f"{name} in the cfg is an undefined environment variable.")
    return os.environ[name]


def _substitute(obj: Any) -> None:
    items = (
        enumerate(obj) if isinstance(obj, list) else obj.items() if isinstance(obj, dict) else ()
    )
    for key, value in list(items):
        if isinstance(value, str):
            obj[key] = _env(value)
        else:
            _substitute(value)


def _value(raw: str) -> Any:
    value: Any = raw
    if value.startswith("$"):
        value = _env(value)
    if value == "True":
        return True
    if value == "False":
        return False
    if value == "None":
        return None
    if re.match(r"^\d+$", value):
        return int(value)
    flat = value.replace("\n", "")
    if "\n" in value and (re.match(r"^\W*\[.*\]\W*$", flat) or re.match(r"^\W*\{.*\}\W*$", flat)):
        decoded = json.loads(value)
        _substitute(decoded)
        return decoded
    if "\n" in value:
        return [line.strip() for line in value.split("\n") if line.strip()]
    return value


def load(path: str) -> dict[str, dict[str, Any]]:
    """Every section of a Harvester cfg file as Harvester's ``harvester_config`` holds it."""
    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    with open(path, encoding="utf-8") as f:
        parser.read_file(f)
    return {s: {k: _value(v) for k, v in parser.items(s)} for s in parser.sections()}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def credmanager_kwargs(
    cfg: Mapping[str, Mapping[str, Any]], queues: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The plugin sections Harvester's credmanager agent builds, in its order: the
    ``[credmanager]`` parallel lists (zipped: the shortest list wins), each ``pluginConfigs``
    setup, then each queue's ``credmanagers`` entries (``${queueName}``-style placeholders
    expanded as the agent does).  Each dict has ``module`` and ``name``."""
    section = cfg.get("credmanager", {})
    found: list[dict[str, Any]] = []
    lists = [
        _as_list(section.get(k, []))
        for k in ("moduleName", "className", "inCertFile", "outCertFile", "voms")
    ]
    if "inCertFile" not in section and "certFile" in section:
        lists[2] = _as_list(section["certFile"])
    for module, name, in_cert, out_cert, voms in zip(
        *lists, strict=False
    ):  # as Harvester: the shortest wins
        found.append({"module": module, "name": name, "inCertFile": in_cert,
                      "outCertFile": out_cert, "voms": voms})  # fmt: skip
    for plugin in section.get("pluginConfigs", []) or []:
        for setup, values in plugin["configs"].items():
            found.append({"module": plugin["module"], "name": plugin["name"],
                          "setup_name": setup, **values})  # fmt: skip
    if queues:
        from ..cli import credmanager_conf
        from ..queue_config import is_template, merged_queue

        for queue_name in queues:
            if is_template(queue_name, queues[queue_name]):
                continue
            queue = merged_queue(queues, queue_name)
            entries = queue.get("credmanagers")
            if queue.get("queueStatus") == "offline" or not isinstance(entries, list):
                continue
            for entry in entries:
                found.append(credmanager_conf(queue_name, queue, entry))
    return found
