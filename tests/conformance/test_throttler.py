"""The throttler decides every "not now" before workers are made; the allocation cap's slots
come back at once when a submit fails for sure."""

from __future__ import annotations

import math
import time

import pytest

from harvester_edge.edge import tags
from harvester_edge.facilities.base import CredentialFacts, Health, Outage
from harvester_edge.harvester import WorkSpec, harvester_id
from harvester_edge.plugins import submitter

from ._helpers import QUEUE, drive, restart, restored, set_credential, set_health, submit


def throttled(family, walltime=3600, **overrides):
    """One WorkerAdjuster cycle: a throttler built once per queue, asked with the queue config."""
    answer = family.throttler().to_be_throttled(
        family.queue_config(walltimeLimit=walltime, **overrides)
    )
    assert isinstance(answer, tuple) and len(answer) == 2, answer
    flag, reason = answer
    if flag:
        assert reason and "\n" not in reason, reason
    else:
        assert reason == ""
    return answer


# 15. slot release ---------------------------------------------------------------------------
def test_refused_submits_free_their_slots_at_once(family):
    sub, mon, _ = family.plugins(maxConcurrentAllocations=2, submitConcurrency=1)
    family.facility.script("submit", "refuse", "refuse")
    first = [family.workspec(i) for i in (151, 152)]
    assert [ok for ok, _ in submit(sub, first)] == [False, False]
    second = [family.workspec(i) for i in (153, 154)]
    assert [ok for ok, _ in submit(sub, second)] == [True, True]
    # and the cap holds: the two live allocations take both slots
    ((ok, message),) = submit(sub, [family.workspec(155)])
    assert ok is None and "maxConcurrentAllocations=2" in message, message
    assert family.facility.requests["submit"] == 4
    drive(mon, second)
    ((ok, message),) = submit(family.plugins(maxConcurrentAllocations=2)[0], [family.workspec(156)])
    assert ok is None and "maxConcurrentAllocations=2" in message, message


@pytest.mark.parametrize("fault", ["limit", "auth", "connect"])
def test_falsy_submits_free_their_slots(family, fault):
    sub, _, _ = family.plugins(maxConcurrentAllocations=1, retryAttempts=1)
    family.facility.script("submit", fault)
    ((ok, message),) = submit(sub, [family.workspec(157)])
    assert ok is None, message
    prefix = tags.queue_prefix(harvester_id(), QUEUE)
    assert submitter.BOOK.count(prefix) == 0  # the slot is free at once
    ((ok, message),) = submit(sub, [family.workspec(158)])
    if sub.edge_client().credential().problem:
        # the client holds a refused credential back (S3M: a refused token is not sent
        # again for authRefusalBackoffSeconds): the credential gate answers, not the cap
        assert fault == "auth" and ok is None, message
        assert "credential" in message and "maxConcurrentAllocations" not in message, message
    else:
        assert ok is True, message


def test_finished_allocations_free_their_slots(family):
    sub, mon, _ = family.plugins(maxConcurrentAllocations=1)
    one = family.workspec(159)
    assert submit(sub, [one])[0][0] is True
    drive(mon, [one])
    assert submit(sub, [family.workspec(160)])[0][0] is None
    family.facility.finish(one.batchID)
    assert [s for s, _ in drive(mon, [one])] == [WorkSpec.ST_finished]
    assert submit(sub, [family.workspec(161)])[0][0] is True


# 16. throttler reasons ----------------------------------------------------------------------
def test_healthy_queue_is_not_throttled(family):
    assert throttled(family) == (False, "")
    assert family.facility.requests["health"] == 1


def test_throttled_when_the_machine_is_unavailable(family):
    set_health(family.facility, Health(False, "unavailable", "cooling failure"))
    flag, reason = throttled(family)
    assert flag is True and "unavailable" in reason and "cooling failure" in reason


def test_throttled_during_a_planned_outage(family):
    if not family.capabilities.outages:
        pytest.skip("the service announces no planned outages (Globus Compute: online or not)")
    end = time.time() + 3600
    set_health(
        family.facility,
        Health(False, "maintenance", "upgrade", planned=Outage(time.time() - 60, end, "upgrade")),
    )
    flag, reason = throttled(family)
    assert flag is True and "planned outage" in reason
    assert time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(end)) in reason


