"""Plugin configuration: validated once, at construction, into a frozen dataclass.

Harvester passes a queue's plugin section as keyword arguments (plus its ``common`` block,
``siteName``, ``queueName``, ``dbInterface``...).  Each plugin declares its options as a
dataclass whose field names are the config keys; ``parse_config`` converts and checks the
values it knows and ignores the rest (Harvester copies foreign keys into every section).
A wrong type or value raises ``EdgeConfigError`` naming the key, so a malformed section fails
when the plugin is built, not in the middle of a cycle.  No I/O happens here.

Secrets are never config values: a field typed ``Secret`` takes a reference (``file:/path``
or ``env:NAME``) read only when used, and no error message shows the value of a key whose
name looks secret-bearing (token, secret, password, credential, private key, API key).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from .errors import EdgeAuthError, EdgeConfigError

T = TypeVar("T")


def check(cond: bool, key: str, message: str) -> None:
    """Raise ``EdgeConfigError`` for ``key`` unless ``cond`` holds."""
    if not cond:
        raise EdgeConfigError(f"config key '{key}' {message}")


_SECRET_WORDS = ("token", "secret", "password", "passwd", "credential", "privatekey", "apikey")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MASK = "***"


def is_secret_key(key: str) -> bool:
    """Whether a config key's name says its value may be a secret (token, clientSecret,
    password, privateKey, apiKey, ...).  ``keyFile`` is a path, not a secret."""
    name = re.sub(r"[^a-z]", "", key.lower())
    return any(word in name for word in _SECRET_WORDS)


class Secret:
    """A secret named in config by reference: ``file:/abs/path`` or ``env:NAME``.

    Only the reference is kept; the value is read by ``reveal()`` each time it is needed
    (so a token file renewed by a credential manager is picked up, and parsing does no
    I/O).  ``repr``/``str`` are masked, so options, logs and error messages never show it.
    """

    __slots__ = ("_kind", "_ref")
    _kind: str
    _ref: str

    def __init__(self, reference: str):
        kind, sep, ref = reference.partition(":") if isinstance(reference, str) else ("", "", "")
        if not sep or kind not in ("file", "env"):
            raise ValueError("a secret reference is 'file:/absolute/path' or 'env:NAME'")
        if kind == "file" and not ref.startswith("/"):
            raise ValueError("a secret file reference needs an absolute path: 'file:/path'")
        if kind == "env" and not _ENV_NAME.fullmatch(ref):
            raise ValueError("a secret environment reference is 'env:NAME' (letters, digits, _)")
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_ref", ref)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return (self._kind, self._ref) == (other._kind, other._ref)

    def __hash__(self) -> int:
        return hash((Secret, self._kind, self._ref))

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: Any) -> Secret:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (f"{self._kind}:{self._ref}",))

    @property
    def source(self) -> str:
        """Where the secret lives (``file /path`` or ``environment variable NAME``): not
        secret itself, for diagnostics."""
        return f"file {self._ref}" if self._kind == "file" else f"environment variable {self._ref}"

    def reveal(self) -> str:
        """The secret value (a file's content or the variable's value, surrounding white
        space removed).  Raises ``EdgeAuthError`` naming only the reference."""
        if self._kind == "env":
            value = os.environ.get(self._ref)
            if value is None:
                raise EdgeAuthError(f"secret {self.source} is not set")
        else:
            try:
                with open(self._ref, encoding="utf-8") as f:
                    value = f.read()
            except OSError as exc:
                raise EdgeAuthError(
                    f"secret {self.source} cannot be read ({exc.strerror or type(exc).__name__})"
                ) from None
            except UnicodeDecodeError:
                raise EdgeAuthError(f"secret {self.source} is not UTF-8 text") from None
        value = value.strip()
        if not value:
            raise EdgeAuthError(f"secret {self.source} is empty")
        return value


def shown(key: str, value: Any) -> str:
    """How an error message may show a bad config value: never for secret-looking keys
    or secrets, only the type for objects and lists (they may hold secrets), else repr."""
    if isinstance(value, Secret) or is_secret_key(key):
        return "(value not shown)"
    if isinstance(value, Mapping):
        return "got an object"
    if isinstance(value, (list, tuple, set)):
        return "got a list"
    text = repr(value)
    return f"got {text if len(text) <= 80 else text[:77] + '...'}"


def redact(message: str, values: Mapping[str, Any]) -> str:
    """``message`` with the values of secret-looking keys of ``values`` masked, wherever
    they appear (as themselves or as repr): for messages composed by checks we do not own."""
    for key, value in values.items():
        if not is_secret_key(key):
            continue
        items: list[Any] = [value]
        if isinstance(value, Mapping):
            items = list(value.values())
        elif isinstance(value, (list, tuple)):
            items = list(value)
        for item in items:
            if isinstance(item, str) and len(item) >= 4:
                forms = {item, repr(item)[1:-1], json.dumps(item)[1:-1]}
                for text in sorted(forms, key=len, reverse=True):
                    message = message.replace(text, _MASK)
    return message


def convert(key: str, value: Any, kind: Any) -> Any:
    """Convert one config value to ``kind`` (bool, int, float, str, Secret, list[...], dict,
    Optional); the one set of rules every harvester-edge option follows.  Raises
    EdgeConfigError naming the key; values of secret-looking keys are never shown."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return convert(key, value, inner[0])
    if kind is Secret:
        if isinstance(value, Secret):
            return value
        try:
            return Secret(value)
        except ValueError as exc:
            raise EdgeConfigError(
                f"config key '{key}' must name a secret, not hold it: {exc}; inline values "
                "are refused (value not shown)"
            ) from None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise EdgeConfigError(f"config key '{key}' must be true or false, {shown(key, value)}")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise EdgeConfigError(f"config key '{key}' must be an integer, {shown(key, value)}")
        try:
            return int(value)
        except ValueError:
            raise EdgeConfigError(
                f"config key '{key}' must be an integer, {shown(key, value)}"
            ) from None
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise EdgeConfigError(f"config key '{key}' must be a number, {shown(key, value)}")
        try:
            return float(value)
        except ValueError:
            raise EdgeConfigError(
                f"config key '{key}' must be a number, {shown(key, value)}"
            ) from None
    if kind is str:
        if not isinstance(value, str):
            raise EdgeConfigError(f"config key '{key}' must be a string, {shown(key, value)}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise EdgeConfigError(f"config key '{key}' must be a list, {shown(key, value)}")
        item = args[0] if args else Any
        return tuple(convert(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise EdgeConfigError(f"config key '{key}' must be an object, {shown(key, value)}")
        return dict(value)
    return value


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of an options class (resolving them is most of the cost of
    building a plugin, which Harvester does every cycle in every thread)."""
    return typing.get_type_hints(cls)


def parse_config(cls: type[T], kwargs: Mapping[str, Any], owner: str) -> T:
    """Build ``cls`` (a dataclass) from the known keys of ``kwargs``.

    Fields without a default are required.  After conversion the dataclass's own
    ``__post_init__`` may check ranges with ``check()``.
    """
    hints = _type_hints(cls)  # type: ignore[arg-type]  # classes are hashable
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in kwargs and kwargs[f.name] is not None:
            try:
                values[f.name] = convert(f.name, kwargs[f.name], hints[f.name])
            except EdgeConfigError as exc:
                raise EdgeConfigError(f"{owner}: {exc}") from None
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise EdgeConfigError(f"{owner}: required config key '{f.name}' is missing")
    try:
        return cls(**values)
    except EdgeConfigError as exc:
        raise EdgeConfigError(redact(f"{owner}: {exc}", kwargs)) from None
