"""Batch-script rendering compatible with stock Harvester Slurm templates, but safe.

Stock Harvester renders with ``template.format_map(SafeDict(values))``: ``{name}`` is replaced,
unknown ``{name}`` stays as it is, ``{{``/``}}`` are literal braces.  Operators' templates rely on
that, so we keep the syntax and the output (a value of only "safe" characters is inserted as it
is, byte for byte what stock gives).  Unlike stock, a value with any other character is
shell-quoted, and a value with a control character (a newline could start a new ``#SBATCH`` line
or command) is refused with an error naming the placeholder.  ``{name!raw}`` inserts a value
unquoted; only blocks that we build ourselves from validated parts (e.g. ``#SBATCH`` directive
lists) are marked raw.  Anything else in braces (bash ``{1..3}``, ``{ cmd; }``) is left alone.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from ..errors import EdgeConfigError

# Characters that never need quoting in a shell word or an #SBATCH directive.
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_./:@%+=,~^-]*\Z")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_FIELD = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)(?:!(raw))?\}")


class TemplateValueError(EdgeConfigError):
    """A value cannot be placed into a batch script safely."""


def shell_word(name: str, value: object) -> str:
    """Return ``value`` as one shell word: unchanged when safe, else single-quoted.

    ``name`` is only used to say which placeholder or field was refused.
    """
    text = "" if value is None else str(value)
    if CONTROL_CHARS.search(text):
        raise TemplateValueError(f"value for '{name}' contains a control character (newline?)")
    if _SAFE_VALUE.match(text) and text:
        return text
    return shlex.quote(text)


def check_raw(name: str, value: object) -> str:
    """A raw block may span lines but must not carry other control characters or NULs."""
    text = "" if value is None else str(value)
    if re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text):
        raise TemplateValueError(f"raw value for '{name}' contains a control character")
    return text


def render(template: str, context: Mapping[str, object]) -> str:
    """Fill ``template`` from ``context`` with stock-Harvester syntax and shell quoting."""

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name, raw = match.group(1), match.group(2)
        if name not in context:
            return token
        value = context[name]
        return check_raw(name, value) if raw else shell_word(name, value)

    return _FIELD.sub(substitute, template)
