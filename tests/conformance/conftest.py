"""The conformance suite's one family-specific part: the ``family`` fixture.

Every test in ``tests/conformance/`` talks to a plugin family only through the object this
fixture returns, so S3M, Globus Compute and IRI can run the same suite by adding an entry to
``FAMILIES`` (a class with the interface of ``FakeFamily``).  The families: the generic
plugins on a ``FakeFacility`` of each capability profile (``fake-*``), and the real S3M
client and plugins over ``harvester_edge.testing_s3m.S3MDouble`` (HTTP mocked with
``responses``) with a ``FakeFacility`` as the scheduler behind it (``s3m-client``).  A family
gives:

- ``facility``: the scheduler the tests drive (``sbatch``, ``set_state``, ``finish``,
  ``complete_tasks``, ``forget_tasks``, ``script``/``always``, ``jobs_named``, ``live_jobs``,
  ``requests``, ``cancelled``, ``health_answer``, ``credential_answer``, ``files``);
- ``reconfigure(**facility_options)``: a new scheduler with other semantics (accounting lag,
  queue linger, task delay, hang time...), used by plugins built afterwards;
- ``plugins(**overrides) -> (submitter, monitor, sweeper)``: NEW instances each call, built
  like Harvester's PluginFactory (``cls(**kwargs)``, the section's keys plus queueName and
  siteName);
- ``throttler()`` and ``queue_config(**overrides)``: the throttler and the queue config object
  the WorkerAdjuster hands it;
- ``workspec(worker_id, **fields)``: a WorkSpec as Harvester's worker maker makes it;
- ``capabilities`` (its client's; tests branch on these only), ``profile`` (the
  ``testing.PROFILES`` entry it declares), ``finds_ended_jobs`` (its ``find`` also sees jobs
  that already left the live queue: accounting or history by name),
  ``queue_shows_ended_jobs`` (its ``poll`` may answer a job that ended from the live queue,
  before accounting confirms it) and ``close()``.

Process-wide state (shared clients, health cache, submit limits, orphan watch, allocation
book, throttler bindings, registered fakes) is reset around every test; plugin time
(``now``) runs on a ``clock`` the tests can move forward instead of sleeping.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harvester_edge import testing
from harvester_edge.config import Secret
from harvester_edge.edge import allocations, health, lifecycle, limits, watch
from harvester_edge.edge.allocations import AllocationBook
from harvester_edge.edge.retry import RetryPolicy, Timeouts
from harvester_edge.facilities import gc_functions, gc_http, registry
from harvester_edge.facilities.base import Capabilities
from harvester_edge.facilities.globus_compute import GCClient, capabilities_of
from harvester_edge.facilities.iri import IRIClient, IRISettings
from harvester_edge.facilities.s3m import S3MClient
from harvester_edge.harvester import WorkSpec
from harvester_edge.plugins import monitor, submitter, throttler
from harvester_edge.plugins.globus_compute import GCMonitor, GCSubmitter, GCSweeper
from harvester_edge.plugins.iri import IRIMonitor, IRISubmitter, IRISweeper
from harvester_edge.plugins.s3m import S3MMonitor, S3MSubmitter, S3MSweeper
from harvester_edge.plugins.throttler import EdgeThrottler
from harvester_edge.testing_gc import GCDouble
from harvester_edge.testing_iri import IRIDouble
from harvester_edge.testing_s3m import S3MDouble

from ..secret_scan import SCAN
from ._helpers import QUEUE

#: plugin options every family runs the suite with: short real-time limits, grace periods
#: long enough never to pass by themselves (tests move ``clock`` past them instead)
BASE_OPTIONS: dict[str, Any] = {
    "queueName": QUEUE,
    "siteName": QUEUE,
    "profile": "generic",
    "lookupGraceSeconds": 60,
    "missingGraceSeconds": 60,
    "taskTimeoutSeconds": 30,
    "killConfirmSeconds": 0.5,
    "callDeadline": 2,
    "healthCacheSeconds": 0.01,
    "retryBackoff": 0.01,
    "connectTimeout": 1,
    "readTimeout": 1,
}


class Clock:
    """Plugin time (``plugins.*.now``): real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class FakeFamily:
    """The generic plugins bound to ``harvester_edge.testing.FakeFacility``."""

    module = "harvester_edge.testing"
    submitter_name = "FakeSubmitter"
    _names = itertools.count(1)

    #: ``find`` sees jobs that left the live queue too (the fake looks in its accounting)
    finds_ended_jobs = True
    #: a job that ended shows in the queue (unconfirmed) until accounting has it
    queue_shows_ended_jobs = True

    def __init__(self, root: Path, *, profile: str) -> None:
        self.root = root
        self.profile = profile
        self.name = ""
        self.facility: testing.FakeFacility = self.reconfigure()

    def close(self) -> None:
        """Release what the family holds (after its test)."""

    def secrets(self) -> tuple[str, ...]:
        """Credentials that must never appear in a log record of the test."""
        return ()

    @property
    def mode(self) -> str:
        return self.profile

    @property
    def capabilities(self) -> Any:
        return self.facility.capabilities

    @property
    def async_submit(self) -> bool:
        return bool(self.capabilities.async_submit)

    def reconfigure(self, **facility_options: Any) -> testing.FakeFacility:
        """A fresh scheduler (same profile unless given) for plugins built from now on."""
        facility_options.setdefault("profile", self.profile)
        self.name = f"conf{next(self._names)}"
        self.facility = testing.register_facility(
            self.name, testing.FakeFacility(**facility_options)
        )
        return self.facility

    def options(self, **overrides: Any) -> dict[str, Any]:
        """The queue's plugin section (common block merged, as Harvester does)."""
        conf = dict(BASE_OPTIONS)
        conf.update(
            fakeName=self.name,
            remoteWorkDir=str(self.root / "remote"),
            accessPoint=str(self.root / "ap" / "${workerID}"),
        )
        conf.update(overrides)
        return conf

    def plugins(
        self, **overrides: Any
    ) -> tuple[testing.FakeSubmitter, testing.FakeMonitor, testing.FakeSweeper]:
        conf = self.options(**overrides)
        return (
            testing.FakeSubmitter(**conf),
            testing.FakeMonitor(**conf),
            testing.FakeSweeper(**conf),
        )

    def queue_config(self, walltimeLimit: int = 3600, **overrides: Any) -> SimpleNamespace:
        section = {"module": self.module, "name": self.submitter_name, **self.options(**overrides)}
        return SimpleNamespace(queueName=QUEUE, submitter=section, walltimeLimit=walltimeLimit)

    def throttler(self) -> EdgeThrottler:
        return EdgeThrottler(queueName=QUEUE, siteName=QUEUE)

    def workspec(self, worker_id: int, **fields: Any) -> WorkSpec:
        ws = WorkSpec()
        ws.workerID = worker_id
        ws.computingSite = QUEUE
        ws.queueName = QUEUE
        ws.mapType = WorkSpec.MT_NoJob
        ws.nCore = 1
        ws.minRamCount = 2000
        ws.maxWalltime = 3600
        ws.accessPoint = str(self.root / "ap" / "${workerID}")
        for key, value in fields.items():
            setattr(ws, key, value)
        return ws


