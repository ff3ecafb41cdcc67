"""What the generic plugins share: options, the shared facility client and logging.

A worker's edge state between cycles lives in its work attributes (``edge/lifecycle.py``):
Harvester stores them in its DB, so a restart loses nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from ..config import parse_config
from ..facilities.base import FacilityClient
from ..facilities.registry import shared_client
from ..harvester import setup_logger
from .options import EdgeOptions

LOG = setup_logger("harvester_edge")

O = TypeVar("O", bound=EdgeOptions)  # noqa: E741


class FacilityBinding(Generic[O]):
    """Ties a plugin family to its facility client; subclasses are short declarations."""

    options_class: ClassVar[type[EdgeOptions]] = EdgeOptions
    options: O

    def __init__(self, kwargs: Mapping[str, Any], owner: str):
        self.options = parse_config(self.options_class, kwargs, owner)  # type: ignore[assignment]
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

    binding_class: ClassVar[type[FacilityBinding[Any]]] = FacilityBinding

    def _edge_setup(self, kwargs: Mapping[str, Any]) -> None:
        self._edge = self.binding_class(kwargs, type(self).__name__)

    @property
    def edge_options(self) -> EdgeOptions:
        return self._edge.options

    def edge_client(self) -> FacilityClient:
        return self._edge.client()
