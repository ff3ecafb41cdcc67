"""The ends of many log files in one command: ``tail -v -c N -- p1 p2 ...`` and its answer.

Batch logs can be large; only their last ``N`` bytes go to PanDA (``monitor`` with
``fetchBatchLog``).  GNU tail with ``-v`` heads every file with ``==> PATH <==`` (the second
and later after an empty line) and names the files it cannot open on stderr
(``tail: cannot open 'PATH' for reading: No such file or directory``), so the output is split
exactly by the known paths, in order.  When a file holds a line looking like a header (the
header of a path shows twice), or a part is longer than ``N`` bytes, nothing is guessed: the
caller reads those files one by one.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

_TAIL_ERROR = re.compile(
    r"^(?:\S*/)?tail: (?:cannot open |error reading )?'?(?P<path>.+?)'?(?: for reading)?: "
    r"(?P<why>[^:]+)$"
)


def tail_command(paths: Sequence[str], max_bytes: int) -> str:
    """The command line (paths quoted for the shell the facility may run it in)."""
    return f"tail -v -c {int(max_bytes)} -- " + " ".join(shlex.quote(p) for p in paths)


def tail_of(text: str, max_bytes: int) -> str:
    """The last ``max_bytes`` bytes of ``text`` (UTF-8), cut at a character boundary."""
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return text
    return data[-max_bytes:].decode("utf-8", "ignore")


def split_tail_output(
    paths: Sequence[str], stdout: str, stderr: str, max_bytes: int
) -> tuple[dict[str, str | None], list[str]]:
    """``(texts, unsplit)``: path -> its tail (None: no such file) and the paths whose part
    could not be told apart (read them one by one).  Paths tail could not read for another
    reason are in neither."""
    missing: set[str] = set()
    unreadable: set[str] = set()
    wanted = set(paths)
    for line in stderr.splitlines():
        m = _TAIL_ERROR.match(line.strip())
        if m and m.group("path") in wanted:
            why = m.group("why").lower()
            (missing if "no such file" in why else unreadable).add(m.group("path"))
    present = [p for p in paths if p not in missing and p not in unreadable]
    texts: dict[str, str | None] = dict.fromkeys(missing)
    starts: list[tuple[int, int]] = []  # (header start, content start) per present path
    pos = 0
    for i, path in enumerate(present):
        header = ("" if i == 0 else "\n") + f"==> {path} <==\n"
        at = stdout.find(header, pos)
        if at < 0 or stdout.count(f"==> {path} <==\n") != 1:
            return texts, present  # the output is not what tail -v writes: read each
        starts.append((at, at + len(header)))
        pos = at + len(header)
    limit = max_bytes * 4 + 16  # decoded text may hold replacement characters
    for i, path in enumerate(present):
        end = starts[i + 1][0] if i + 1 < len(present) else len(stdout)
        part = stdout[starts[i][1] : end]
        if len(part.encode("utf-8", "replace")) > limit:
            return texts, present
        texts[path] = part
    return texts, []
