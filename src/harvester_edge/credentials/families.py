"""Which support class and channel serve a client: keyed by the client's ``service``.

A family slots in with one ``FamilySupport`` subclass (``register_family``) and, for a
channel with its own transport, a factory in ``CHANNELS`` (the Globus Compute family,
``gc_channel``: ``CHANNELS["globus-compute"]`` is ``envelope_channel`` around its runner).
"""

from __future__ import annotations

from collections.abc import Callable

from ..facilities.base import FacilityClient
from .audit import AuditLog
from .delivery import Channel
from .facility import FacilityConfig, FamilySupport, SFAPISupport
from .gc_channel import GCSupport, gc_channel
from .tokens import IRISupport, S3MSupport

FAMILIES: dict[str, type[FamilySupport]] = {
    "sfapi": SFAPISupport,
    "s3m": S3MSupport,
    "iri": IRISupport,
    "globus-compute": GCSupport,
}

#: channel factories a family registers beside its support (the Globus Compute family:
#: an ``EnvelopeChannel`` around its task runner)
CHANNELS: dict[str, Callable[..., Channel]] = {"globus-compute": gc_channel}


def register_family(service: str, support: type[FamilySupport]) -> None:
    FAMILIES[service] = support


def support_for(client: FacilityClient, config: FacilityConfig, audit: AuditLog) -> FamilySupport:
    cls = FAMILIES.get(client.service, FamilySupport)
    return cls(client, config, audit)
