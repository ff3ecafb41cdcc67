"""The package's own error taxonomy.

Library errors (httpx, requests, globus_sdk, sfapi_client) are converted into these at the
facility-client boundary, so the generic plugins decide with one rule set: a *transient* error
means "could not do it now, try later" (Harvester ``None``), anything else is a definite answer.
Messages never carry secrets: build them from our own words, status codes and the service's
error text, never from request headers or bodies.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base class of every error raised by harvester-edge."""


class EdgeConfigError(EdgeError, ValueError):
    """Bad configuration or input; the message names the offending key or field."""


class EdgeAPIError(EdgeError):
    """The edge service answered, with an error.

    ``transient`` says whether asking again later may succeed (5xx, 429, maintenance);
    ``status`` is the HTTP status when there was one.
    """

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False):
        super().__init__(message)
        self.status = status
        self.transient = transient


class EdgeAuthError(EdgeAPIError):
    """Credentials were refused (401/403 after one token refresh) or cannot be loaded."""


class EdgeNetworkError(EdgeAPIError):
    """No answer: connection refused, reset, or a timeout.  Always transient.

    ``maybe_sent`` is True when the request may have reached the service (read timeout,
    reset after sending): a submit in that state is ambiguous and must be looked up by tag.
    ``silent`` is True when the service did not answer at all (unreachable, no answer in
    time): the rest of a plugin call asks nothing more.  A connection reset is not silent:
    one dropped connection does not stop the other requests of the call.
    """

    def __init__(self, message: str, *, maybe_sent: bool, silent: bool = True):
        super().__init__(message, transient=True)
        self.maybe_sent = maybe_sent
        self.silent = silent


class EdgeUnavailable(EdgeAPIError):
    """The facility says the machine is down or in maintenance (health gating)."""

    def __init__(self, message: str):
        super().__init__(message, transient=True)
