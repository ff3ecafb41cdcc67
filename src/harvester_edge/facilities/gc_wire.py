"""The shell functions Globus Compute runs for us on the login node, and how we read them.

Every ``ShellFunction.cmd`` here is a FIXED text: the SDK runs ``cmd.format(**kwargs)`` and
hands the result to bash, so every value (a batch script, tags, ids, paths) travels as a
base64 kwarg (only ``[A-Za-z0-9+/=]``: nothing a shell or ``str.format`` reads) and is decoded
by the command itself.  Literal braces in the commands are doubled for ``str.format``.

- ``SBATCH``: the rendered batch script piped to ``sbatch --parsable`` in the submit dir.
- ``PROBE``: one task answers a cycle's questions: the user's live jobs (one ``squeue``),
  accounting for the ids and tags asked (one ``sacct`` each), the files asked (the pilots'
  summaries, base64 per file, capped), the ends of the log files asked (``tail -c N``: the
  finished workers' batch logs, asked with their summaries), and in task mode the markers
  the pilot tasks wrote (``<tag>.job``: its Slurm job id, ``<tag>.rc``: its return code).
- ``SCANCEL``: one ``scancel`` for a list of ids (read with the SFAPI ``scancel`` reader).
- ``PILOT`` (task mode): the batch script run as the task itself inside a block of the user
  endpoint's Slurm provider; it records ``$SLURM_JOB_ID`` first, its return code last; its
  output goes to the spec's batch log path (sbatch's ``--output`` in batch mode).

The probe's output is line-based: ``Q|id|name|state|reason|nodes`` (squeue),
``A|id|name|state|exitcode|nodes`` (sacct), ``F|path64|text64`` / ``N|path64`` (a file, or
none), ``T|path64|tail64`` / ``U|path64`` (a file's end, or no such file),
``M|tag|jobid|rc`` (markers), ``E|what|rc|text`` (a command failed) and ``END``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..edge.jobs import JobRecord
from ..errors import EdgeAPIError
from .passthrough import record_from_row

#: shell-function names (the registered functions' names; the test double reads them)
SBATCH_NAME = "hedge_sbatch"
PROBE_NAME = "hedge_probe"
SCANCEL_NAME = "hedge_scancel"
PILOT_NAME = "hedge_pilot"

#: lines of output a shell function keeps (the SDK's default, 1000, would cut a probe)
SNIPPET_LINES = 1_000_000
#: bytes of one file a probe returns (pilot summaries are a few kB)
FILE_CAP = 262_144

_DECODE = 'd() {{ printf %s "$1" | base64 -d; }}\n'

SBATCH = _DECODE + 'cd "$(d {cwd})" || exit 1\nd {script} | sbatch --parsable\n'

PROBE = (
    _DECODE + "ids=$(d {ids}); names=$(d {names}); files=$(d {files}); marks=$(d {marks})\n"
    "tails=$(d {tails}); tb=$(d {tailbytes}); case $tb in ''|*[!0-9]*) tb=0;; esac\n"
    "u=$(id -un)\n"
    "out=$(squeue -h -u \"$u\" -o '%i|%j|%T|%r|%N' 2>&1); rc=$?\n"
    'if [ $rc -eq 0 ]; then printf "%s\\n" "$out" | grep -v "^$" | sed "s/^/Q|/"; '
    'else echo "E|squeue|$rc|$(printf "%s" "$out" | head -n 1)"; fi\n'
    'acct() {{ out=$(sacct -X -n -P -o JobID,JobName,State,ExitCode,NodeList "$@" 2>&1); rc=$?;'
    ' if [ $rc -eq 0 ]; then printf "%s\\n" "$out" | grep -v "^$" | sed "s/^/A|/"; '
    'else echo "E|sacct|$rc|$(printf "%s" "$out" | head -n 1)"; fi; }}\n'
    '[ -n "$ids" ] && acct -j "$ids"\n'
    '[ -n "$names" ] && acct -S now-30days --name="$names"\n'
    'if [ -n "$files" ]; then while IFS= read -r p; do [ -z "$p" ] && continue; '
    'k=$(printf %s "$p" | base64 -w0); '
    'if [ -f "$p" ]; then echo "F|$k|$(head -c ' + str(FILE_CAP) + ' "$p" | base64 -w0)"; '
    'else echo "N|$k"; fi; done <<< "$files"; fi\n'
    'if [ -n "$tails" ] && [ "$tb" -gt 0 ]; then while IFS= read -r p; do [ -z "$p" ] && continue; '
    'k=$(printf %s "$p" | base64 -w0); '
    'if [ -f "$p" ]; then echo "T|$k|$(tail -c "$tb" -- "$p" | base64 -w0)"; '
    'else echo "U|$k"; fi; done <<< "$tails"; fi\n'
    'if [ -n "$marks" ] && [ -d "$marks" ]; then '
    'find "$marks" -maxdepth 1 -type f -mtime +30 -delete 2>/dev/null; '
    'for f in "$marks"/*.job; do [ -f "$f" ] || continue; t=${{f##*/}}; t=${{t%.job}}; '
    'j=$(head -c 64 "$f" | tr -dc "0-9_+"); r=$(head -c 16 "${{f%.job}}.rc" 2>/dev/null | '
    'tr -dc "0-9"); echo "M|$t|$j|$r"; done; fi\n'
    "echo END\n"
)

SCANCEL = _DECODE + 'read -ra ids <<< "$(d {ids})"\nscancel "${{ids[@]}}"\n'

PILOT = (
    _DECODE + 'm="$(d {marks})/$(d {tag})"; mkdir -p "$(d {marks})" || exit 1\n'
    'printf "%s\\n" "${{SLURM_JOB_ID:-}}" > "$m.job"\n'
    'cd "$(d {cwd})" || exit 1\n'
    'f=$(mktemp) || exit 1; d {script} > "$f"\n'
    'o=$(d {out}); if [ -n "$o" ]; then bash "$f" > "$o" 2>&1; else bash "$f"; fi; rc=$?\n'
    'rm -f "$f"; printf "%s\\n" "$rc" > "$m.rc"; exit $rc\n'
)

_B64 = re.compile(r"^[A-Za-z0-9+/=]*$")
#: job ids we put on a command line: N, N_M (array task), N+M (het component)
JOB_ID = re.compile(r"^[0-9]{1,12}(?:[_+][0-9]{1,9})?$")
#: tags (job names) we put in a probe or a marker path
TAG = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def b64(text: str) -> str:
    """A value as a kwarg: base64, never anything a shell or ``str.format`` interprets."""
    out = base64.b64encode(text.encode()).decode("ascii")
    assert _B64.match(out)
    return out


def unb64(text: str) -> str:
    return base64.b64decode(text.encode("ascii"), validate=True).decode("utf-8", "replace")


def sbatch_kwargs(script: str, cwd: str) -> dict[str, str]:
    return {"script": b64(script), "cwd": b64(cwd or ".")}


def pilot_kwargs(script: str, cwd: str, tag: str, marks: str, out: str = "") -> dict[str, str]:
    """Task mode's pilot; ``out``: the batch log's path (the script's output goes there, as
    sbatch's would: the monitor copies its end to Harvester), "" to leave it to the task."""
    check_tags([tag])
    if out and ("\n" in out or not out.startswith("/")):
        raise EdgeAPIError(f"globus compute: batch log path a pilot cannot write: {out[:80]!r}")
    return {"script": b64(script), "cwd": b64(cwd or "."), "tag": b64(tag), "marks": b64(marks),
            "out": b64(out)}  # fmt: skip


def probe_kwargs(
    ids: Iterable[str],
    tags: Iterable[str],
    files: Iterable[str],
    marks: str,
    tails: Iterable[str] = (),
    tail_bytes: int = 0,
) -> dict[str, str]:
    """A probe's kwargs: the ids, tags, whole files and file ends (``tail_bytes`` each) to
    read, every one base64 (decoded by the command, never spliced into it)."""
    ids, tags, files = sorted(set(ids)), sorted(set(tags)), sorted(set(files))
    tails = sorted(set(tails))
    check_ids(ids)
    check_tags(tags)
    bad = [f for f in files + tails if "\n" in f or not f.startswith("/")]
    if bad:
        raise EdgeAPIError(f"globus compute: file paths a probe cannot read: {bad[:3]}")
    if tails and not (isinstance(tail_bytes, int) and tail_bytes > 0):
        raise EdgeAPIError(f"globus compute: tail bytes must be > 0, got {tail_bytes!r}")
    return {
        "ids": b64(",".join(ids)),
        "names": b64(",".join(tags)),
        "files": b64("\n".join(files)),
        "marks": b64(marks),
        "tails": b64("\n".join(tails)),
        "tailbytes": b64(str(int(tail_bytes)) if tails else "0"),
    }


def scancel_kwargs(ids: Sequence[str]) -> dict[str, str]:
    check_ids(ids)
    return {"ids": b64(" ".join(ids))}


def check_ids(ids: Iterable[str]) -> None:
    bad = [i for i in ids if not JOB_ID.match(i)]
    if bad:
        raise EdgeAPIError(f"globus compute: not Slurm job ids: {bad[:3]}")


def check_tags(tags: Iterable[str]) -> None:
    bad = [t for t in tags if not TAG.match(t)]
    if bad:
        raise EdgeAPIError(f"globus compute: job names we will not query: {bad[:3]!r}")


def parse_sbatch(stdout: str) -> str | None:
    """``sbatch --parsable``'s job id (``123`` or ``123;cluster``), None if there is none."""
    for line in reversed(stdout.strip().splitlines()):
        head = line.strip().split(";", 1)[0]
        if JOB_ID.match(head):
            return head
    return None


@dataclass
class ProbeAnswer:
    """What one probe saw (see the module docstring for the lines)."""

    live: dict[str, JobRecord] = field(default_factory=dict)
    accounting: dict[str, JobRecord] = field(default_factory=dict)
    files: dict[str, str | None] = field(default_factory=dict)
    #: the ends of the log files asked (None: no such file)
    tails: dict[str, str | None] = field(default_factory=dict)
    #: task mode: tag -> (Slurm job id of its block, the task's return code or None)
    markers: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def check_accounting(self) -> None:
        """Raise (transient) when the probe's ``sacct`` failed: a job absent from the live
        listing then could not be asked about, which is not "seen nowhere"."""
        failed = [e for e in self.errors if e.startswith("sacct|")]
        if failed:
            raise EdgeAPIError(f"globus compute probe: sacct failed: {failed[0]}", transient=True)

    def by_name(self, tags: Iterable[str]) -> dict[str, list[JobRecord]]:
        wanted = set(tags)
        found: dict[str, dict[str, JobRecord]] = {}
        for rec in list(self.accounting.values()) + list(self.live.values()):
            if rec.name in wanted:  # live rows last: they win for a job not yet final
                seen = found.setdefault(rec.name, {})
                old = seen.get(rec.job_id)
                if old is None or not (old.state.is_final and old.confirmed_final):
                    seen[rec.job_id] = rec
        return {tag: list(jobs.values()) for tag, jobs in found.items()}

    def record(self, job_id: str) -> JobRecord | None:
        """The live record of a job still queued or running, else its accounting record,
        else a live record of a job ending now (unconfirmed)."""
        live, acct = self.live.get(job_id), self.accounting.get(job_id)
        if live is not None and not live.state.is_final:
            return live
        return acct if acct is not None else live


def _split(line: str, tail: int) -> tuple[str, str, list[str]] | None:
    """``id|name...|t1|..|tN``: a job name may hold ``|``; the id is first, fields last."""
    parts = line.split("|")
    if len(parts) < 2 + tail:
        return None
    return parts[0], "|".join(parts[1 : len(parts) - tail]), parts[len(parts) - tail :]


def parse_probe(stdout: str) -> ProbeAnswer:
    """A probe's output; raises a transient ``EdgeAPIError`` when it is cut short or squeue
    failed (then nothing it says about jobs can be trusted as complete)."""
    answer = ProbeAnswer()
    complete = False
    for raw in stdout.splitlines():
        kind, _, rest = raw.partition("|")
        if raw.strip() == "END":
            complete = True
        elif kind == "Q":
            got = _split(rest, 3)
            if got and got[0].strip():
                job, name, (state, reason, nodes) = got
                row = {"jobid": job, "name": name, "state": state, "reason": reason,
                       "nodelist": nodes}  # fmt: skip
                rec = record_from_row(row, accounting=False)
                answer.live[rec.job_id] = rec
        elif kind == "A":
            got = _split(rest, 3)
            if got and got[0].strip() and "." not in got[0]:
                job, name, (state, exitcode, nodes) = got
                row = {"jobid": job, "jobname": name, "state": state, "exitcode": exitcode,
                       "nodelist": nodes}  # fmt: skip
                rec = record_from_row(row, accounting=True, name_key="jobname")
                answer.accounting[rec.job_id] = rec
        elif kind in ("F", "N"):
            path64, _, text64 = rest.partition("|")
            try:
                path = unb64(path64)
                answer.files[path] = unb64(text64) if kind == "F" else None
            except (binascii.Error, ValueError):
                continue
        elif kind in ("T", "U"):
            path64, _, text64 = rest.partition("|")
            try:
                path = unb64(path64)
                answer.tails[path] = unb64(text64) if kind == "T" else None
            except (binascii.Error, ValueError):
                continue
        elif kind == "M":
            tag, _, more = rest.partition("|")
            job, _, rc = more.partition("|")
            if TAG.match(tag) and JOB_ID.match(job.strip()):
                code = int(rc) if rc.strip().isdigit() else None
                answer.markers[tag] = (job.strip(), code)
        elif kind == "E":
            answer.errors.append(rest[:300])
    if not complete:
        raise EdgeAPIError("globus compute probe: output cut short (no END line)", transient=True)
    if any(e.startswith("squeue|") for e in answer.errors):
        why = answer.errors[0]
        raise EdgeAPIError(f"globus compute probe: squeue failed: {why}", transient=True)
    return answer


def missing_dirs(paths: list) -> list:
    """Runs on the endpoint (registered by its source): those of ``paths`` that are not
    directories there (``check --online``)."""
    import os

    return [p for p in paths if not os.path.isdir(p)]
