"""A thin, safe wrapper of the Slurm command line for the loopback gateways.

The loopback gateways answer API calls from a *real* Slurm cluster so that the plugins are
tested against real scheduler semantics (pending -> running -> purged from squeue -> final
state only in sacct).  Everything here runs with list arguments (never a shell), explicit
timeouts and validated ids/names, because API callers choose part of the command line.

Slurm 22.05 quirks handled here (see shared/REAL_SLURM.md): ``sacct --json`` loses exit codes
and ``squeue --json`` ignores ``-j``, so both commands use delimited text output; ``squeue -j``
with only unknown/purged ids fails with "Invalid job id specified", which means "no rows".
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Field separator for squeue/sacct text output: a control character cannot appear in a
#: job name or comment typed into a batch script, unlike ``|``.
_SEP = "\x1f"

_JOBID_RE = re.compile(r"^[0-9]{1,12}$")
#: A job id as Slurm commands take it: plain ``N``, an array task ``N_M`` or a heterogeneous
#: job component ``N+M`` (no ranges, steps, lists or options).
_JOBREF_RE = re.compile(r"^[0-9]{1,12}(?:_[0-9]{1,10}|\+[0-9]{1,4})?$")
# A leading letter/digit/underscore: nothing can ever look like an option.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+:@-]{0,199}$")
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
#: One sbatch long option as ``LocalSlurm.submit`` takes it: ``--name`` or ``--name=value``
#: (a value may hold anything but NUL; the IRI gateway refuses control characters in the
#: spec before, S3M's slurmrestd-like parser passes a string as it is).
_OPTION_RE = re.compile(r"^--[a-z][a-z0-9-]*(=[^\x00]*)?\Z", re.DOTALL)

# (row key, squeue format code): keys follow the SFAPI squeue output model.
SQUEUE_FIELDS: tuple[tuple[str, str], ...] = (
    ("jobid", "%i"),
    ("name", "%j"),
    ("comment", "%k"),
    ("state", "%T"),
    ("st", "%t"),
    ("reason", "%r"),
    ("partition", "%P"),
    ("nodes", "%D"),
    ("cpus", "%C"),
    ("nodelist", "%N"),
    ("nodelist(reason)", "%R"),
    ("time_left", "%L"),
    ("time", "%M"),
    ("time_limit", "%l"),
    ("submit_time", "%V"),
    ("start_time", "%S"),
    ("end_time", "%e"),
    ("user", "%u"),
    ("uid", "%U"),
    ("account", "%a"),
    ("qos", "%q"),
    ("priority", "%Q"),
    ("work_dir", "%Z"),
    ("command", "%o"),
)

# sacct --format field names; row keys are their lower-case forms (SFAPI sacct model).
SACCT_FIELDS: tuple[str, ...] = (
    "JobID",
    "JobIDRaw",
    "JobName",
    "State",
    "ExitCode",
    "DerivedExitCode",
    "Start",
    "End",
    "Elapsed",
    "ElapsedRaw",
    "NNodes",
    "NCPUS",
    "NodeList",
    "Reason",
    "User",
    "UID",
    "Account",
    "QOS",
    "Partition",
    "Submit",
    "Timelimit",
    "WorkDir",
    "Comment",
    "Cluster",
)

#: sacct normally starts at midnight today; accounting of older jobs must stay visible.
SACCT_START = "2020-01-01"


class SlurmError(RuntimeError):
    """A Slurm command could not answer (timeout, controller down, bad arguments).

    Distinct from "no rows": callers must not read a failed query as "job gone".
    """


def validate_jobids(jobids: Iterable[str | int]) -> list[str]:
    """Return the ids as strings: plain ``N``, array task ``N_M`` or het component ``N+M``.

    Anything else (ranges like ``N_[1-3]``, steps ``N.0``, lists, options) is refused, so an
    id can never become an option or widen a query.
    """
    out = [str(j).strip() for j in jobids]
    bad = [j for j in out if not _JOBREF_RE.fullmatch(j)]
    if bad:
        raise ValueError(f"invalid job id(s): {', '.join(repr(b[:20]) for b in bad[:5])}")
    return out


def validate_names(names: Iterable[str], what: str = "name") -> list[str]:
    """Return names from a safe charset, so they can never become options or comma lists."""
    out = [str(n).strip() for n in names]
    pattern = _USER_RE if what in ("user", "partition") else _NAME_RE
    bad = [n for n in out if not pattern.match(n)]
    if bad:
        raise ValueError(f"invalid {what}(s): {', '.join(repr(b[:40]) for b in bad[:5])}")
    return out


def _clean(value: str) -> str:
    """Normalise Slurm's placeholder for an unset string to an empty string."""
    return "" if value == "(null)" else value