class DoubleFamily(FakeFamily):
    """A real client and its plugins over an in-process double of its service (a
    ``testing_http.MountedDouble``) whose scheduler is a ``FakeFacility``: the double is
    mounted at the first ``reconfigure`` and stays mounted while the family lives (each
    ``reconfigure`` puts a fresh scheduler behind the same host, so plugins keep their shared
    client); the token file (mode 0600, the double's ``write_token``) is under ``root``."""

    #: the family's (submitter, monitor, sweeper) plugin classes
    plugin_classes: tuple[type, type, type]
    #: the token file's name under ``root``
    token_name = "double.token"

    def __init__(self, root: Path, *, profile: str) -> None:
        self.double: Any = None
        super().__init__(root, profile=profile)
        self.token_file = self.double.write_token(root / self.token_name)

    def new_double(self, facility: testing.FakeFacility) -> Any:
        """The double (not yet mounted) in front of ``facility``."""
        raise NotImplementedError

    def reconfigure(self, **facility_options: Any) -> testing.FakeFacility:
        """A fresh scheduler behind the same host (plugins keep their shared client)."""
        facility_options.setdefault("profile", self.profile)
        self.facility = testing.FakeFacility(**facility_options)
        if self.double is None:
            self.double = self.new_double(self.facility).start()
        self.double.facility = self.facility
        return self.facility

    def close(self) -> None:
        if self.double is not None:
            self.double.stop()

    def client_options(self) -> dict[str, Any]:
        """The family's own keys beside the double's and the token file."""
        return {}

    def options(self, **overrides: Any) -> dict[str, Any]:
        conf = dict(BASE_OPTIONS)
        conf.update(
            self.double.options(),
            token=f"file:{self.token_file}",
            **self.client_options(),
            remoteWorkDir=str(self.root / "remote"),
            accessPoint=str(self.root / "ap" / "${workerID}"),
        )
        conf.update(overrides)
        return conf

    def plugins(self, **overrides: Any) -> tuple[Any, Any, Any]:  # type: ignore[override]
        conf = self.options(**overrides)
        submitter_cls, monitor_cls, sweeper_cls = self.plugin_classes
        return submitter_cls(**conf), monitor_cls(**conf), sweeper_cls(**conf)