def test_throttled_when_an_outage_starts_within_the_walltime(family):
    if not family.capabilities.outages:
        pytest.skip("the service announces no planned outages (Globus Compute: online or not)")
    now = time.time()
    set_health(
        family.facility,
        Health(True, "active", outages=(Outage(now + 600, now + 3600, "x"),)),
    )
    flag, reason = throttled(family, walltime=3600)
    assert flag is True and "planned outage" in reason and "x" in reason
    assert throttled(family, walltime=60) == (False, "")


def test_throttled_for_a_credential_problem(family):
    set_credential(family.facility, CredentialFacts(kind="fake", problem="refused"))
    flag, reason = throttled(family)
    assert flag is True and "credential" in reason and "refused" in reason


def test_throttled_when_the_credential_expires_soon(family):
    if not family.capabilities.credential_expiry:
        pytest.skip("the credential never expires (a Globus confidential client renews tokens)")
    set_credential(family.facility, CredentialFacts(kind="fake", expires_at=time.time() + 600))
    flag, reason = throttled(family, credentialMarginSeconds=3600)
    assert flag is True and "credential" in reason and "expires" in reason
    set_credential(family.facility, CredentialFacts(kind="fake", expires_at=time.time() - 5))
    flag, reason = throttled(family, credentialMarginSeconds=3600)
    assert flag is True and "expired" in reason
    set_credential(family.facility, CredentialFacts(kind="fake", expires_at=time.time() + 7200))
    assert throttled(family, credentialMarginSeconds=3600) == (False, "")


def test_throttled_when_the_cap_is_reached(family):
    sub, mon, _ = family.plugins(maxConcurrentAllocations=2)
    assert throttled(family, maxConcurrentAllocations=2) == (False, "")
    workers = [family.workspec(i) for i in (161, 162)]
    assert [ok for ok, _ in submit(sub, workers)] == [True, True]
    flag, reason = throttled(family, maxConcurrentAllocations=2)
    assert flag is True and "maxConcurrentAllocations=2" in reason
    drive(mon, workers)
    family.facility.finish(workers[0].batchID)
    drive(mon, workers)
    assert throttled(family, maxConcurrentAllocations=2) == (False, "")


def test_throttled_after_a_submit_limit(family):
    sub, _, _ = family.plugins()
    family.facility.script("submit", "limit")
    assert submit(sub, [family.workspec(163)])[0][0] is None
    flag, reason = throttled(family)
    assert flag is True and "submit limit" in reason
    assert throttled(family, submitLimitHoldSeconds=0) == (False, "")


@pytest.mark.parametrize("cache", [60.0, 0.05])
def test_throttler_health_requests_are_cached(family, cache):
    qc = family.queue_config(healthCacheSeconds=cache)
    start = time.monotonic()
    kept = family.throttler()
    for n in range(1000):
        # the WorkerAdjuster keeps its throttler, but a fresh one must cost nothing more
        throttler = family.throttler() if n % 2 else kept
        assert throttler.to_be_throttled(qc) == (False, "")
    elapsed = time.monotonic() - start
    allowed = math.ceil(elapsed / cache) + 1
    assert 1 <= family.facility.requests["health"] <= allowed, (
        family.facility.requests["health"],
        elapsed,
    )
    if cache >= elapsed:
        assert family.facility.requests["health"] == 1


# the cap across a restart ------------------------------------------------------------------
def three_live_then_restart(family, monkeypatch):
    sub, mon, _ = family.plugins(maxConcurrentAllocations=3)
    workers = [family.workspec(i) for i in (181, 182, 183)]
    assert [ok for ok, _ in submit(sub, workers)] == [True] * 3
    drive(mon, workers)
    assert throttled(family, maxConcurrentAllocations=3)[0] is True
    restart(monkeypatch)
    return [restored(ws) for ws in workers]


def test_cap_reached_is_known_to_the_throttler_after_a_restart(family, monkeypatch):
    three_live_then_restart(family, monkeypatch)
    flag, reason = throttled(family, maxConcurrentAllocations=3)
    assert flag is True and "maxConcurrentAllocations=3" in reason, reason


def test_cap_holds_when_the_first_monitor_cycle_sees_some_workers(family, monkeypatch):
    """After a restart Harvester's monitor threads check the workers in batches: a batch that
    saw one allocation does not make the queue's count one."""
    workers = three_live_then_restart(family, monkeypatch)
    sub, mon, _ = family.plugins(maxConcurrentAllocations=3)
    drive(mon, workers[:1])
    ((ok, message),) = submit(sub, [family.workspec(184)])
    assert ok is None and "maxConcurrentAllocations=3" in message, message
    assert (
        len(family.facility.live_jobs())
        + len([t for t in family.facility.tasks.values() if not t.done])
        == 3
    )
