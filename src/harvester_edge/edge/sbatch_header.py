"""A rendered script's ``#SBATCH`` header, read the way sbatch reads it; the job named by its tag.

SFAPI and Globus Compute hand the script to sbatch, which obeys its ``#SBATCH`` lines;
slurmrestd (S3M) and IRI never read them.  So the job spec takes what the script asks of Slurm
from those same lines, and every facility gets the same job, whether the script is ours or an
operator's own template.  The reading follows sbatch (``src/sbatch/opt.c``): lines from the top
that start with ``#SBATCH`` (or the old ``#SLURM``) until the first line that is neither blank
nor a comment; words split on whitespace, quotes group, a backslash escapes one character, an
unquoted ``#`` starts a comment; ``--key=value``, ``--key value``, ``-N 2`` and ``-N2`` forms;
short options are given their long names; the last value of a key wins.
"""

from __future__ import annotations

import math
import re

from ..errors import EdgeConfigError
from .directives import Directives

__all__ = ["ensure_tag", "memory_mb", "node_count", "read_header", "time_minutes"]

#: sbatch's short options that take a value, by their long names.
_SHORT = {
    "A": "account", "a": "array", "B": "extra-node-info", "b": "begin", "C": "constraint",
    "c": "cpus-per-task", "D": "chdir", "d": "dependency", "e": "error", "F": "nodefile",
    "G": "gpus", "i": "input", "J": "job-name", "L": "licenses", "M": "clusters",
    "m": "distribution", "N": "nodes", "n": "ntasks", "o": "output", "p": "partition",
    "q": "qos", "S": "core-spec", "t": "time", "w": "nodelist", "x": "exclude",
}  # fmt: skip
#: Short options without a value, and the two whose value must be attached (``-I60``).
_SHORT_FLAGS = {"H": "hold", "O": "overcommit", "Q": "quiet", "s": "oversubscribe",
                "v": "verbose", "W": "wait"}  # fmt: skip
_SHORT_OPTIONAL = {"I": "immediate", "k": "no-kill"}
#: Long options that take no value, or one only as ``--key=value``.
_LONG_FLAGS = frozenset(
    "contiguous exclusive get-user-env hold ignore-pbs immediate nice no-kill no-requeue "
    "overcommit oversubscribe parsable propagate quiet reboot requeue spread-job test-only "
    "use-min-nodes verbose wait x11".split()
)

#: Long options that always take a value (``--key value`` may also be two words).
_LONG_VALUES = frozenset(_SHORT.values()) | frozenset(
    "comment export gres gpus-per-node gpus-per-task licenses mail-type mail-user mem "
    "mem-per-cpu mem-per-gpu ntasks-per-node reservation signal time-min wckey".split()
)


def ensure_tag(script: str, tag: str) -> str:
    """Make sure the job's name is the tag, even for an operator's own template: a job under
    any other name is never adopted by its tag.

    Every header line that names the job (``-J``, ``--job-name``, anywhere on the line) gets
    the tag as that name and keeps its other options; with no such line, the tag line goes
    right after the shebang, or after a ``#!/bin/bash`` put in front of a script that has none.
    """
    lines = script.split("\n")
    named = False
    for index, lineno, text in _header_lines(lines):
        try:
            pairs = _options(_words(text, lineno), lineno)
        except EdgeConfigError:
            continue  # sbatch refuses the script anyway; the spec reports the line
        if any(key == "job-name" for key, _ in pairs):
            named = True
            lines[index] = "#SBATCH " + " ".join(
                _option_text(key, tag if key == "job-name" else value) for key, value in pairs
            )
    if named:
        return "\n".join(lines)
    first, _, rest = script.partition("\n")
    if first.startswith("#!"):
        return f"{first}\n#SBATCH --job-name={tag}\n{rest}"
    return f"#!/bin/bash\n#SBATCH --job-name={tag}\n{script}"


_PLAIN = re.compile(r"[\w@%+=:,./-]+\Z")


def _option_text(key: str, value: str | None) -> str:
    """One option as sbatch reads it back: ``--key`` or ``--key=value``, quoted if needed."""
    if value is None:
        return f"--{key}"
    quoted = value if _PLAIN.match(value) else "'" + value.replace("'", "'\"'\"'") + "'"
    return f"--{key}={quoted}"


def _header_lines(lines: list[str]) -> list[tuple[int, int, str]]:
    """(index, line number, text after the prefix) of each header line sbatch reads."""
    found = []
    for index, line in enumerate(lines):
        if line.startswith("#SBATCH"):
            text = line[len("#SBATCH") :]
        elif line.startswith("#SLURM"):
            text = line[len("#SLURM") :]
        else:
            stripped = line.lstrip()
            if stripped and not stripped.startswith("#"):
                break  # the first command ends the header, as in sbatch
            continue
        if text.lower().split()[:1] in (["hetjob"], ["packjob"]):
            break  # later components of a heterogeneous job are not described
        found.append((index, index + 1, text))
    return found


