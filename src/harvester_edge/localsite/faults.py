"""Fault-injection knobs for the loopback gateways.

The failure modes that hurt edge-API clients in production (slow answers, 5xx bursts, a submit
POST that times out or fails with a 5xx *after* the job was created, a server that accepts and
never answers, machine outages, short-lived tokens answered with 403) must be reproducible in
tests.  One ``Knobs`` object holds them; tests and the demo CLI change them at runtime (directly,
through ``update()``, or through the gateway's ``POST /_admin/knobs``).

Every attribute assignment is validated and wakes waiters, so a request stuck in ``hang`` is
released as soon as ``hang`` is cleared.  Waits always also watch a stop ``threading.Event``,
so stopping a gateway is never blocked by a knob.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from typing import Any

MACHINE_STATES = ("active", "degraded", "unavailable", "other")
ERROR_CODES = (500, 502, 503)
#: Statuses of ``error_after_submit``: what a proxy or server answers when it fails late.
AFTER_SUBMIT_CODES = (500, 502, 503, 504)
#: DOE IRI resource states (``current_status``) and incident vocabularies.
IRI_STATES = ("up", "down", "degraded", "unknown")
INCIDENT_TYPES = ("planned", "unplanned", "reservation")
RESOLUTIONS = ("unresolved", "cancelled", "completed", "extended", "pending")
#: IRI ``current_status`` derived from the SFAPI-style ``machine_status`` knob.
_IRI_FROM_MACHINE = {"active": "up", "degraded": "degraded", "unavailable": "down"}
#: Resource states of OLCF S3M's status API (``resource_status``).
S3M_STATES = ("OPERATIONAL", "DEGRADED", "UNAVAILABLE", "UNKNOWN")
#: ``resource_status`` takes either gateway's words; each gateway reads the other's in its own.
S3M_FROM_IRI = dict(
    zip(IRI_STATES, ("OPERATIONAL", "UNAVAILABLE", "DEGRADED", "UNKNOWN"), strict=True)
)
IRI_FROM_S3M = {v: k for k, v in S3M_FROM_IRI.items()}


def _nonneg(name: str, value: Any) -> float:
    number = float(value)
    if number < 0 or number != number:  # NaN check without math import
        raise ValueError(f"{name} must be a non-negative number")
    return number


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no", ""):
        return value.lower() in ("true", "1", "yes")
    if isinstance(value, int):
        return bool(value)
    raise ValueError(f"{name} must be a boolean")


def _string_list(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"{name} must be a list of strings")


def _epoch(name: str, value: Any) -> float:
    """A time as UNIX seconds: a number, or ISO 8601 text (``...Z`` or with an offset)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a UNIX time or an ISO 8601 date")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{name} must be a UNIX time or an ISO 8601 date") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return when.timestamp()
    raise ValueError(f"{name} must be a UNIX time or an ISO 8601 date")


def _downtimes(value: Any) -> list[dict[str, Any]]:
    """Validate ``downtimes``: ``[{"start", "end", "resource"?, "description"?}]``."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise ValueError("downtimes must be a list of {start, end, resource, description}")
    out: list[dict[str, Any]] = []
    for item in value:
        if not isinstance(item, dict) or not {"start", "end"} <= set(item):
            raise ValueError("each downtime needs at least start and end")
        unknown = set(item) - {"start", "end", "resource", "description"}
        if unknown:
            raise ValueError(f"unknown downtime field(s): {', '.join(sorted(unknown))}")
        start, end = _epoch("downtime start", item["start"]), _epoch("downtime end", item["end"])
        if end <= start:
            raise ValueError("a downtime must end after it starts")
        resource = item.get("resource")
        if resource is not None and not isinstance(resource, str):
            raise ValueError("downtime resource must be a resource name or null (all)")
        description = item.get("description")
        out.append(
            {
                "start": start,
                "end": end,
                "resource": resource,
                "description": "scheduled maintenance" if description is None else str(description),
            }
        )
    return out


def _resource_status(value: Any) -> dict[str, str]:
    """Validate ``resource_status``: names (or IRI ids) to an S3M or an IRI status word."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError("resource_status must map resource names or ids to a status")
    bad = {v for v in value.values() if v not in S3M_STATES and v not in IRI_STATES}
    if bad:
        raise ValueError(
            f"resource_status values must be one of {', '.join(S3M_STATES)} (S3M) "
            f"or {', '.join(IRI_STATES)} (IRI)"
        )
    return dict(value)


