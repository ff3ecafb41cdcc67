"""The queue-config keys each harvester-edge plugin reads, with their types: one schema for
the plugins and for ``harvester-edge check``.

Nothing here lists a key a second time: the keys of a family's options are the fields of its
options dataclass (``options.py`` and the family module: ``EdgeOptions`` subclasses, typed),
the batch keys of a submitter are the ``read.<kind>("key", ...)`` calls of
``BatchConfig.from_config`` (``edge/batch_config.py``), whose reader method is the type, and a
plugin with keys of its own (the throttler) declares ``config_keys``.  Harvester adds
``siteName``, ``queueName`` and ``dbInterface`` to every section, and names the plugin with
``module``/``name``.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
from typing import Any

from ..config import _type_hints
from ..edge import batch_config

#: keys stock Harvester puts in (or reads from) every plugin section
HARVESTER_KEYS: dict[str, Any] = {
    "module": str, "name": str, "siteName": str, "queueName": str, "dbInterface": Any,
    "middleware": Any,
}  # fmt: skip

#: BatchConfig's reader methods and the type each reads (config.convert's rules)
_READER_TYPES: dict[str, Any] = {
    "text": str, "choice": str, "path": str, "word": str, "directive_value": str,
    "integer": int, "flag": bool, "strings": list[str],
}  # fmt: skip


@functools.cache
def batch_reads() -> tuple[tuple[str, str], ...]:
    """``(key, reader method)`` of every ``read.<method>("key", ...)`` call of
    ``edge/batch_config.py``, in source order, each key once (the docs' reference lists the
    same)."""
    tree = ast.parse(inspect.getsource(batch_config))
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "read"
        and node.func.attr in _READER_TYPES
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ]
    seen: dict[str, str] = {}
    for call in sorted(calls, key=lambda c: (c.lineno, c.col_offset)):
        assert isinstance(call.func, ast.Attribute) and isinstance(call.args[0], ast.Constant)
        seen.setdefault(str(call.args[0].value), call.func.attr)
    return tuple(seen.items())


def batch_keys() -> dict[str, Any]:
    """Every key ``BatchConfig.from_config`` reads, with its type."""
    return {key: _READER_TYPES[method] for key, method in batch_reads()}


def option_keys(options_class: type) -> dict[str, Any]:
    """The fields of an options dataclass with their resolved types."""
    hints = _type_hints(options_class)
    return {f.name: hints[f.name] for f in dataclasses.fields(options_class)}


def plugin_keys(cls: type) -> dict[str, Any] | None:
    """Every key plugin class ``cls`` reads, with its type (Harvester's own keys included);
    None for a class that is not a harvester-edge plugin (its keys are unknown here)."""
    from .base import EdgePlugin
    from .submitter import EdgeSubmitter

    keys: dict[str, Any] = dict(HARVESTER_KEYS)
    declared = getattr(cls, "config_keys", None)
    if isinstance(cls, type) and issubclass(cls, EdgePlugin):
        keys.update(option_keys(cls.binding_class.options_class))
        if issubclass(cls, EdgeSubmitter):
            keys.update(batch_keys())
        return keys
    if isinstance(declared, dict):
        keys.update(declared)
        return keys
    return None


def type_name(kind: Any) -> str:
    """How ``check`` names a type: int, float, str, bool, list[str], Secret reference..."""
    if kind is Any:
        return "any"
    name = getattr(kind, "__name__", None)
    text = str(kind) if name is None or getattr(kind, "__args__", None) else name
    return text.replace("typing.", "").replace("harvester_edge.config.", "")
