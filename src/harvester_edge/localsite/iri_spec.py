"""The DOE IRI PSI/J ``JobSpec`` as the loopback IRI gateway checks and runs it.

Validation follows the reference server's pydantic models (iri-facility-api-python, API 1.x
and 2.0.0), field by field, with pydantic's error types and messages, so a client sees the
refusals a facility gives:

- ``JobSpec`` forbids unknown top-level fields (``extra_forbidden``); the nested
  ``resources``, ``attributes`` and ``container`` objects allow and silently drop unknown keys
  (the reference hides extras when it serialises).
- Integers are pydantic-lax (``2``, ``2.0``, ``"2"`` and ``true`` are accepted, ``2.5`` and
  ``"x"`` are not) with ``ge=1``; booleans are strict (``"true"`` is refused); strings are
  strict (a number is refused) with ``min_length=1``; ``environment`` and
  ``custom_attributes`` are ``{str: str}``; ``arguments`` is ``[str]``.
- ``executable`` is optional in the model: its absence is a *semantic* refusal (422, "the
  PSI/J JobSpec is syntactically correct but invalid"), checked by :func:`semantic_problems`
  with the gateway's other limits (no containers, known launchers, shell-safe variable names,
  no control characters where a value becomes an sbatch option).

:func:`batch_job` turns a checked spec into a batch script and a list of sbatch long options.
Every value from the spec reaches the script through :func:`shlex.quote` and reaches sbatch as
one ``--name=value`` argument (no shell is ever involved).  The only text inserted as code is
``pre_launch``/``post_launch``, which the spec defines as shell commands ("module load cuda").
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FieldError",
    "SitePolicy",
    "SpecInvalid",
    "batch_job",
    "fingerprint",
    "parse_job_spec",
    "semantic_problems",
]

#: Launchers the gateway knows; ``single`` (PSI/J's default) means "no launcher".
LAUNCHERS = ("single", "srun", "mpirun", "mpiexec")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_OPTION_NAME = re.compile(r"[a-z][a-z0-9-]*\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: sbatch options a custom attribute may not set: the gateway sets them from spec fields, or
#: they would change where the script, its input/output or its identity come from.
RESERVED_OPTIONS = frozenset(
    {
        "account",
        "array",
        "batch",
        "chdir",
        "cpus-per-task",
        "error",
        "exclusive",
        "export",
        "export-file",
        "get-user-env",
        "gid",
        "gpus-per-task",
        "input",
        "job-name",
        "mem",
        "nodes",
        "ntasks",
        "ntasks-per-node",
        "output",
        "parsable",
        "partition",
        "reservation",
        "test-only",
        "time",
        "uid",
        "wait",
        "wrap",
    }
)


@dataclass(frozen=True)
class FieldError:
    """One validation error, pydantic-style; ``loc`` is relative to the request body."""

    type: str
    loc: tuple[str | int, ...]
    msg: str
    input: Any = None

    def fastapi(self, where: str = "body") -> dict[str, Any]:
        """FastAPI's stock ``detail`` item: ``{type, loc, msg, input}``."""
        return {"type": self.type, "loc": [where, *self.loc], "msg": self.msg, "input": self.input}