class S3MClientFamily(DoubleFamily):
    """The real S3M client and plugins (``harvester_edge.plugins.s3m``) over an S3M double
    (``harvester_edge.testing_s3m``) whose scheduler is a ``FakeFacility`` of the ``sync``
    profile: every request goes through ``requests`` to ``responses`` (mounted while the
    family lives), so each test exercises the client's HTTP parsing, error mapping and token
    handling with the generic plugins.  The token file (mode 0600) is under ``root``.

    The client answers a poll from a job list begun up to ``listShareSeconds`` before it and
    reads a token's introspection once per ``tokenCheckSeconds``; the suite changes the
    scheduler's state (and the credential's) between calls, so both are 0 here: a poll
    shares only a list in flight when it comes (the chunks of one call), and the token's
    facts are read again at every use (the health check included)."""

    module = "harvester_edge.plugins.s3m"
    submitter_name = "S3MSubmitter"
    plugin_classes = (S3MSubmitter, S3MMonitor, S3MSweeper)
    token_name = "s3m.token"
    #: S3M has no job history by name: ``find`` reads the live list only
    finds_ended_jobs = False

    def __init__(self, root: Path, *, profile: str = "sync") -> None:
        super().__init__(root, profile=profile)

    @property
    def s3m(self) -> S3MDouble:
        """The S3M double the plugins talk to."""
        assert self.double is not None
        return self.double

    @property
    def capabilities(self) -> Any:
        return S3MClient.capabilities

    def new_double(self, facility: testing.FakeFacility) -> S3MDouble:
        return S3MDouble(facility)

    def secrets(self) -> tuple[str, ...]:
        return (self.s3m.token,)

    def client_options(self) -> dict[str, Any]:
        return {"listShareSeconds": 0, "tokenCheckSeconds": 0}


def _iri_capabilities(version: str) -> Capabilities:
    """What an IRI client of this API version declares (a client is built, never used)."""
    settings = IRISettings(
        api_url=f"https://iri.invalid/api/{version}", api_version=version, resource="any",
        token=Secret("env:IRI_CONFORMANCE_UNUSED"), timeouts=Timeouts(1, 1),
        policy=RetryPolicy(),
    )  # fmt: skip
    client = IRIClient(settings)
    try:
        return client.capabilities
    finally:
        client.close()


#: the IRI client's capabilities per API version (v2: idempotent submits)
IRI_CAPABILITIES = {version: _iri_capabilities(version) for version in ("v1", "v2")}


