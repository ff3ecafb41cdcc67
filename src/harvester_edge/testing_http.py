"""What the HTTP doubles of the package share (``testing_s3m.S3MDouble`` over ``responses``,
``testing_iri.IRIDouble`` over ``respx``): mounting their routes with the client's job
encoder wrapped, unmounting, the context-manager protocol, the ``unencodable`` fault, and
the ``requests`` exceptions of the fake's network faults.

A double's routes and answers are its own; what is here is only the plumbing around them,
kept in one place so that every double mounts, unmounts and takes the encoder fault alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar
from unittest import mock

import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from .edge.spec import JobSpec
from .errors import EdgeNetworkError
from .testing import FakeFacility

__all__ = ["UNENCODABLE", "MountedDouble", "requests_network_error"]

#: the encoder's refusal of a spec when ``unencodable`` is scripted on the fake
UNENCODABLE = "the job header cannot be read (scripted fault 'unencodable')"

_Double = TypeVar("_Double", bound="MountedDouble")


def requests_network_error(exc: EdgeNetworkError) -> requests.RequestException:
    """What ``requests`` raises for the fake's network fault (the transport reads the kind):
    refused (surely not sent), read timeout (silent) or a reset after sending."""
    if not exc.maybe_sent:
        refused = NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
        return requests.exceptions.ConnectionError(MaxRetryError(None, "/", refused))  # type: ignore[arg-type]
    if exc.silent:
        return requests.exceptions.ReadTimeout("Read timed out.")
    reset = ConnectionResetError(104, "Connection reset by peer")
    return requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", reset))


class MountedDouble:
    """Base of a double that mounts a request mock (``responses.RequestsMock`` or
    ``respx.MockRouter``: both ``start``/``stop``/``reset``) in front of the real client.

    A subclass builds its mock in ``start`` and hands it to ``_mount`` with the client module
    and the name of its job encoder (wrapped so that a scripted ``unencodable`` fault makes
    the next spec unencodable: nothing is sent)."""

    facility: FakeFacility
    _mock: Any = None
    _encoder: Any = None

    def start(self: _Double) -> _Double:
        raise NotImplementedError

    def _mount(self, router: Any, client_module: Any, encoder_name: str) -> None:
        """Wrap ``client_module.<encoder_name>`` while mounted, then start ``router``."""
        encode = getattr(client_module, encoder_name)
        self._encoder = mock.patch.object(client_module, encoder_name, self._encoding(encode))
        router.start()
        self._encoder.start()
        self._mock = router

    def stop(self) -> None:
        """Unmount (the encoder too); nothing when not mounted."""
        if self._mock is None:
            return
        if self._encoder is not None:  # a double with no encoder to wrap mounts none
            self._encoder.stop()
            self._encoder = None
        self._mock.stop()
        self._mock.reset()
        self._mock = None

    def __enter__(self: _Double) -> _Double:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _encoding(self, encode: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        """The client's encoder, refusing the next spec when ``unencodable`` is scripted."""

        def encoder(spec: JobSpec, *args: Any, **kwargs: Any) -> dict[str, Any]:
            if self._take_fault("submit", "unencodable"):
                spec = dataclasses.replace(spec, header_problem=UNENCODABLE)
            return encode(spec, *args, **kwargs)

        return encoder

    def _take_fault(self, operation: str, fault: str) -> bool:
        """Drop ``fault`` when it is the next one queued for ``operation`` (not counted as a
        request: it never reaches the service)."""
        fake = self.facility
        with fake._lock:
            queued = fake._faults.get(operation)
            if queued and queued[0] == fault:
                queued.popleft()
                return True
        return False
