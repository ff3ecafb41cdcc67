"""What the three generic plugins share: options, the shared facility client, logging, and
the work attributes in which a worker's edge state persists between cycles (Harvester stores
work attributes in its DB, so a restart loses nothing)."""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

from ..config import parse_config
from ..facilities.base import FacilityClient
from ..facilities.registry import shared_client
from ..harvester import WorkSpec, setup_logger
from .options import EdgeOptions

LOG = setup_logger("harvester_edge")

# Work-attribute keys (documented in docs/operations.md).
TAG = "edgeTag"
TASK = "edgeTask"
WORK_DIR = "edgeWorkDir"
SUBMITTED_AT = "edgeSubmittedAt"
LOOKUP_SINCE = "edgeLookupSince"
MISSING_SINCE = "edgeMissingSince"
PILOTS = "edgePilots"
#: a job id a submit task named, not yet checked against the worker's tag
CANDIDATE = "edgeCandidate"
#: when a submit's outcome was ambiguous (the job may exist twice): the tag is looked up
#: alongside the polls until the lookup grace passes, and duplicates are cancelled
AMBIGUOUS_AT = "edgeAmbiguousAt"


def attr(ws: WorkSpec, key: str) -> Any:
    found, value = ws.get_work_attribute(key)
    return value if found else None


def now() -> float:
    return time.time()


class FacilityBinding:
    """Ties a plugin family to its facility client; subclasses are one-line declarations."""

    options_class: ClassVar[type[EdgeOptions]] = EdgeOptions

    def __init__(self, kwargs: Mapping[str, Any], owner: str):
        self.options = parse_config(self.options_class, kwargs, owner)
        self.validate(owner)

    def validate(self, owner: str) -> None:
        """Family-specific checks that need no I/O (e.g. required credentials)."""

    def client_key(self) -> Hashable:
        raise NotImplementedError

    def make_client(self) -> FacilityClient:
        raise NotImplementedError

    def client(self) -> FacilityClient:
        return shared_client(self.client_key(), self.make_client)


class EdgePlugin:
    """Mixin for the generic plugins: validated options and the family's binding."""

    binding_class: ClassVar[type[FacilityBinding]] = FacilityBinding

    def _edge_setup(self, kwargs: Mapping[str, Any]) -> None:
        self._edge = self.binding_class(kwargs, type(self).__name__)

    @property
    def edge_options(self) -> Any:
        return self._edge.options

    def edge_client(self) -> FacilityClient:
        return self._edge.client()
