"""The throttler: stops Harvester from *making* workers the facility cannot take now.

Stock Harvester has no "retry later" answer for ``submit_workers``: a falsy answer makes the
worker *missed* (ERROR line, pilot error SETUPFAILURE).  So every "not now" is decided here,
before workers exist: the WorkerAdjuster calls ``to_be_throttled(queue_config)`` each cycle
and sets the queue's new workers to 0 when it answers True.  Reasons, in order:

1. the facility says the machine is unavailable (or its status cannot be read: when our
   credential is unusable, that is named as the cause, since a service that authenticates
   its status routes, IRI at OLCF, answers a refused or expired token there too);
2. a planned outage is under way or starts within the next walltime (``walltimeLimit`` of
   the queue, or ``outageHorizonSeconds``);
3. the credential is unusable (refused moments ago, unreadable key) or expires within
   ``credentialMarginSeconds``; likewise a pilot credential the credential manager
   delivers for this queue (``credentials/facts.py``);
4. ``maxConcurrentAllocations`` is reached (the level-3 book the monitor keeps);
5. a facility submit limit (QOS) refused a job less than ``submitLimitHoldSeconds`` ago.

It reads the queue's submitter section (the same options, the same shared client and caches
as the submitter): no more than one facility request per ``healthCacheSeconds`` per
credential, shared with submitter and monitor; building it does no I/O.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from ..credentials.facts import for_queue as pilot_facts
from ..edge import tags
from ..edge.allocations import live_counts
from ..edge.health import GATE, UNREADABLE
from ..edge.limits import LIMITS
from ..errors import EdgeAPIError, EdgeError
from ..facilities.base import FacilityClient
from ..harvester import PluginBase, harvester_id, setup_logger
from .base import FacilityBinding

LOG = setup_logger("harvester_edge_throttler")

_bindings: dict[tuple[str, str, str], FacilityBinding] = {}
_lock = threading.Lock()


def _binding_for(section: Mapping[str, Any]) -> FacilityBinding:
    """The submitter's binding (validated options, shared client), built once per config."""
    key = (str(section.get("module")), str(section.get("name")), repr(sorted(section.items())))
    with _lock:
        binding = _bindings.get(key)
    if binding is not None:
        return binding
    module = __import__(key[0], fromlist=[key[1]])
    plugin = getattr(module, key[1])
    binding_class = getattr(plugin, "binding_class", None)
    if binding_class is None:
        raise EdgeError(f"submitter {key[0]}.{key[1]} is not a harvester-edge plugin")
    kwargs = {k: v for k, v in section.items() if k not in ("module", "name")}
    binding = binding_class(kwargs, "EdgeThrottler")
    with _lock:
        _bindings[key] = binding
    return binding


def _credential_reason(client: FacilityClient, margin: float, now: float) -> str | None:
    """Why the credential stops new workers: a problem (refused moments ago, unreadable,
    expired) or an expiry within ``margin`` seconds; None when it is fine."""
    cred = client.credential()
    if cred.problem:
        return f"{client.service}: credential {cred.identity or cred.kind}: {cred.problem}"
    expiring = _expiry_text(cred.expires_at, margin, now)
    if expiring:
        return f"{client.service}: credential {cred.identity or cred.kind} {expiring}"
    return None


def _expiry_text(expires_at: float | None, margin: float, now: float) -> str | None:
    """'expired <date>' / 'expires <date>' when ``expires_at`` is within ``margin`` of now."""
    if expires_at is None or expires_at - now >= margin:
        return None
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires_at))
    return f"{'expired' if expires_at <= now else 'expires'} {when}"


class EdgeThrottler(PluginBase):
    """Queue config: ``"throttler": {"module": "harvester_edge.plugins.throttler",
    "name": "EdgeThrottler"}``; optional ``outageHorizonSeconds``."""

    #: its own keys (plugins/schema.py); it reads the submitter's section for the rest
    config_keys: ClassVar[dict[str, Any]] = {"outageHorizonSeconds": float}

    def __init__(self, **kwargs: Any) -> None:
        self.outageHorizonSeconds: float | None = None
        PluginBase.__init__(self, **kwargs)

    def to_be_throttled(
        self, queue_config: Any, queue_config_mapper: Any = None
    ) -> tuple[bool, str]:
        queue = str(getattr(queue_config, "queueName", "") or "")
        try:
            reason = self._reason(queue_config, queue)
        except (EdgeError, ImportError, AttributeError) as exc:
            reason = f"cannot evaluate the queue's edge submitter: {exc}"
        except Exception as exc:  # never break the WorkerAdjuster
            LOG.error(f"queue {queue}: unexpected {type(exc).__name__}: {exc}")
            return False, ""
        if reason:
            LOG.info(f"queue {queue}: throttled: {reason}")
            return True, reason
        return False, ""

    def _reason(self, queue_config: Any, queue: str) -> str | None:
        section = getattr(queue_config, "submitter", None)
        if not isinstance(section, Mapping):
            raise EdgeError("the queue has no submitter section")
        binding = _binding_for(section)
        opts = binding.options
        client = binding.client()
        health = GATE.check(client, opts.healthCacheSeconds)
        if not health.available:
            if health.state == UNREADABLE:  # the cause may be our credential
                unusable = _credential_reason(client, 0.0, time.time())
                if unusable:
                    return unusable
            planned = health.planned
            if planned is not None:
                return f"{client.service}: planned outage {planned.until_text()}: {planned.text}"
            return f"{client.service}: machine {health.state}: {health.message}".strip()
        now = time.time()
        horizon = now + self._horizon(queue_config)
        for outage in health.outages:
            if outage.start < horizon and (outage.end is None or outage.end > now):
                start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(outage.start))
                return (
                    f"{client.service}: planned outage from {start} {outage.until_text()} "
                    f"within the next walltime: {outage.text}"
                )
        unusable = _credential_reason(client, opts.credentialMarginSeconds, now)
        if unusable:
            return unusable
        for pilot in pilot_facts(queue or opts.queueName):  # published by EdgeCredManager
            if pilot.problem:
                return f"{pilot.kind}: {pilot.problem}"
            expiring = _expiry_text(pilot.expires_at, opts.credentialMarginSeconds, now)
            if expiring:
                return f"{pilot.kind} {pilot.identity} {expiring}"
        prefix = tags.queue_prefix(harvester_id(), queue or opts.queueName)
        cap = opts.maxConcurrentAllocations
        if cap > 0:
            try:
                live, fresh = live_counts(client, prefix)
            except EdgeAPIError as exc:
                return f"cannot count live allocations for maxConcurrentAllocations: {exc}"
        if cap > 0 and live + fresh >= cap:
            return (
                f"maxConcurrentAllocations={cap} reached "
                f"({live} running or queued, {fresh} just submitted)"
            )
        limit = LIMITS.recent(prefix, opts.submitLimitHoldSeconds)
        if limit:
            return f"{client.service}: facility submit limit hit recently: {limit}"
        return None

    def _horizon(self, queue_config: Any) -> float:
        if self.outageHorizonSeconds is not None:
            return float(self.outageHorizonSeconds)
        walltime = getattr(queue_config, "walltimeLimit", None)
        try:
            return float(walltime) if walltime else 0.0
        except (TypeError, ValueError):
            return 0.0
