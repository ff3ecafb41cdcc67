"""Globus Compute plugins: the generic plugins bound to ``GCClient`` (batch and task mode).

Queue config example: etc/panda_queueconfig.example.json (a Perlmutter MEP).  Options:
docs/configuration.md; the operator's side and the MEP template: docs/globus_compute.md and
etc/globus_compute/.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from ..config import Secret, check
from ..edge.retry import RetryPolicy, Timeouts
from ..errors import EdgeConfigError
from ..facilities.base import FacilityClient
from ..facilities.gc_auth import DEFAULT_AUTH_URL, GCCredentialSettings
from ..facilities.globus_compute import DEFAULT_SERVICE_URL, MODES, GCClient, GCSettings
from .base import FacilityBinding
from .monitor import EdgeMonitor
from .options import EdgeOptions
from .submitter import EdgeSubmitter
from .sweeper import EdgeSweeper

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True, kw_only=True)
class GCOptions(EdgeOptions):
    #: one probe task answers every worker: no need to split 1,000 workers
    chunkSize: int = 5000
    #: (required) the Multi-User Endpoint's id (UUID)
    endpointId: str = ""
    #: the Globus Compute web service (the loopback service in tests and the demo)
    serviceUrl: str = DEFAULT_SERVICE_URL
    #: Globus Auth, where the confidential client gets its tokens
    authUrl: str = DEFAULT_AUTH_URL
    #: confidential client; empty: ``GLOBUS_COMPUTE_CLIENT_ID``/``_SECRET`` from the environment
    clientId: str = ""
    #: the client's secret: ``file:/path`` (mode 0600) or ``env:NAME``
    clientSecret: Secret | None = None
    #: the same as a plain path (mode 0600)
    clientSecretFile: str = ""
    #: instead of a client: a token from the credential manager (``file:/path`` or ``env:NAME``)
    token: Secret | None = None
    #: batch (sbatch through shell tasks on the login node) or task (the pilot is the task)
    mode: str = "batch"
    #: the queue's user endpoint config (the MEP template's variables): one per queue
    userEndpointConfig: dict[str, Any] | None = None
    #: task mode: the login-node user endpoint config for probes and cancels
    probeEndpointConfig: dict[str, Any] | None = None
    #: task mode: where pilot tasks write their Slurm job id and return code (absolute)
    markerDir: str = ""
    #: requests per window per credential (GC allows about 20 per 10 s)
    rateLimitRequests: int = 18
    #: the rate-limit window of ``rateLimitRequests`` (seconds)
    rateLimitSeconds: float = 10.0
    #: a task status read this recently answers again without a request
    statusShareSeconds: float = 5.0
    #: submits of one plugin call arriving this close together go in one batch request
    submitGatherSeconds: float = 0.05
    #: a status probe read starts the next one at once: every cycle answers (2 requests per
    #: cycle); false: start and read alternate (1 request per cycle, an answer every other)
    prefetchProbes: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(_UUID.match(self.endpointId)), "endpointId", "must be the endpoint's UUID")
        for key in ("serviceUrl", "authUrl"):
            url = getattr(self, key)
            check(url.startswith(("https://", "http://")), key, f"must be an http(s) URL: {url!r}")
        check(self.mode in MODES, "mode", f"must be one of {', '.join(MODES)}: {self.mode!r}")
        check(
            self.clientSecretFile == "" or self.clientSecretFile.startswith("/"),
            "clientSecretFile", "must be an absolute path",
        )  # fmt: skip
        check(
            not (self.token is not None and (self.clientId or self.clientSecret)),
            "token", "and clientId/clientSecret are exclusive",
        )  # fmt: skip
        for key in ("userEndpointConfig", "probeEndpointConfig"):
            value = getattr(self, key)
            check(value is None or isinstance(value, dict), key, "must be an object")
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                check(False, key, "must hold JSON values only")
        check(
            self.mode != "task" or self.markerDir.startswith("/"),
            "markerDir", "is required in task mode (an absolute path both nodes see)",
        )  # fmt: skip
        check(1 <= self.rateLimitRequests <= 20, "rateLimitRequests", "must be within 1..20")
        check(self.rateLimitSeconds > 0, "rateLimitSeconds", "must be > 0")
        check(self.statusShareSeconds >= 0, "statusShareSeconds", "must be >= 0")
        check(0 <= self.submitGatherSeconds <= 1, "submitGatherSeconds", "must be within 0..1")


def settings_of(o: GCOptions) -> GCSettings:
    secret = o.clientSecret
    if secret is None and o.clientSecretFile:
        secret = Secret(f"file:{o.clientSecretFile}")
    credential = GCCredentialSettings(o.authUrl, o.clientId, secret, o.token).resolved()
    uec = json.dumps(o.userEndpointConfig or {}, sort_keys=True)
    probe = json.dumps(o.probeEndpointConfig, sort_keys=True) if o.probeEndpointConfig else ""
    deadline = o.callDeadline
    return GCSettings(
        endpoint_id=o.endpointId.lower(),
        service_url=o.serviceUrl.rstrip("/"),
        credential=credential,
        mode=o.mode,
        user_endpoint_config=uec,
        probe_endpoint_config=probe,
        marker_dir=o.markerDir.rstrip("/"),
        timeouts=Timeouts(o.connectTimeout, min(o.readTimeout, deadline)),
        policy=RetryPolicy(attempts=o.retryAttempts, backoff=o.retryBackoff, deadline=deadline),
        rate=(o.rateLimitRequests, o.rateLimitSeconds),
        status_share=o.statusShareSeconds,
        submit_gather=o.submitGatherSeconds,
        prefetch=o.prefetchProbes,
        probe_ttl=max(3600.0, 2 * o.probeTimeoutSeconds),
    )


class GCBinding(FacilityBinding[GCOptions]):
    options_class = GCOptions

    def validate(self, owner: str) -> None:
        try:  # credential keys checked when the plugin is built, not at first use
            self._settings = settings_of(self.options)
        except EdgeConfigError as exc:
            raise EdgeConfigError(f"{owner}: {exc}") from None

    def client_key(self) -> Hashable:
        """Service, endpoint, credential reference, mode and the queue's endpoint config."""
        return ("globus-compute", self._settings)

    def make_client(self) -> FacilityClient:
        return GCClient(self._settings)


class GCSubmitter(EdgeSubmitter):
    """sbatch through a shell task (batch mode), or the pilot as the task (task mode)."""

    binding_class = GCBinding


class GCMonitor(EdgeMonitor):
    """One probe task per cycle for all workers, read the next cycle."""

    binding_class = GCBinding


class GCSweeper(EdgeSweeper):
    """One scancel task per kill, confirmed by the next probe."""

    binding_class = GCBinding