class LocalSlurm:
    """Run sbatch/squeue/sacct/scancel against the cluster named by ``slurm_conf``.

    :param slurm_conf: path of ``slurm.conf``; default ``$SLURM_CONF`` (or Slurm's default).
    :param timeout: seconds any single command may take before it counts as failed.
    """

    def __init__(self, slurm_conf: str | os.PathLike[str] | None = None, timeout: float = 30.0):
        conf = str(slurm_conf) if slurm_conf is not None else os.environ.get("SLURM_CONF")
        self.slurm_conf: str | None = conf
        self.timeout = timeout

    # ------------------------------------------------------------------ plumbing
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.slurm_conf:
            env["SLURM_CONF"] = self.slurm_conf
        return env

    def _run(
        self,
        argv: Sequence[str],
        stdin: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run one Slurm command; raise SlurmError when it cannot run or times out.

        ``env`` replaces our environment for the command (``SLURM_CONF`` is always set).
        """
        if env is None:
            run_env = self._env()
        else:
            run_env = dict(env)
            if self.slurm_conf:
                run_env["SLURM_CONF"] = self.slurm_conf
        try:
            # Never inherit our stdin: a Slurm command waiting on it would hang the caller.
            return subprocess.run(
                list(argv),
                input=stdin if stdin is not None else "",
                cwd=cwd,
                env=run_env,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SlurmError(f"{argv[0]} timed out after {self.timeout:g} s") from exc
        except OSError as exc:
            raise SlurmError(f"{argv[0]} could not run: {exc.strerror or exc}") from exc

    @staticmethod
    def _message(proc: subprocess.CompletedProcess[str]) -> str:
        text = (proc.stderr or "").strip() or (proc.stdout or "").strip()
        return text or f"exit status {proc.returncode}"

    # ------------------------------------------------------------------ commands
    def available(self) -> bool:
        """True when ``sinfo`` reaches the controller (used to skip or fail tests)."""
        try:
            return self._run(["sinfo", "-h", "-o", "%P"]).returncode == 0
        except SlurmError:
            return False

    def sbatch(
        self,
        script_text: str | None,
        cwd: str | os.PathLike[str],
        script_path: str | os.PathLike[str] | None = None,
        args: Sequence[str] = (),
    ) -> tuple[str | None, str | None]:
        """Submit a batch script and return ``(job_id, None)`` or ``(None, sbatch's message)``.

        The script goes in on stdin so no temporary file is needed; with ``script_path`` the
        file is submitted instead, which is the only way to pass ``args`` to the script.
        """
        argv = ["sbatch", "--parsable"]
        if script_path is None and not script_text:
            return None, "empty batch script"
        if script_path is not None:
            argv += ["--", str(script_path), *[str(a) for a in args]]
        elif args:
            return None, "script arguments need a script file"
        try:
            proc = self._run(argv, stdin=script_text if script_path is None else None, cwd=cwd)
        except SlurmError as exc:
            return None, str(exc)
        return self._submitted(proc)

    def _submitted(self, proc: subprocess.CompletedProcess[str]) -> tuple[str | None, str | None]:
        """(job id, None) from ``sbatch --parsable``'s answer, or (None, why)."""
        if proc.returncode != 0:
            return None, self._message(proc)
        first = (proc.stdout or "").strip().splitlines()
        jobid = first[0].split(";", 1)[0].strip() if first else ""
        if not _JOBID_RE.match(jobid):
            return None, f"unexpected sbatch output: {jobid[:80]!r}"
        return jobid, None

    def squeue(
        self,
        jobids: Iterable[str | int] | None = None,
        names: Iterable[str] | None = None,
        user: str | None = None,
        partition: str | None = None,
    ) -> list[dict[str, str]]:
        """Return SFAPI-shaped squeue rows (all strings) for queued/running/just-ended jobs."""
        ids = None if jobids is None else validate_jobids(jobids)
        if ids == []:
            return []  # an empty id list must not widen the query to every job
        argv = ["squeue", "-h", "-o", _SEP.join(code for _, code in SQUEUE_FIELDS)]
        argv += self._filters(ids, names, user, partition, user_flag="-u", part_flag="-p")
        proc = self._run(argv)
        if proc.returncode != 0:
            if "Invalid job id specified" in (proc.stderr or ""):
                return []  # only unknown or already purged ids: nothing queued
            raise SlurmError(f"squeue failed: {self._message(proc)}")
        keys = [k for k, _ in SQUEUE_FIELDS]
        return self._parse(proc.stdout, keys)

    def sacct(
        self,
        jobids: Iterable[str | int] | None = None,
        names: Iterable[str] | None = None,
        user: str | None = None,
        partition: str | None = None,
    ) -> list[dict[str, str]]:
        """Return job-level (``-X``) accounting rows; exit codes read like ``3:0``."""
        ids = None if jobids is None else validate_jobids(jobids)
        if ids == []:
            return []
        argv = ["sacct", "-X", "-n", "-P", f"--delimiter={_SEP}", "-S", SACCT_START]
        argv += ["--format=" + ",".join(SACCT_FIELDS)]
        if user is None:
            argv.append("-a")
        argv += self._filters(ids, names, user, partition, user_flag="-u", part_flag="-r")
        proc = self._run(argv)
        if proc.returncode != 0:
            raise SlurmError(f"sacct failed: {self._message(proc)}")
        return self._parse(proc.stdout, [f.lower() for f in SACCT_FIELDS])

    def scancel(self, jobids: Iterable[str | int]) -> str | None:
        """Cancel jobs; return scancel's message on failure, None on success."""
        ids = validate_jobids(jobids)
        if not ids:
            return "no job ids given"
        try:
            # 22.05's scancel exits 0 and prints nothing for unknown ids unless verbose.
            proc = self._run(["scancel", "-v", *ids])
        except SlurmError as exc:
            return str(exc)
        errors = [line for line in (proc.stderr or "").splitlines() if "error:" in line]
        if errors:
            return "\n".join(errors)
        return self._message(proc) if proc.returncode != 0 else None

    def scancel_plain(self, jobids: Iterable[str | int]) -> tuple[int, str, str]:
        """Run ``scancel ID...`` exactly as a user would (no ``-v``): ``(exit, stdout, stderr)``.

        For the command utility, which must report what real scancel prints (22.05 prints
        nothing and exits 0 for a job that already ended).
        """
        ids = validate_jobids(jobids)
        if not ids:
            raise ValueError("no job ids given")
        proc = self._run(["scancel", *ids])
        return proc.returncode, proc.stdout or "", proc.stderr or ""

    def submit(
        self,
        script_text: str,
        options: Sequence[str],
        cwd: str | os.PathLike[str],
        environment: Mapping[str, str] | None = None,
    ) -> tuple[str | None, str | None]:
        """``sbatch --parsable OPTIONS`` with the script on stdin: ``(job_id, None)`` or
        ``(None, sbatch's message)``.

        Each option is one ``--long-name[=value]`` argument (never a bare value, so nothing
        can be read as the script path or become an option of its own; the value without
        NUL, which no argument can carry).  Options sbatch refuses come back as its message,
        like any other refusal.  With ``environment`` sbatch runs in exactly that
        environment (plus ``SLURM_CONF``), which the job inherits (sbatch's default
        ``--export=ALL``): the job gets the environment its submitter asked for, as
        slurmrestd does it.
        """
        bad = [o for o in options if not _OPTION_RE.match(o)]
        if bad:
            return None, f"refused sbatch option(s): {', '.join(repr(b[:40]) for b in bad[:5])}"
        if not script_text:
            return None, "empty batch script"
        sbatch = shutil.which("sbatch", path=self._env().get("PATH")) or "sbatch"
        try:
            proc = self._run(
                [sbatch, "--parsable", *options], stdin=script_text, cwd=cwd, env=environment
            )
        except SlurmError as exc:
            return None, str(exc)
        return self._submitted(proc)

    def squeue_json(self, user_id: int | None = None) -> list[dict[str, Any]]:
        """The jobs of ``squeue --json`` (queued, running and just ended), optionally only
        those of one uid (22.05's ``--json`` ignores ``-j``/``-u``, so we filter here)."""
        proc = self._run(["squeue", "--json"])
        if proc.returncode != 0:
            raise SlurmError(f"squeue failed: {self._message(proc)}")
        try:
            jobs = json.loads(proc.stdout or "{}").get("jobs", [])
        except (ValueError, AttributeError) as exc:
            raise SlurmError(f"squeue --json gave unreadable output: {exc}") from exc
        if not isinstance(jobs, list):
            raise SlurmError("squeue --json gave no job list")
        return [
            j
            for j in jobs
            if isinstance(j, dict) and (user_id is None or j.get("user_id") == user_id)
        ]

    def sacct_fields(
        self, jobids: Iterable[str | int], fields: Sequence[str]
    ) -> list[dict[str, str]]:
        """Job-level accounting rows with the given ``--format`` fields (row keys as given),
        times as UNIX seconds (``SLURM_TIME_FORMAT=%s``; unset ones read ``Unknown``/``None``)."""
        ids = validate_jobids(jobids)
        if not ids:
            return []
        if not all(re.fullmatch(r"[A-Za-z]+", f) for f in fields):
            raise ValueError("sacct fields are plain names")
        argv = ["sacct", "-X", "-n", "-P", f"--delimiter={_SEP}", "-a", "-S", SACCT_START]
        argv += ["--format=" + ",".join(fields), "-j", ",".join(ids)]
        env = self._env()
        env["SLURM_TIME_FORMAT"] = "%s"
        proc = self._run(argv, env=env)
        if proc.returncode != 0:
            raise SlurmError(f"sacct failed: {self._message(proc)}")
        return self._parse(proc.stdout, list(fields))

    def scancel_with(self, jobid: str | int, options: Sequence[str] = ()) -> str | None:
        """``scancel -v OPTIONS ID`` for one job (options like ``--signal=TERM``, ``--full``);
        scancel's error lines on failure, None on success (see :meth:`scancel`)."""
        ids = validate_jobids([jobid])
        bad = [o for o in options if not re.fullmatch(r"--[a-z]+(=[A-Za-z0-9]+)?", o)]
        if bad:
            raise ValueError(f"invalid scancel option: {bad[0][:40]!r}")
        try:
            proc = self._run(["scancel", "-v", *options, *ids])
        except SlurmError as exc:
            return str(exc)
        errors = [line for line in (proc.stderr or "").splitlines() if "error:" in line]
        if errors:
            return "\n".join(errors)
        return self._message(proc) if proc.returncode != 0 else None

    def partitions(self) -> list[dict[str, str]]:
        """One row per partition: name, avail (up/down), nodes (count), nodelist, timelimit,
        cpus (total), default (``*`` suffix of sinfo's name)."""
        proc = self._run(["sinfo", "-h", "-o", _SEP.join(("%P", "%a", "%D", "%N", "%l", "%C"))])
        if proc.returncode != 0:
            raise SlurmError(f"sinfo failed: {self._message(proc)}")
        rows = self._parse(proc.stdout, ["name", "avail", "nodes", "nodelist", "timelimit", "cpus"])
        for row in rows:
            row["default"] = "yes" if row["name"].endswith("*") else "no"
            row["name"] = row["name"].rstrip("*")
            row["cpus"] = row["cpus"].rsplit("/", 1)[-1]  # allocated/idle/other/total
        return rows

    def cluster_name(self) -> str:
        """``ClusterName`` of the configuration (empty when it cannot be read)."""
        conf = self.slurm_conf or "/etc/slurm/slurm.conf"
        try:
            text = Path(conf).read_text(errors="replace")
        except OSError:
            return ""
        match = re.search(r"^\s*ClusterName\s*=\s*(\S+)", text, re.MULTILINE | re.IGNORECASE)
        return match.group(1) if match else ""

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _filters(
        jobids: list[str] | None,
        names: Iterable[str] | None,
        user: str | None,
        partition: str | None,
        user_flag: str,
        part_flag: str,
    ) -> list[str]:
        argv: list[str] = []
        if jobids:
            argv += ["-j", ",".join(jobids)]
        if names is not None:
            argv.append("--name=" + ",".join(validate_names(names)))
        if user is not None:
            argv += [user_flag, validate_names([user], "user")[0]]
        if partition is not None:
            argv += [part_flag, validate_names([partition], "partition")[0]]
        return argv

    @staticmethod
    def _parse(stdout: str, keys: list[str]) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        for line in (stdout or "").splitlines():
            if not line.strip():
                continue
            values = line.split(_SEP)
            if len(values) != len(keys):
                log.warning("skipping malformed Slurm output line (%d fields)", len(values))
                continue
            rows.append({k: _clean(v.strip()) for k, v in zip(keys, values, strict=True)})
        return rows


def default_slurm_conf() -> Path | None:
    """The conf of the repository's test cluster (scripts/slurm-cluster.sh), if present."""
    env = os.environ.get("SLURM_CONF")
    if env:
        return Path(env)
    path = Path(os.environ.get("HEDGE_SLURM_DIR", "/tmp/hedge-slurm")) / "etc" / "slurm.conf"
    return path if path.exists() else None
