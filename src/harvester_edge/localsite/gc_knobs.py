"""Fault knobs of the loopback Globus Compute service: ``faults.Knobs`` plus GC's own.

The shared knobs keep their meaning (``latency``, ``hang``, ``error_rate``/``error_paths``/
``seed`` = 5xx before anything is done, ``error_after_submit`` = a submit whose tasks were
created answers 5xx, ``drop_rate``/``drop_after_submit``, ``task_delay`` = results delayed,
``token_lifetime``, ``error_on_token``).  Added here, validated like the others:

:ivar endpoint_offline: the endpoint is disconnected: its status reads ``offline``, new
    tasks stay ``waiting-for-ep`` until it is back (then they start), and tasks that end
    meanwhile keep reading ``running`` (the endpoint delivers their results on reconnect).
:ivar burst_429: the next N Compute requests are answered 429 (a burst from the service's
    limiter), each with ``Retry-After: retry_after``.
:ivar retry_after: seconds in the ``Retry-After`` of ``burst_429`` answers.
:ivar rate_limit: requests per ``rate_window`` seconds per identity (Globus Compute: 20 per
    10 s); over it the answer is 429 with the seconds until a slot frees; 0 = no limit.
:ivar rate_window: the limiter's window in seconds.
:ivar worker_lost_delay: seconds a task keeps reading ``running`` after its block vanished
    without a result (``scancel``, node failure) before it fails as a lost worker: a real
    endpoint notices only when the worker's heartbeats stop (parsl's default: 120 s).
:ivar result_ttl: seconds a finished task is kept after completion (or after its result was
    first fetched); then it is abandoned and reads as unknown (Globus Compute: 30 minutes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .faults import Knobs, _boolean, _coerce, _nonneg

_GC_KNOBS = (
    "endpoint_offline",
    "burst_429",
    "retry_after",
    "rate_limit",
    "rate_window",
    "result_ttl",
    "worker_lost_delay",
)


def _coerce_gc(name: str, value: Any) -> Any:
    if name == "endpoint_offline":
        return _boolean(name, value)
    if name in ("burst_429", "rate_limit"):
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a non-negative integer")
        count = int(value)
        if count < 0 or count != float(value):
            raise ValueError(f"{name} must be a non-negative integer")
        return count
    if name in ("retry_after", "result_ttl", "worker_lost_delay"):
        return _nonneg(name, value)
    if name == "rate_window":
        number = _nonneg(name, value)
        if number == 0:
            raise ValueError("rate_window must be positive")
        return number
    raise ValueError(f"unknown knob: {name}")


@dataclass
class GCKnobs(Knobs):
    """``faults.Knobs`` with the Globus Compute service's own knobs (module docstring)."""

    endpoint_offline: bool = False
    burst_429: int = 0
    retry_after: float = 1.0
    rate_limit: int = 20
    rate_window: float = 10.0
    result_ttl: float = 1800.0
    worker_lost_delay: float = 0.0
    _offline_since: float | None = field(default=None, init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _GC_KNOBS:
            super().__setattr__(name, value)
            return
        value = _coerce_gc(name, value)
        cond = self.__dict__.get("_cond")
        if cond is None:  # inside the dataclass __init__
            object.__setattr__(self, name, value)
            return
        with cond:
            if name == "endpoint_offline" and value != self.endpoint_offline:
                object.__setattr__(self, "_offline_since", time.monotonic() if value else None)
            object.__setattr__(self, name, value)
            cond.notify_all()

    def update(self, **values: Any) -> None:
        """Set several knobs atomically; every value is checked before any is applied."""
        checked = {
            name: _coerce_gc(name, v) if name in _GC_KNOBS else _coerce(name, v)
            for name, v in values.items()
        }
        with self._cond:
            for name, value in checked.items():
                setattr(self, name, value)

    def offline_since(self) -> float | None:
        """``time.monotonic()`` when the endpoint went offline; None while it is online."""
        with self._cond:
            return self._offline_since if self.endpoint_offline else None

    def take_burst(self) -> bool:
        """Consume one answer of a 429 burst; True when this request gets a 429."""
        with self._cond:
            if self.burst_429 <= 0:
                return False
            object.__setattr__(self, "burst_429", self.burst_429 - 1)
            return True
