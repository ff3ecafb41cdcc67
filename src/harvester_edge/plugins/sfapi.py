"""NERSC Superfacility API plugins: the generic plugins bound to ``SFAPIClient``.

Queue config example: etc/panda_queueconfig.example.json.  Options: docs/queue-config.md
(generated from the ``#:`` comments here).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from ..config import check
from ..facilities.base import FacilityClient, iso_epoch
from ..facilities.sfapi import DEFAULT_API_URL, DEFAULT_TOKEN_URL, SFAPIClient, settings_from_config
from .base import FacilityBinding
from .monitor import EdgeMonitor
from .options import EdgeOptions
from .submitter import EdgeSubmitter
from .sweeper import EdgeSweeper


@dataclass(frozen=True, kw_only=True)
class SFAPIOptions(EdgeOptions):
    #: the SFAPI machine name (``perlmutter``, ...)
    machine: str = "perlmutter"
    #: SFAPI base URL
    apiUrl: str = DEFAULT_API_URL
    #: OAuth2 token endpoint of the Iris client
    tokenUrl: str = DEFAULT_TOKEN_URL
    #: (required) Iris client key file: client id on the first line, then the private key;
    #: mode 0600
    keyFile: str = ""
    #: after the facility refused the credential, no request is made for this long
    authRefusalBackoffSeconds: float = 60.0
    #: when the Iris client expires (ISO date as Iris shows it, e.g. 2027-01-31T00:00:00Z):
    #: the throttler and the credential manager warn before and stop after it
    clientExpires: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.machine.isidentifier(), "machine", f"is not a machine name: {self.machine!r}")
        for key in ("apiUrl", "tokenUrl"):
            url = getattr(self, key)
            check(
                url.startswith(("https://", "http://")), key, f"must be an http(s) URL, got {url!r}"
            )
        check(bool(self.keyFile), "keyFile", "is required (path to the Iris client key file)")
        check(
            not self.clientExpires or iso_epoch(self.clientExpires) is not None,
            "clientExpires",
            f"must be an ISO 8601 date, got {self.clientExpires!r}",
        )
        check(
            self.authRefusalBackoffSeconds >= 0,
            "authRefusalBackoffSeconds",
            f"must be >= 0, got {self.authRefusalBackoffSeconds}",
        )


class SFAPIBinding(FacilityBinding[SFAPIOptions]):
    options_class = SFAPIOptions

    def client_key(self) -> Hashable:
        """Everything that shapes the client (endpoint, credential, timeouts, retry policy):
        a queue with another policy gets its own client, never the first queue's."""
        return ("sfapi", settings_from_config(self.options))

    def make_client(self) -> FacilityClient:
        return SFAPIClient(settings_from_config(self.options))


class SFAPISubmitter(EdgeSubmitter):
    """Submits Slurm batch jobs through SFAPI; never waits for the submit task."""

    binding_class = SFAPIBinding


class SFAPIMonitor(EdgeMonitor):
    """Bulk squeue/sacct monitoring through SFAPI, with the pilot summary when available."""

    binding_class = SFAPIBinding


class SFAPISweeper(EdgeSweeper):
    """Bulk cancel through SFAPI, confirmed by Slurm; local access point clean-up."""

    binding_class = SFAPIBinding