def _coerce(name: str, value: Any) -> Any:
    """Validate one knob value; raises ValueError/TypeError with the knob's name."""
    if name in ("latency", "task_delay", "post_timeout", "token_lifetime"):
        return _nonneg(name, value)
    if name in ("error_rate", "error_after_submit", "drop_rate", "drop_after_submit"):
        rate = float(value)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1")
        return rate
    if name in ("hang", "error_on_token", "maintenance", "error_in_detail"):
        return _boolean(name, value)
    if name == "downtimes":
        return _downtimes(value)
    if name == "resource_status":
        return _resource_status(value)
    if name == "refuse_submit":
        number = int(value)
        if number < 0:
            raise ValueError("refuse_submit must be a Slurm error number (0 = off)")
        return number
    if name in ("error_paths", "status_notes"):
        return _string_list(name, value)
    if name == "seed":
        return None if value is None else int(value)
    if name == "machine_status":
        if value not in MACHINE_STATES:
            raise ValueError(f"machine_status must be one of {', '.join(MACHINE_STATES)}")
        return value
    if name == "status_description":
        return None if value is None else str(value)
    if name == "expired_token_status":
        status = int(value)
        if not 400 <= status <= 599:
            raise ValueError("expired_token_status must be an HTTP error status")
        return status
    return _coerce_iri(name, value)


def _coerce_iri(name: str, value: Any) -> Any:
    """Validate a knob of the IRI gateway (see ``Knobs``); ValueError for unknown names."""
    if name in ("submit_delay", "idempotency_ttl", "idempotency_lock_ttl"):
        return _nonneg(name, value)
    if name == "incidents":
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            raise ValueError("incidents must be a list of objects")
        now = datetime.now(timezone.utc)
        return [_incident(i, item, now) for i, item in enumerate(value)]
    raise ValueError(f"unknown knob: {name}")


#: ``last_modified`` is set when the knob is set (accepted so checking is idempotent).
_INCIDENT_KEYS = frozenset(
    {"id", "name", "description", "resources", "type", "status", "resolution", "start", "end"}
    | {"last_modified"}
)