class IRIClientFamily(DoubleFamily):
    """The real IRI client and plugins (``harvester_edge.plugins.iri``) of one API version
    over an IRI double (``harvester_edge.testing_iri``) whose scheduler is a ``FakeFacility``:
    v1 on the ``sync`` profile, v2 on the ``idempotent`` one (the double answers a repeated
    ``Idempotency-Key`` from the fake's own store).  Every request goes through ``httpx`` to
    ``respx`` (mounted while the family lives); the token file (mode 0600) is under ``root``
    and the double writes it again when the fake's credential expiry changes (the client
    reads a token's expiry from the JWT itself)."""

    module = "harvester_edge.plugins.iri"
    submitter_name = "IRISubmitter"
    plugin_classes = (IRISubmitter, IRIMonitor, IRISweeper)
    token_name = "iri.token"
    #: the bulk status with ``historical=true`` answers finished jobs by name too
    finds_ended_jobs = True
    #: the live set (``historical=false``) holds no ended job: its history is the only word
    queue_shows_ended_jobs = False
    api_version = "v2"

    def __init__(self, root: Path, *, profile: str | None = None) -> None:
        default = "idempotent" if self.api_version == "v2" else "sync"
        super().__init__(root, profile=profile or default)

    @property
    def iri(self) -> IRIDouble:
        """The IRI double the plugins talk to."""
        assert self.double is not None
        return self.double

    @property
    def capabilities(self) -> Any:
        return IRI_CAPABILITIES[self.api_version]

    def new_double(self, facility: testing.FakeFacility) -> IRIDouble:
        return IRIDouble(facility, api_version=self.api_version)

    def secrets(self) -> tuple[str, ...]:
        return tuple(self.iri.tokens)


class IRIv1ClientFamily(IRIClientFamily):
    """The IRI client on API v1 (no ``Idempotency-Key``: the core's maybe-sent rule)."""

    api_version = "v1"


class IRIv2ClientFamily(IRIClientFamily):
    """The IRI client on API v2 (``Idempotency-Key`` = the worker's tag)."""

    api_version = "v2"


class GCClientFamily(FakeFamily):
    """The real Globus Compute client and plugins (``harvester_edge.plugins.globus_compute``)
    over a GC double (``harvester_edge.testing_gc``) whose scheduler is a ``FakeFacility`` of
    the ``tasks`` profile: globus-sdk sends every request to ``responses`` and
    globus-compute-sdk packs and unpacks every task and result.  The confidential client's
    secret is a file (mode 0600) under ``root``.  A status read is shared for 0 s here (the
    suite changes the scheduler between calls)."""

    module = "harvester_edge.plugins.globus_compute"
    submitter_name = "GCSubmitter"
    mode_name = "batch"

    def __init__(self, root: Path, *, profile: str = "tasks") -> None:
        self.double: GCDouble | None = None
        super().__init__(root, profile=profile)
        self.secret_file = self.gc.write_secret(root / "gc.secret")

    @property
    def gc(self) -> GCDouble:
        assert self.double is not None
        return self.double

    @property
    def capabilities(self) -> Any:
        return capabilities_of(self.mode_name)

    def reconfigure(self, **facility_options: Any) -> testing.FakeFacility:
        facility_options.setdefault("profile", self.profile)
        self.facility = testing.FakeFacility(**facility_options)
        if self.double is None:
            self.double = GCDouble(self.facility).start()
        self.double.facility = self.facility
        return self.facility

    def close(self) -> None:
        if self.double is not None:
            self.double.stop()

    def secrets(self) -> tuple[str, ...]:
        return (self.gc.secret, self.gc.token)

    def options(self, **overrides: Any) -> dict[str, Any]:
        conf = dict(BASE_OPTIONS)
        conf.update(
            self.gc.options(),
            clientSecretFile=str(self.secret_file),
            mode=self.mode_name,
            statusShareSeconds=0,
            submitGatherSeconds=0,
            rateLimitSeconds=0.001,  # the rate bucket has its own tests
            # the suite counts one probe per question and call (started, then read): the
            # next cycle's probe started at once is the acceptance tests' and benchmark's
            prefetchProbes=False,
            remoteWorkDir=str(self.root / "remote"),
            accessPoint=str(self.root / "ap" / "${workerID}"),
        )
        if self.mode_name == "task":
            conf["markerDir"] = str(self.root / "remote" / ".gc-tasks")
        conf.update(overrides)
        return conf

    def plugins(self, **overrides: Any) -> tuple[GCSubmitter, GCMonitor, GCSweeper]:  # type: ignore[override]
        conf = self.options(**overrides)
        return GCSubmitter(**conf), GCMonitor(**conf), GCSweeper(**conf)


class GCTaskFamily(GCClientFamily):
    """The same in task mode: the pilot is the task, its block's job id read from markers."""

    mode_name = "task"