class SpecInvalid(Exception):
    """The body is not a valid JobSpec; ``errors`` says why (at least one)."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(", ".join(e.msg for e in errors))
        self.errors = errors


# ---------------------------------------------------------------------- field checks
_MISSING = object()


class _Checker:
    """Collects errors while converting values like pydantic's lax mode would."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def fail(self, type_: str, loc: tuple[str | int, ...], msg: str, value: Any) -> None:
        self.errors.append(FieldError(type_, loc, msg, value))

    def integer(self, value: Any, loc: tuple[str | int, ...]) -> int | None:
        if value is None:
            return None
        number: int | None = None
        if isinstance(value, bool | int):
            number = int(value)
        elif isinstance(value, float):
            if not math.isfinite(value) or value != int(value):
                self.fail(
                    "int_from_float",
                    loc,
                    "Input should be a valid integer, got a number with a fractional part",
                    value,
                )
                return None
            number = int(value)
        elif isinstance(value, str):
            if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
                self.fail(
                    "int_parsing",
                    loc,
                    "Input should be a valid integer, unable to parse string as an integer",
                    value,
                )
                return None
            number = int(value)
        else:
            self.fail("int_type", loc, "Input should be a valid integer", value)
            return None
        if number < 1:
            self.fail(
                "greater_than_equal", loc, "Input should be greater than or equal to 1", value
            )
            return None
        return number

    def text(self, value: Any, loc: tuple[str | int, ...], optional: bool = True) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            self.fail("string_type", loc, "Input should be a valid string", value)
            return None
        if not value:
            self.fail("string_too_short", loc, "String should have at least 1 character", value)
            return None
        return value

    def boolean(self, value: Any, loc: tuple[str | int, ...]) -> bool | None:
        if isinstance(value, bool):
            return value
        self.fail("bool_type", loc, "Input should be a valid boolean", value)
        return None

    def strings(self, value: Any, loc: tuple[str | int, ...]) -> list[str] | None:
        if not isinstance(value, list):
            self.fail("list_type", loc, "Input should be a valid list", value)
            return None
        out: list[str] = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(item)
            else:
                self.fail("string_type", (*loc, i), "Input should be a valid string", item)
        return out

    def mapping(self, value: Any, loc: tuple[str | int, ...]) -> dict[str, str] | None:
        if not isinstance(value, dict):
            self.fail("dict_type", loc, "Input should be a valid dictionary", value)
            return None
        out: dict[str, str] = {}
        for key, item in value.items():
            if isinstance(item, str):
                out[str(key)] = item
            else:
                self.fail("string_type", (*loc, key), "Input should be a valid string", item)
        return out

    def obj(self, value: Any, loc: tuple[str | int, ...], model: str) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        msg = f"Input should be a valid dictionary or instance of {model}"
        self.fail("model_type", loc, msg, value)
        return None

    def metadata(self, value: Any, loc: tuple[str | int, ...]) -> dict[str, Any] | None:
        """The v2 ``attributes`` metadata object of nested models (any JSON object)."""
        if value is None:
            return None
        if not isinstance(value, dict):
            self.fail("dict_type", loc, "Input should be a valid dictionary", value)
            return None
        return value


# (field, kind) of each model; kinds: int, str, bool, strs, map, meta, or a nested model name.
_RESOURCES: tuple[tuple[str, str], ...] = (
    ("attributes", "meta"),
    ("node_count", "int"),
    ("process_count", "int"),
    ("processes_per_node", "int"),
    ("cpu_cores_per_process", "int"),
    ("gpu_cores_per_process", "int"),
    ("exclusive_node_use", "bool"),
    ("memory", "int"),
)
_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("attributes", "meta"),
    ("duration", "int"),
    ("queue_name", "str"),
    ("account", "str"),
    ("reservation_id", "str"),
    ("custom_attributes", "map"),
)
_MOUNT: tuple[tuple[str, str], ...] = (
    ("attributes", "meta"),
    ("source", "required_str"),
    ("target", "required_str"),
    ("read_only", "bool"),
)
_CONTAINER: tuple[tuple[str, str], ...] = (
    ("attributes", "meta"),
    ("image", "required_str"),
    ("volume_mounts", "mounts"),
)
_JOB_SPEC: tuple[tuple[str, str], ...] = (
    ("attributes", "JobAttributes"),
    ("executable", "str"),
    ("container", "Container"),
    ("arguments", "strs"),
    ("directory", "str"),
    ("name", "str"),
    ("inherit_environment", "bool"),
    ("environment", "map"),
    ("stdin_path", "str"),
    ("stdout_path", "str"),
    ("stderr_path", "str"),
    ("resources", "ResourceSpec"),
    ("pre_launch", "str"),
    ("post_launch", "str"),
    ("launcher", "str"),
)
#: Defaults the models fill in (the rest default to None).
_DEFAULTS: dict[str, Any] = {
    "arguments": [],
    "inherit_environment": True,
    "environment": {},
    "exclusive_node_use": True,
    "custom_attributes": {},
    "read_only": True,
    "volume_mounts": [],
}
_MODELS = {
    "JobAttributes": _ATTRIBUTES,
    "ResourceSpec": _RESOURCES,
    "Container": _CONTAINER,
    "VolumeMount": _MOUNT,
}