def _when(what: str, value: Any, now: datetime) -> str | None:
    """An incident time: ISO 8601 text, or a number of seconds relative to ``now``."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (now + timedelta(seconds=float(value))).isoformat()
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"incident {what} must be ISO 8601 or seconds from now") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc).isoformat()
    raise ValueError(f"incident {what} must be ISO 8601 or seconds from now")


def _incident(index: int, item: Any, now: datetime) -> dict[str, Any]:
    """One entry of the ``incidents`` knob, checked and with absolute times."""
    if not isinstance(item, dict):
        raise ValueError("each incident must be an object")
    unknown = set(item) - _INCIDENT_KEYS
    if unknown:
        raise ValueError(f"unknown incident field(s): {', '.join(sorted(unknown))}")
    checked: dict[str, Any] = {
        "id": str(item["id"]) if item.get("id") else None,
        "name": str(item.get("name") or f"incident {index + 1}"),
        "description": None if item.get("description") is None else str(item["description"]),
        "resources": _string_list("incident resources", item.get("resources")),
        "type": item.get("type", "planned"),
        "status": item.get("status", "down"),
        "resolution": item.get("resolution", "pending"),
        "start": _when("start", item.get("start", 0), now),
        "end": _when("end", item.get("end"), now),
        "last_modified": _when("last_modified", item.get("last_modified"), now) or now.isoformat(),
    }
    for key, allowed in (("type", INCIDENT_TYPES), ("status", IRI_STATES)):
        if checked[key] not in allowed:
            raise ValueError(f"incident {key} must be one of {', '.join(allowed)}")
    if checked["resolution"] not in RESOLUTIONS:
        raise ValueError(f"incident resolution must be one of {', '.join(RESOLUTIONS)}")
    if checked["start"] is None:
        raise ValueError("incident start must be set")
    return checked


@dataclass
class Knobs:
    """Runtime-adjustable faults and site state of a loopback gateway.

    :ivar latency: seconds added to every API request (token endpoint included).
    :ivar task_delay: seconds after creation before a task reports its result; the Slurm
        command itself runs at once in the background.
    :ivar error_rate: fraction of API requests answered 500/502/503 before doing anything.
    :ivar error_on_token: also inject errors on the token endpoint.
    :ivar error_paths: only inject errors on paths starting with one of these prefixes
        (full path like ``/api/v1.2/compute`` or API-relative like ``/compute``); empty = all.
    :ivar seed: seed of the error generators (``error_rate`` and ``error_after_submit`` each
        have their own), so a test sees the same error sequence each run.
    :ivar post_timeout: a job-submit POST creates the task and job, then stalls this long
        before answering (a client read timeout after the job exists).
    :ivar error_after_submit: fraction of accepted job-submit POSTs (``POST
        /compute/jobs/{machine}``) that create the task, wait until sbatch has run (the job
        exists), then answer 500/502/503/504 instead of the task id: the ambiguous failure a
        client must not retry blindly.  Drawn from its own seeded generator, so the
        ``error_rate`` sequence does not change with it; applied after ``post_timeout``.
    :ivar machine_status: ``active`` | ``degraded`` | ``unavailable`` | ``other``; when
        ``unavailable`` the compute routes (submit, queries, cancel, command utility) also
        answer 503 with a JSON error, as the machine is down.
    :ivar hang: accept connections but answer no API request until cleared or stopped.
    :ivar status_description: description in status answers (default derived from status).
    :ivar status_notes: notes in status answers.
    :ivar maintenance: a planned outage of the machine is under way now (listed by
        ``/status/outages/planned``) while its status may still read ``active``.
    :ivar token_lifetime: seconds an issued access token is valid.
    :ivar expired_token_status: HTTP status for a missing/bad/expired token (NERSC: 403).

    Shared by the S3M and the DOE IRI gateways (the SFAPI gateway ignores them):

    :ivar drop_rate: fraction of API requests whose connection is closed without any answer,
        before anything is done (own seeded generator).  The IRI gateway draws only for the
        requests ``error_paths`` selects (when set); the S3M gateway for every request.
    :ivar drop_after_submit: fraction of accepted job submits whose connection is closed
        without an answer *after* the job was created (own seeded generator); drawn after
        ``error_after_submit``.  The IRI gateway records the idempotent reply first (the
        lost reply a resend under the same ``Idempotency-Key`` recovers).
    :ivar resource_status: per-resource status overriding the one derived from
        ``machine_status``, in either vocabulary: S3M's ``OPERATIONAL``, ``DEGRADED``,
        ``UNAVAILABLE``, ``UNKNOWN`` or IRI's ``up``, ``down``, ``degraded``, ``unknown``
        (each gateway reads the other's words in its own: up = OPERATIONAL, down =
        UNAVAILABLE).  Keys are resource names (IRI: names or ids).  A resource not listed
        reads ``machine_status`` (IRI: active -> up, degraded -> degraded, unavailable ->
        down, other -> unknown).  An IRI ``down`` resource answers its compute routes 503.

    Added for the S3M gateway:

    :ivar downtimes: planned downtimes ``[{"start", "end", "resource", "description"}]``
        (times as UNIX seconds or ISO 8601; ``resource`` null = every resource); one under
        way makes its resource UNAVAILABLE.
    :ivar error_in_detail: the gateway's own errors carry their JSON as text inside a
        ``detail`` field (as seen when S3M errors are relayed), not as the body itself.
    :ivar refuse_submit: a Slurm error number (e.g. 2050, the QOS submit limit) with which
        every job submit is refused before sbatch runs; 0 = off.

    Added for the DOE IRI gateway (``iri_gateway``):

    :ivar incidents: incidents listed by ``/status/incidents``: objects with ``name``,
        ``description``, ``resources`` (names or ids; empty = every resource), ``type``
        (planned|unplanned|reservation, default planned), ``status`` (default down),
        ``resolution`` (default pending), ``start`` and ``end`` (ISO 8601, or seconds from
        the moment the knob is set: ``{"start": 3600, "end": 7200}`` is a maintenance in an
        hour; ``end`` may be null), optional ``id``.
    :ivar submit_delay: seconds a job submit waits before running sbatch (a slow scheduler:
        the request is in flight, so a duplicate with the same ``Idempotency-Key`` gets 409).
    :ivar idempotency_ttl: seconds an ``Idempotency-Key`` reply is kept (IRI: 24 h).
    :ivar idempotency_lock_ttl: seconds an in-flight key stays locked at most (IRI: 60).
    """

    latency: float = 0.0
    task_delay: float = 0.0
    error_rate: float = 0.0
    error_on_token: bool = False
    error_paths: list[str] = field(default_factory=list)
    seed: int | None = None
    post_timeout: float = 0.0
    hang: bool = False
    error_after_submit: float = 0.0
    machine_status: str = "active"
    status_description: str | None = None
    status_notes: list[str] = field(default_factory=list)
    maintenance: bool = False
    token_lifetime: float = 600.0
    expired_token_status: int = 403
    drop_rate: float = 0.0
    drop_after_submit: float = 0.0
    resource_status: dict[str, str] = field(default_factory=dict)
    downtimes: list[dict[str, Any]] = field(default_factory=list)
    error_in_detail: bool = False
    refuse_submit: int = 0
    incidents: list[dict[str, Any]] = field(default_factory=list)
    submit_delay: float = 0.0
    idempotency_ttl: float = 86400.0
    idempotency_lock_ttl: float = 60.0
    _cond: threading.Condition = field(init=False, repr=False, compare=False)
    _rng: random.Random = field(init=False, repr=False, compare=False)
    _after_rng: random.Random = field(init=False, repr=False, compare=False)
    _drop_rng: random.Random = field(init=False, repr=False, compare=False)
    _drop_after_rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cond", threading.Condition(threading.RLock()))
        object.__setattr__(self, "_rng", random.Random(self.seed))
        object.__setattr__(self, "_after_rng", random.Random(_after_seed(self.seed)))
        object.__setattr__(self, "_drop_rng", random.Random(_derived_seed("drop", self.seed)))
        object.__setattr__(
            self, "_drop_after_rng", random.Random(_derived_seed("drop-after", self.seed))
        )
        # dataclass __init__ set these before _cond existed, so unchecked: check them now
        for name in ("resource_status", "incidents", "downtimes"):
            object.__setattr__(self, name, _coerce(name, getattr(self, name)))

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        value = _coerce(name, value)
        cond: threading.Condition | None = self.__dict__.get("_cond")
        if cond is None:  # still inside the dataclass __init__
            object.__setattr__(self, name, value)
            return
        with cond:
            object.__setattr__(self, name, value)
            if name == "seed":
                self._rng.seed(value)
                self._after_rng.seed(_after_seed(value))
                self._drop_rng.seed(_derived_seed("drop", value))
                self._drop_after_rng.seed(_derived_seed("drop-after", value))
            cond.notify_all()

    # ------------------------------------------------------------------ public API
    @classmethod
    def names(cls) -> list[str]:
        """All knob names (for the admin endpoint and CLI)."""
        return [f.name for f in fields(cls) if not f.name.startswith("_")]

    def update(self, **values: Any) -> None:
        """Set several knobs atomically; all values are validated before any is applied."""
        checked = {name: _coerce(name, value) for name, value in values.items()}
        with self._cond:
            for name, value in checked.items():
                setattr(self, name, value)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of the current values."""
        with self._cond:
            out = {name: getattr(self, name) for name in self.names()}
        out["error_paths"] = list(out["error_paths"])
        out["status_notes"] = list(out["status_notes"])
        out["resource_status"] = dict(out["resource_status"])
        out["downtimes"] = [dict(d) for d in out["downtimes"]]
        out["incidents"] = [dict(i, resources=list(i["resources"])) for i in out["incidents"]]
        return out

    def draw_error(self, path: str, relative_path: str, is_token: bool) -> int | None:
        """Decide whether this request gets an injected 5xx; returns the status or None.

        The generator is only consulted for requests the filters select, so the error
        sequence for a given seed does not depend on unrelated traffic.
        """
        with self._cond:
            if self.error_rate <= 0 or (is_token and not self.error_on_token):
                return None
            if self.error_paths and not any(
                path.startswith(p) or relative_path.startswith(p) for p in self.error_paths
            ):
                return None
            if self._rng.random() >= self.error_rate:
                return None
            return self._rng.choice(ERROR_CODES)

    def draw_after_submit(self) -> int | None:
        """Decide whether an accepted submit is answered with a 5xx after the job exists."""
        with self._cond:
            if self.error_after_submit <= 0:
                return None
            if self._after_rng.random() >= self.error_after_submit:
                return None
            return self._after_rng.choice(AFTER_SUBMIT_CODES)

    def draw_drop(self, path: str | None = None, relative_path: str | None = None) -> bool:
        """Decide whether this request's connection is closed without an answer
        (``drop_rate``).  Given the request's path (IRI), only the requests ``error_paths``
        selects are drawn for, so the sequence does not depend on unrelated traffic."""
        with self._cond:
            if self.drop_rate <= 0:
                return False
            if path is not None and self.error_paths:
                rel = path if relative_path is None else relative_path
                if not any(path.startswith(p) or rel.startswith(p) for p in self.error_paths):
                    return False
            return self._drop_rng.random() < self.drop_rate

    def draw_drop_after_submit(self) -> bool:
        """Decide whether an accepted submit's connection is closed after the job exists
        (``drop_after_submit``)."""
        with self._cond:
            if self.drop_after_submit <= 0:
                return False
            return self._drop_after_rng.random() < self.drop_after_submit

    def downtimes_of(self, resource: str) -> list[dict[str, Any]]:
        """The downtimes that apply to ``resource`` (its own and the facility-wide ones)."""
        with self._cond:
            return [dict(d) for d in self.downtimes if d["resource"] in (None, resource)]

    def wait_while_hung(self, stop: threading.Event, poll: float = 0.2) -> bool:
        """Block while ``hang`` is set; False when ``stop`` was set meanwhile (do not answer)."""
        with self._cond:
            while self.hang and not stop.is_set():
                self._cond.wait(poll)  # poll too: stop() may not notify this condition
        return not stop.is_set()

    def wake(self) -> None:
        """Wake every waiter so it re-checks its stop event (called by gateway.stop())."""
        with self._cond:
            self._cond.notify_all()

    def status_text(self) -> str:
        """The machine description shown by status endpoints."""
        if self.status_description:
            return self.status_description
        return {
            "active": "System Available",
            "degraded": "System Degraded",
            "unavailable": "System Unavailable",
        }.get(self.machine_status, "System status unknown")

    # ------------------------------------------------------------------ status words
    def iri_status(self, *keys: str) -> str:
        """``current_status`` of a resource known by any of ``keys`` (its name, its id)."""
        with self._cond:
            for key in keys:
                if key in self.resource_status:
                    word = self.resource_status[key]
                    return IRI_FROM_S3M.get(word, word)
            return _IRI_FROM_MACHINE.get(self.machine_status, "unknown")

    def s3m_status(self, name: str) -> str | None:
        """The S3M status ``resource_status`` sets for ``name`` (IRI words read as S3M's),
        None when it sets none."""
        with self._cond:
            word = self.resource_status.get(name)
        return None if word is None else S3M_FROM_IRI.get(word, word)


def _after_seed(seed: int | None) -> str | None:
    """Seed of the ``error_after_submit`` generator: derived from ``seed``, distinct from it."""
    return None if seed is None else f"after-submit:{seed}"


def _derived_seed(kind: str, seed: int | None) -> str | None:
    """Seed of a further generator (``drop_rate``...): derived from ``seed``, distinct from it
    and the others."""
    return None if seed is None else f"{kind}:{seed}"