#: every family: one fake per capability profile of the real services (async submit like
#: SFAPI, sync like S3M, idempotent submit like IRI v2, task-based queries like Globus
#: Compute), and the real S3M client over its double
FAMILIES: dict[str, Callable[[Path], Any]] = {
    f"fake-{profile}": (lambda root, profile=profile: FakeFamily(root, profile=profile))
    for profile in testing.PROFILES
}
FAMILIES["s3m-client"] = S3MClientFamily
FAMILIES["iri-v1-client"] = IRIv1ClientFamily
FAMILIES["iri-v2-client"] = IRIv2ClientFamily
FAMILIES["gc-batch-client"] = GCClientFamily
FAMILIES["gc-task-client"] = GCTaskFamily
#: what each family's client declares (read without building the family)
CAPABILITIES: dict[str, Capabilities] = {
    **{f"fake-{profile}": caps for profile, caps in testing.PROFILES.items()},
    "s3m-client": S3MClient.capabilities,
    "iri-v1-client": IRI_CAPABILITIES["v1"],
    "iri-v2-client": IRI_CAPABILITIES["v2"],
}
CAPABILITIES.update(
    {"gc-batch-client": GCClient.capabilities, "gc-task-client": capabilities_of("task")}
)


def families_with(capability: str) -> list[str]:
    """Ids of the families whose client declares ``capability`` (a ``Capabilities`` field)."""
    return [name for name, caps in CAPABILITIES.items() if getattr(caps, capability)]


#: families whose submits return a task resolved later (SFAPI-like, Globus Compute-like)
ASYNC_FAMILIES = families_with("async_submit")
#: families whose service dedupes submits by key (IRI v2-like)
IDEMPOTENT_FAMILIES = families_with("idempotent_submit")
#: families whose polls, lookups and cancels are tasks read a call later (Globus Compute-like)
DEFERRED_FAMILIES = families_with("deferred_queries")


def _reset(monkeypatch: pytest.MonkeyPatch | None = None) -> None:
    registry.forget_clients()
    gc_functions.forget_functions()
    gc_http.forget_buckets()
    health.GATE.forget()
    limits.LIMITS.forget()
    watch.WATCH.forget()
    testing.unregister_facilities()
    if monkeypatch is not None:
        book = AllocationBook()
        for module in (allocations, submitter, monitor, throttler):
            monkeypatch.setattr(module, "BOOK", book, raising=False)
        monkeypatch.setattr(throttler, "_bindings", {})


@pytest.fixture(autouse=True)
def clean_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _reset(monkeypatch)
    yield
    _reset()


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Plugin time: every plugin reads it through ``edge.lifecycle.now``."""
    c = Clock()
    monkeypatch.setattr(lifecycle, "now", c)
    return c


def _family(name: str, root: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Any]:
    """The family for one test; afterwards no log record of the test holds its secrets."""
    for logger in ("harvester_edge", "panda.log"):
        caplog.set_level(logging.DEBUG, logger=logger)
    fam = FAMILIES[name](root)
    for secret in fam.secrets():  # the suite-wide scan looks for them to the end of the run
        SCAN.secret(secret)
    try:
        yield fam
    finally:
        fam.close()
    records = caplog.get_records("setup") + caplog.get_records("call")
    texts = [r.getMessage() + (r.exc_text or "") for r in records]
    leaked = [n for n, secret in enumerate(fam.secrets()) if any(secret in t for t in texts)]
    assert not leaked, f"secret(s) {leaked} of {name} in the test's log records"


@pytest.fixture(params=sorted(FAMILIES))
def family(
    request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> Iterator[Any]:
    yield from _family(request.param, tmp_path, caplog)


@pytest.fixture(params=ASYNC_FAMILIES)
def async_family(
    request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> Iterator[Any]:
    yield from _family(request.param, tmp_path, caplog)


@pytest.fixture(params=IDEMPOTENT_FAMILIES)
def idempotent_family(
    request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> Iterator[Any]:
    yield from _family(request.param, tmp_path, caplog)


@pytest.fixture(params=DEFERRED_FAMILIES)
def deferred_family(
    request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> Iterator[Any]:
    yield from _family(request.param, tmp_path, caplog)
