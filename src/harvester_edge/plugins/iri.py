"""DOE IRI Facility API plugins: the generic plugins bound to ``IRIClient`` (API v1 and v2).

Queue config example: etc/panda_queueconfig.example.json.  Options: docs/queue-config.md
(generated from the ``#:`` comments here);
wire format and behaviour: docs/iri.md.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from ..config import Secret, check
from ..facilities.base import FacilityClient
from ..facilities.iri import API_VERSIONS, PAGE_LIMIT, IRIClient, api_version_of
from ..facilities.iri import settings_from_config as iri_settings
from .base import FacilityBinding
from .monitor import EdgeMonitor
from .options import EdgeOptions
from .submitter import EdgeSubmitter
from .sweeper import EdgeSweeper


@dataclass(frozen=True, kw_only=True)
class IRIOptions(EdgeOptions):
    #: workers per bulk status request (the IRI bulk status call takes up to 1000)
    chunkSize: int = PAGE_LIMIT
    #: (required) base URL with the version (``https://api.iri.nersc.gov/api/v2``); ``apiVersion``
    #: (v1/v2) is read from it, and must agree with it when given
    apiUrl: str = ""
    #: ``v1`` or ``v2`` (empty: from ``apiUrl``); v2 submits carry an ``Idempotency-Key``
    apiVersion: str = ""
    #: (required) the compute resource's name as ``/status/resources`` lists it (or its id)
    resource: str = ""
    #: (required) bearer token: ``file:/path`` (mode 0600, re-read at every request) or
    #: ``env:NAME``; a Globus access token at NERSC and ALCF, an OLCF token at OLCF
    token: Secret | None = None
    #: a token the facility refused is not sent again for this long (unless the secret
    #: changes)
    authRefusalBackoffSeconds: float = 60.0
    #: cancel requests (one ``DELETE`` per job) in flight at once (1-32)
    cancelConcurrency: int = 8
    #: key of the bulk status filter body holding job ids (the facility's choice; the spec
    #: leaves it free; answers are filtered again here)
    statusIdFilterKey: str = "id"
    #: key of the bulk status filter body holding job names (tags), as above
    statusNameFilterKey: str = "name"

    def __post_init__(self) -> None:
        super().__post_init__()
        url, version = self.apiUrl, api_version_of(self.apiUrl)
        check(url.startswith(("https://", "http://")), "apiUrl", f"must be an http(s) URL: {url!r}")
        check(version in API_VERSIONS, "apiUrl", f"must end with /api/v1 or /api/v2: {url!r}")
        check(self.apiVersion in ("", version), "apiVersion", f"is not the URL's {version}")
        check(bool(self.resource), "resource", "is required (the compute resource's name)")
        check(self.token is not None, "token", "is required: file:/path (mode 0600) or env:NAME")
        check(self.authRefusalBackoffSeconds >= 0, "authRefusalBackoffSeconds", "must be >= 0")
        check(1 <= self.cancelConcurrency <= 32, "cancelConcurrency", "must be within 1..32")
        for key in ("statusIdFilterKey", "statusNameFilterKey"):
            check(bool(getattr(self, key)), key, "must not be empty")


class IRIBinding(FacilityBinding[IRIOptions]):
    options_class = IRIOptions

    def client_key(self) -> Hashable:
        """Endpoint, resource, token reference, timeouts and policy: one client each."""
        return ("iri", iri_settings(self.options))

    def make_client(self) -> FacilityClient:
        return IRIClient(iri_settings(self.options))


class IRISubmitter(EdgeSubmitter):
    """Submits PSI/J job specs; v2 with the worker's tag as Idempotency-Key."""

    binding_class = IRIBinding


class IRIMonitor(EdgeMonitor):
    """One bulk status request per 1000 workers, finished jobs included."""

    binding_class = IRIBinding


class IRISweeper(EdgeSweeper):
    """Cancels per job (DELETE), confirmed by the bulk status; local access point clean-up."""

    binding_class = IRIBinding
