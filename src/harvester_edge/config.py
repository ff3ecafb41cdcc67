"""Plugin configuration: validated once, at construction, into a frozen dataclass.

Harvester passes a queue's plugin section as keyword arguments (plus its ``common`` block,
``siteName``, ``queueName``, ``dbInterface``...).  Each plugin declares its options as a
dataclass whose field names are the config keys; ``parse_config`` converts and checks the
values it knows and ignores the rest (Harvester copies foreign keys into every section).
A wrong type or value raises ``EdgeConfigError`` naming the key, so a malformed section fails
when the plugin is built, not in the middle of a cycle.  No I/O happens here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from .errors import EdgeConfigError

T = TypeVar("T")


def check(cond: bool, key: str, message: str) -> None:
    """Raise ``EdgeConfigError`` for ``key`` unless ``cond`` holds."""
    if not cond:
        raise EdgeConfigError(f"config key '{key}' {message}")


def convert(key: str, value: Any, kind: Any) -> Any:
    """Convert one config value to ``kind`` (bool, int, float, str, list[...], dict, Optional);
    the one set of rules every harvester-edge option follows.  Raises EdgeConfigError."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return convert(key, value, inner[0])
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise EdgeConfigError(f"config key '{key}' must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise EdgeConfigError(f"config key '{key}' must be an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise EdgeConfigError(f"config key '{key}' must be an integer, got {value!r}") from None
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise EdgeConfigError(f"config key '{key}' must be a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise EdgeConfigError(f"config key '{key}' must be a number, got {value!r}") from None
    if kind is str:
        if not isinstance(value, str):
            raise EdgeConfigError(f"config key '{key}' must be a string, got {value!r}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise EdgeConfigError(f"config key '{key}' must be a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(convert(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise EdgeConfigError(f"config key '{key}' must be an object, got {value!r}")
        return dict(value)
    return value


def parse_config(cls: type[T], kwargs: Mapping[str, Any], owner: str) -> T:
    """Build ``cls`` (a dataclass) from the known keys of ``kwargs``.

    Fields without a default are required.  After conversion the dataclass's own
    ``__post_init__`` may check ranges with ``check()``.
    """
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in kwargs and kwargs[f.name] is not None:
            values[f.name] = convert(f.name, kwargs[f.name], hints[f.name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise EdgeConfigError(f"{owner}: required config key '{f.name}' is missing")
    try:
        return cls(**values)
    except EdgeConfigError as exc:
        raise EdgeConfigError(f"{owner}: {exc}") from None