def _convert(
    check: _Checker, kind: str, value: Any, loc: tuple[str | int, ...], version: str
) -> Any:
    """One field's value (not missing) converted, or None after recording an error."""
    if kind == "int":
        return check.integer(value, loc)
    if kind == "str":
        return check.text(value, loc)
    if kind == "required_str":
        return check.text(value, loc, optional=False)
    if kind == "bool":
        return check.boolean(value, loc)
    if kind == "strs":
        return check.strings(value, loc)
    if kind == "map":
        return check.mapping(value, loc)
    if kind == "meta":
        return check.metadata(value, loc)
    if kind == "mounts":
        if not isinstance(value, list):
            check.fail("list_type", loc, "Input should be a valid list", value)
            return None
        return [
            _model(check, "VolumeMount", item, (*loc, i), version) for i, item in enumerate(value)
        ]
    if value is None:  # an optional nested model
        return None
    return _model(check, kind, value, loc, version)


def _model(
    check: _Checker, model: str, value: Any, loc: tuple[str | int, ...], version: str
) -> dict[str, Any] | None:
    """A nested model: only the keys that were sent (converted); unknown keys dropped."""
    data = check.obj(value, loc, model)
    if data is None:
        return None
    out: dict[str, Any] = {}
    for name, kind in _MODELS[model]:
        if name == "attributes" and version == "v1":
            continue  # not a field in v1: an extra, hidden like the others
        raw = data.get(name, _MISSING)
        if raw is _MISSING:
            if kind == "required_str":
                check.fail("missing", (*loc, name), "Field required", data)
            continue
        out[name] = _convert(check, kind, raw, (*loc, name), version)
    return out


@dataclass(frozen=True)
class ParsedSpec:
    """A valid JobSpec: ``sent`` holds the fields the client set (as the reference echoes
    them, ``exclude_unset``); :meth:`full` adds every default (the reference's
    ``model_dump()``, which its idempotency fingerprint hashes)."""

    sent: dict[str, Any]
    version: str = "v2"
    _full: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def full(self) -> dict[str, Any]:
        return self._full

    def get(self, *path: str) -> Any:
        """A value of the full spec by path (``get("resources", "node_count")``)."""
        node: Any = self._full
        for key in path:
            if not isinstance(node, dict):
                return None
            node = node.get(key)
        return node