def _words(line: str, lineno: int) -> list[str]:
    """sbatch's ``get_argument`` over one line: quotes, backslash escapes, ``#`` comments."""
    words: list[str] = []
    current: list[str] | None = None
    quote = ""
    chars = iter(line)
    for char in chars:
        if quote:
            if char == quote:
                quote = ""
            else:
                current.append(char)  # type: ignore[union-attr]
            continue
        if char.isspace():
            if current is not None:
                words.append("".join(current))
                current = None
            continue
        if char == "#":
            break
        if current is None:
            current = []
        if char == "\\":
            current.append(next(chars, ""))
        elif char in "\"'":
            quote = char
        else:
            current.append(char)
    if quote:
        raise EdgeConfigError(f"#SBATCH line {lineno}: unmatched {quote} (sbatch refuses it)")
    if current is not None:
        words.append("".join(current))
    return words


def _options(words: list[str], lineno: int) -> list[tuple[str, str | None]]:
    """getopt_long over one line's words: ``(long name, value or None)`` pairs."""
    pairs: list[tuple[str, str | None]] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            break
        if word.startswith("--"):
            key, eq, value = word[2:].partition("=")
            if eq:
                pairs.append((key, value))
            elif key in _LONG_FLAGS:
                pairs.append((key, None))
            elif i < len(words) and (key in _LONG_VALUES or not words[i].startswith("-")):
                pairs.append((key, words[i]))
                i += 1
            elif key in _LONG_VALUES:
                raise EdgeConfigError(f"#SBATCH line {lineno}: --{key} needs a value")
            else:  # an option this list does not know, with no value: read as a flag
                pairs.append((key, None))
            continue
        if not word.startswith("-") or len(word) < 2:
            raise EdgeConfigError(f"#SBATCH line {lineno}: {word!r} is not an sbatch option")
        rest = word[1:]
        while rest:
            char, rest = rest[0], rest[1:]
            if char in _SHORT_FLAGS:
                pairs.append((_SHORT_FLAGS[char], None))
            elif char in _SHORT_OPTIONAL:
                pairs.append((_SHORT_OPTIONAL[char], rest or None))
                rest = ""
            elif char in _SHORT:
                if not rest:
                    if i >= len(words):
                        raise EdgeConfigError(f"#SBATCH line {lineno}: -{char} needs a value")
                    rest, i = words[i], i + 1
                pairs.append((_SHORT[char], rest))
                rest = ""
            else:
                raise EdgeConfigError(f"#SBATCH line {lineno}: unknown sbatch option -{char}")
    return pairs


def read_header(script: str) -> Directives:
    """The ``#SBATCH`` options of ``script`` as sbatch reads them, long names, last value wins
    (each key where it first appeared).  A line sbatch would refuse is an EdgeConfigError."""
    found: dict[str, str | None] = {}
    for _, lineno, text in _header_lines(script.split("\n")):
        for key, value in _options(_words(text, lineno), lineno):
            found[key] = value
    return tuple(found.items())


_TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?\Z")


def time_minutes(value: str) -> int | None:
    """A Slurm ``--time`` value in whole minutes, rounded up as Slurm does; None = no limit.

    Forms: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``; ``INFINITE``,
    ``UNLIMITED`` and ``-1`` ask for no limit.
    """
    text = value.strip()
    if text.upper() in ("INFINITE", "UNLIMITED") or text == "-1":
        return None
    match = _TIME.match(text)
    if not match:
        raise EdgeConfigError(f"#SBATCH --time={value!r} is not a Slurm time limit")
    days, first, second, third = match.groups()
    numbers = [int(first)] + [int(x) for x in (second, third) if x is not None]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = (numbers + [0, 0])[:3]
        total = ((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds
    elif len(numbers) == 3:  # H:M:S
        total = (numbers[0] * 60 + numbers[1]) * 60 + numbers[2]
    else:  # M or M:S
        total = numbers[0] * 60 + (numbers[1] if len(numbers) == 2 else 0)
    return math.ceil(total / 60)


_COUNT = re.compile(r"(\d+)([kKmM]?)\Z")


def node_count(value: str) -> int:
    """The minimum node count of a ``--nodes`` value (``2``, ``2-4``, ``2,4,8``, ``1k``)."""
    counts = []
    for part in re.split(r"[-,:]", value.strip()):
        match = _COUNT.match(part)
        if not match:
            raise EdgeConfigError(f"#SBATCH --nodes={value!r} is not a node count")
        scale = {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]
        counts.append(int(match.group(1)) * scale)
    return max(1, min(counts))


_MEMORY = re.compile(r"(\d+)([KMGT]?)B?\Z", re.IGNORECASE)


def memory_mb(value: str) -> int | None:
    """A ``--mem`` value in MB (default unit MB, K/M/G/T suffixes); ``0`` (all of it) is None."""
    match = _MEMORY.match(value.strip())
    if not match:
        raise EdgeConfigError(f"#SBATCH --mem={value!r} is not a memory size")
    number, unit = int(match.group(1)), match.group(2).upper()
    mb = {"K": math.ceil(number / 1024), "": number, "M": number, "G": number * 1024,
          "T": number * 1024 * 1024}[unit]  # fmt: skip
    return mb or None
