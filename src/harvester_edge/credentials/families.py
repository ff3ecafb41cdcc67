"""Which support class and channel serve a client: keyed by the client's ``service``.

A family slots in with one ``FamilySupport`` subclass (``register_family``) and, for a
channel with its own transport, a factory in ``CHANNELS`` (the Globus Compute family:
``CHANNELS["globus-compute"] = lambda options: envelope_channel(options, runner)``).
"""

from __future__ import annotations

from collections.abc import Callable

from ..facilities.base import FacilityClient
from .audit import AuditLog
from .delivery import Channel
from .facility import FacilityConfig, FamilySupport, SFAPISupport
from .tokens import IRISupport, S3MSupport

FAMILIES: dict[str, type[FamilySupport]] = {
    "sfapi": SFAPISupport,
    "s3m": S3MSupport,
    "iri": IRISupport,
}

#: channel factories a family registers beside its support (the Globus Compute family:
#: an ``EnvelopeChannel`` around its task runner)
CHANNELS: dict[str, Callable[..., Channel]] = {}


def register_family(service: str, support: type[FamilySupport]) -> None:
    FAMILIES[service] = support


def support_for(client: FacilityClient, config: FacilityConfig, audit: AuditLog) -> FamilySupport:
    cls = FAMILIES.get(client.service, FamilySupport)
    return cls(client, config, audit)