def _with_defaults(
    model_fields: tuple[tuple[str, str], ...], sent: dict[str, Any], version: str
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in model_fields:
        if name == "attributes" and kind == "meta":
            if version == "v2" and sent.get(name) is not None:
                out[name] = sent[name]  # the reference drops a null metadata object
            continue
        value = sent.get(name, _DEFAULTS.get(name))
        if kind in _MODELS and isinstance(value, dict):
            value = _with_defaults(_MODELS[kind], value, version)
        elif kind == "mounts" and isinstance(value, list):
            value = [_with_defaults(_MOUNT, v, version) for v in value]
        out[name] = value
    return out


def parse_job_spec(body: Any, version: str = "v2") -> ParsedSpec:
    """Check a decoded request body against the JobSpec model; :class:`SpecInvalid` if not."""
    check = _Checker()
    if not isinstance(body, dict):
        if body is None:
            raise SpecInvalid([FieldError("missing", (), "Field required", None)])
        msg = "Input should be a valid dictionary or object to extract fields from"
        raise SpecInvalid([FieldError("model_attributes_type", (), msg, body)])
    sent: dict[str, Any] = {}
    for name, kind in _JOB_SPEC:
        if name not in body:
            continue
        sent[name] = _convert(check, kind, body[name], (name,), version)
    known = {name for name, _ in _JOB_SPEC}
    for name in body:
        if name not in known:
            check.fail("extra_forbidden", (name,), "Extra inputs are not permitted", body[name])
    if check.errors:
        raise SpecInvalid(check.errors)
    return ParsedSpec(sent, version, _with_defaults(_JOB_SPEC, sent, version))


def fingerprint(spec: ParsedSpec) -> str:
    """The body identity the idempotency store compares: the parsed spec with its defaults
    as canonical JSON (key order and spelled-out defaults do not matter, as at the
    reference, which hashes ``job_spec.model_dump()``)."""
    return json.dumps(spec.full(), sort_keys=True, separators=(",", ":"), default=str)


# ---------------------------------------------------------------------- semantics
def semantic_problems(spec: ParsedSpec, pass_custom_attributes: bool) -> list[tuple[str, str]]:
    """``(field, reason)`` for each thing this gateway cannot run (answered 422); [] if none."""
    problems: list[tuple[str, str]] = []
    if spec.get("container") is not None:
        problems.append(("job_spec.container", "containers are not supported by this gateway"))
    if not spec.get("executable"):
        problems.append(("job_spec.executable", "Executable must be provided"))
    launcher = spec.get("launcher")
    if launcher is not None and launcher not in LAUNCHERS:
        reason = f"unknown launcher {launcher[:40]!r}; use one of {', '.join(LAUNCHERS)}"
        problems.append(("job_spec.launcher", reason))
    for name in spec.get("environment") or {}:
        if not _ENV_NAME.match(name):
            problems.append((f"job_spec.environment.{name[:40]}", "not a shell variable name"))
    # Values that become sbatch options must be one line of text.
    optioned = {
        "name": spec.get("name"),
        "directory": spec.get("directory"),
        "stdout_path": spec.get("stdout_path"),
        "stderr_path": spec.get("stderr_path"),
        "attributes.queue_name": spec.get("attributes", "queue_name"),
        "attributes.account": spec.get("attributes", "account"),
        "attributes.reservation_id": spec.get("attributes", "reservation_id"),
    }
    custom = spec.get("attributes", "custom_attributes") or {}
    for key, value in custom.items():
        optioned[f"attributes.custom_attributes.{key[:40]}"] = value
        if pass_custom_attributes and not _OPTION_NAME.match(key):
            reason = "not an sbatch long option name (lower-case letters, digits, '-')"
            problems.append((f"job_spec.attributes.custom_attributes.{key[:40]}", reason))
        elif pass_custom_attributes and key in RESERVED_OPTIONS:
            reason = "set by a JobSpec field or by the gateway; not a custom attribute here"
            problems.append((f"job_spec.attributes.custom_attributes.{key}", reason))
    for where, value in optioned.items():
        if isinstance(value, str) and _CONTROL.search(value):
            problems.append((f"job_spec.{where}", "control characters are not allowed here"))
    texts = [spec.get("executable"), spec.get("stdin_path"), *(spec.get("arguments") or [])]
    texts += list((spec.get("environment") or {}).values())
    texts += [spec.get("pre_launch"), spec.get("post_launch")]
    if any(isinstance(t, str) and "\x00" in t for t in texts):
        problems.append(("job_spec", "NUL characters cannot be passed to a batch script"))
    return problems


# ---------------------------------------------------------------------- batch job
@dataclass(frozen=True)
class SitePolicy:
    """How the spec's site-specific attributes meet the local cluster.

    :ivar partitions: ``None``: every ``queue_name`` runs in the cluster's default partition
        (no ``--partition``; the requested name is kept in the job's metadata).  A mapping:
        listed queue names become the mapped partition, others go to sbatch as they are
        (so an unknown one is refused by sbatch, as at a facility).
    :ivar accounts: the same for ``account`` (``None``: not passed; the local test cluster
        has no project accounts).
    :ivar pass_custom_attributes: pass ``custom_attributes`` as ``--key=value`` (checked
        names, reserved ones refused); default off: recorded in the metadata only, since
        the local cluster has no QOS or node features (``constraint=cpu`` would be refused).
    """

    partitions: Mapping[str, str] | None = None
    accounts: Mapping[str, str] | None = None
    pass_custom_attributes: bool = False


def _mapped(value: str | None, mapping: Mapping[str, str] | None) -> str | None:
    if value is None or mapping is None:
        return None
    return mapping.get(value, value)


def _duration(seconds: int) -> str:
    """sbatch ``--time`` as ``H:MM:SS`` (Slurm rounds up to whole minutes)."""
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _launch_prefix(spec: ParsedSpec) -> list[str]:
    launcher = spec.get("launcher")
    if launcher in (None, "single"):
        return []
    prefix = [str(launcher)]
    processes = spec.get("resources", "process_count")
    if launcher in ("mpirun", "mpiexec") and processes:
        prefix += ["-n", str(processes)]
    return prefix


def batch_job(spec: ParsedSpec, policy: SitePolicy) -> tuple[str, list[str]]:
    """``(script, sbatch options)`` for a spec that passed :func:`semantic_problems`."""
    quote = shlex.quote
    lines = ["#!/bin/bash", "# written by the loopback DOE IRI gateway"]
    for name, value in (spec.get("environment") or {}).items():
        lines.append(f"export {name}={quote(value)}")
    if spec.get("pre_launch"):
        lines += ["# pre_launch", str(spec.get("pre_launch"))]
    command = [*_launch_prefix(spec), str(spec.get("executable"))]
    command += [str(a) for a in spec.get("arguments") or []]
    line = " ".join(quote(part) for part in command)
    if spec.get("stdin_path"):
        line += f" < {quote(str(spec.get('stdin_path')))}"
    lines += [line, "__iri_rc=$?"]
    if spec.get("post_launch"):
        lines += ["# post_launch", str(spec.get("post_launch"))]
    lines.append('exit "$__iri_rc"')

    options: list[str] = []

    def option(name: str, value: Any) -> None:
        if value is not None:
            options.append(f"--{name}={value}")

    option("job-name", spec.get("name"))
    option("chdir", spec.get("directory"))
    option("output", spec.get("stdout_path"))
    option("error", spec.get("stderr_path"))
    if spec.get("inherit_environment") is False:
        option("export", "NONE")
    if spec.get("resources") is not None:
        option("nodes", spec.get("resources", "node_count"))
        option("ntasks", spec.get("resources", "process_count"))
        option("ntasks-per-node", spec.get("resources", "processes_per_node"))
        option("cpus-per-task", spec.get("resources", "cpu_cores_per_process"))
        option("gpus-per-task", spec.get("resources", "gpu_cores_per_process"))
        memory = spec.get("resources", "memory")
        option("mem", f"{math.ceil(memory / 2**20)}M" if memory else None)
        if spec.get("resources", "exclusive_node_use"):
            options.append("--exclusive")
    if spec.get("attributes") is not None:
        duration = spec.get("attributes", "duration")
        option("time", _duration(duration) if duration else None)
        option("partition", _mapped(spec.get("attributes", "queue_name"), policy.partitions))
        option("account", _mapped(spec.get("attributes", "account"), policy.accounts))
        option("reservation", spec.get("attributes", "reservation_id"))
        if policy.pass_custom_attributes:
            for key, value in (spec.get("attributes", "custom_attributes") or {}).items():
                option(key, value)
    return "\n".join(lines) + "\n", options
