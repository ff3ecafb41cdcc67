"""``EdgeCredManager``: Harvester's credential-manager plugin for every edge credential.

Configured in any of Harvester's three styles (``etc/panda_harvester.cfg.example``,
docs/credmanager.md); the work is ``credentials.keeper.Keeper``.  The constructor does no
I/O (Harvester rebuilds per-queue managers every cycle): a ``[credmanager]`` parallel-list
entry names its JSON setup file in ``inCertFile``, read at first use.  Harvester's metrics
key ``check_credential_lifetime`` by ``outCertFile``, which is always set.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..config import parse_config
from ..credentials import redaction
from ..credentials.keeper import Keeper
from ..credentials.setup import CredOptions
from ..errors import EdgeError
from ..harvester import BaseCredManager, setup_logger

LOG = setup_logger("harvester_edge_credmanager")


class EdgeCredManager(BaseCredManager):
    """Checks, renews, delivers and verifies one setup's credentials."""

    def __init__(self, **kwargs: Any) -> None:
        BaseCredManager.__init__(self, **kwargs)
        redaction.guard_loggers()
        self._kwargs = dict(kwargs)
        in_file = str(kwargs.get("inCertFile") or "")
        setup = str(kwargs.get("setup_name") or "")
        if not setup and in_file:
            setup = os.path.splitext(os.path.basename(in_file))[0]
        self.setup_name = setup
        self.outCertFile = str(kwargs.get("outCertFile") or f"harvester-edge:{setup}")
        self._keeper: Keeper | None = None
        if not in_file or kwargs.get("setup_name"):
            self._keeper = Keeper(self._options(self._kwargs))

    def __repr__(self) -> str:
        return f"EdgeCredManager({self.setup_name!r})"

    def _options(self, values: dict[str, Any]) -> CredOptions:
        merged = {**values, "setup_name": self.setup_name, "outCertFile": self.outCertFile}
        return parse_config(CredOptions, merged, f"EdgeCredManager[{self.setup_name}]")

    def keeper(self) -> Keeper:
        """The setup's keeper; a parallel-list entry's JSON file is read here, once."""
        if self._keeper is None:
            path = str(self._kwargs.get("inCertFile"))
            try:
                with open(path, encoding="utf-8") as f:
                    values = json.load(f)
            except (OSError, ValueError) as exc:
                raise EdgeError(
                    f"credmanager setup file {path} is not readable JSON ({exc})"
                ) from None
            if not isinstance(values, dict):
                raise EdgeError(f"credmanager setup file {path} must hold one JSON object")
            self._keeper = Keeper(self._options({**values, **self._kwargs}))
        return self._keeper

    # Harvester's interface -----------------------------------------------------------
    def check_credential(self) -> bool:
        log = self.make_logger(LOG, f"setup={self.setup_name}", method_name="check_credential")
        try:
            ok, notes = self.keeper().check()
        except EdgeError as exc:
            log.error(str(exc))
            return False
        except Exception as exc:  # never break the agent; never a traceback with values
            log.error(f"unexpected {type(exc).__name__}: {redaction.redact(str(exc))[:300]}")
            return False
        for note in notes:
            log.debug(note)
        if not ok:
            log.info("; ".join(notes))
        return ok

    def renew_credential(self) -> tuple[bool, str]:
        log = self.make_logger(LOG, f"setup={self.setup_name}", method_name="renew_credential")
        try:
            ok, message = self.keeper().renew()
        except EdgeError as exc:
            ok, message = False, str(exc)
        except Exception as exc:
            ok, message = False, f"unexpected {type(exc).__name__}: {str(exc)[:300]}"
        message = redaction.redact(message)
        (log.info if ok else log.error)(message)
        return ok, message

    def check_credential_lifetime(self) -> float | None:
        try:
            return self.keeper().lifetime_hours()
        except Exception:
            return 0.0
