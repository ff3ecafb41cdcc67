"""OLCF S3M plugins: the generic plugins bound to ``S3MClient``.

Queue config example: etc/panda_queueconfig.example.json.  Options: docs/queue-config.md
(generated from the ``#:`` comments here);
the operator's side: docs/s3m.md.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from ..config import Secret, check
from ..errors import EdgeConfigError
from ..facilities.base import FacilityClient
from ..facilities.s3m import DEFAULT_API_URL, DEFAULT_PATH_PREFIX, S3MClient, S3MSettings
from ..facilities.s3m import settings_from_config as settings_of
from .base import FacilityBinding
from .monitor import EdgeMonitor
from .options import EdgeOptions
from .submitter import EdgeSubmitter
from .sweeper import EdgeSweeper


@dataclass(frozen=True, kw_only=True)
class S3MOptions(EdgeOptions):
    #: (required) the S3M Slurm resource (defiant, odo, ...)
    resource: str = ""
    #: S3M host (also serves the token introspection route)
    apiUrl: str = DEFAULT_API_URL
    #: slurmrestd data parser version the resource serves: v0.0.42, v0.0.43 or v0.0.44
    apiVersion: str = "v0.0.43"
    #: the resource's Slurm path; hosts before March 2026 had no ``/open/``:
    #: ``/slurm/{version}/{resource}``
    pathPrefix: str = DEFAULT_PATH_PREFIX
    #: raw (``Authorization: <token>``, as OLCF documents) or bearer
    authHeader: str = "raw"
    #: job, or jobs (v0.0.44 only)
    submitForm: str = "job"
    #: the public status route, asked without the token (empty: ``{apiUrl}/olcf/v1alpha/status``)
    statusUrl: str = ""
    #: (required) the project access token: ``file:/path`` (mode 0600) or ``env:NAME``,
    #: never inline
    token: Secret | None = None
    #: the token counts as expired this long before its ``plannedExpiration``: nothing is
    #: sent with it any more
    tokenMarginSeconds: float = 300.0
    #: how often a token's introspection is read again (a new token is introspected before
    #: its first use)
    tokenCheckSeconds: float = 600.0
    #: after S3M refused the token, nothing is sent with it for this long (a new token in
    #: the file ends the wait)
    authRefusalBackoffSeconds: float = 60.0
    #: a job list begun at most this long before a poll answers it too (seconds; 0: only a
    #: list in flight when the poll comes, i.e. the chunks of one monitor call share one)
    listShareSeconds: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(self.resource), "resource", "is required (the S3M resource, e.g. defiant)")
        check(
            self.token is not None, "token", "is required: 'file:/path' (mode 0600) or 'env:NAME'"
        )


class S3MBinding(FacilityBinding[S3MOptions]):
    options_class = S3MOptions

    def validate(self, owner: str) -> None:
        try:  # every key checked when the plugin is built, not at first use
            self.settings()
        except EdgeConfigError as exc:
            raise EdgeConfigError(f"{owner}: {exc}") from None

    def settings(self) -> S3MSettings:
        return settings_of(self.options)

    def client_key(self) -> Hashable:
        """Everything that shapes the client (endpoint, resource, version and paths, token
        reference, header style, timeouts, retry policy): one client, one session each."""
        return ("s3m", self.settings())

    def make_client(self) -> FacilityClient:
        return S3MClient(self.settings())


class S3MSubmitter(EdgeSubmitter):
    """Submits slurmrestd jobs through S3M; the job id comes back at once."""

    binding_class = S3MBinding


class S3MMonitor(EdgeMonitor):
    """One live job list per cycle, history for the jobs that left it."""

    binding_class = S3MBinding


class S3MSweeper(EdgeSweeper):
    """DELETE per job through S3M, confirmed by Slurm; local access point clean-up."""

    binding_class = S3MBinding
