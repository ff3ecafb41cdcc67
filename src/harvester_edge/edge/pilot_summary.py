"""The files the batch script leaves in a worker's work dir, and the parser of its summary.

The monitor cannot ask PanDA which of a worker's pilots failed (pilot3 has no notion of several
pilots per batch job), so the batch script writes its own account: one JSON record per pilot
and, at the end, ``worker-summary.json`` for the whole allocation.  Layout, relative to the
worker's work dir::

    worker-summary.json          written by the batch script when the srun step ended
    pilots/<node>-slot<k>.json   one record per pilot (rewritten at its end)
    pilots/<node>-slot<k>.exit   "end node_index slot exit_code" (read by the batch script)
    nodes/<node>.json            the node's CVMFS check: ok or failed, how, one-line reason
    <node>/slot<k>/              the pilot's own working directory (pilot.out = its output)
    node-launcher.sh             the per-node launcher the batch script wrote

Exit codes of the batch job (also what :meth:`PilotSummary.error_code` returns):
``0`` all pilots exited 0; ``64`` (:data:`EXIT_CVMFS`, the wrapper's own code for CVMFS trouble)
a node's CVMFS check failed; else the exit code of the first failing pilot (earliest end, then
node index, then slot); ``65`` (:data:`EXIT_SETUP`) the work dir or a pilot dir could not be
made; ``66`` (:data:`EXIT_LOST`) pilots left no end record (node lost, step killed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import EdgeAPIError

SUMMARY_FILE = "worker-summary.json"
PILOTS_DIR = "pilots"
NODES_DIR = "nodes"
LAUNCHER_FILE = "node-launcher.sh"

EXIT_CVMFS = 64  # same number the ATLAS pilot wrapper uses for CVMFS problems
EXIT_SETUP = 65  # the batch script or launcher could not create its directories or files
EXIT_LOST = 66  # some pilots never wrote an end record (node died, step killed, timeout)

EXIT_CODES: dict[int, str] = {
    0: "all pilots exited 0",
    EXIT_CVMFS: "CVMFS check failed on a node (repository missing, unreadable or hung)",
    EXIT_SETUP: "could not create the work dir, the launcher or a pilot dir",
    EXIT_LOST: "some pilots left no end record (node lost or step killed)",
}


@dataclass(frozen=True)
class PilotRecord:
    """One pilot as its record describes it; ``exit_code`` None means it never finished."""

    node: str
    node_index: int
    slot: int
    start: int | None = None
    end: int | None = None
    exit_code: int | None = None
    gpus: str = ""
    directory: str = ""

    @property
    def failed(self) -> bool:
        return self.exit_code != 0

    def order_key(self) -> tuple[float, int, int]:
        """The batch script's "first failure" order: earliest end, then node index, then slot."""
        end = float("inf") if self.end is None else float(self.end)
        return (end, self.node_index, self.slot)

    def describe(self) -> str:
        code = "no exit code" if self.exit_code is None else f"exit {self.exit_code}"
        return f"slot {self.slot} on {self.node} {code}"


@dataclass(frozen=True)
class PilotSummary:
    """What one worker's pilots did, from ``worker-summary.json``."""

    n_pilots: int
    n_failed: int
    pilots: list[PilotRecord] = field(default_factory=list)
    first_failure: PilotRecord | None = None
    cvmfs_error: str | None = None
    exit_code: int | None = None

    @property
    def n_missing(self) -> int:
        """Pilots expected but without any record (their node failed or never started them)."""
        return max(0, self.n_pilots - len(self.pilots))

    def error_code(self) -> int | None:
        """The worker's error code, None when every pilot succeeded."""
        if self.cvmfs_error:
            return EXIT_CVMFS
        if self.first_failure is not None:
            code = self.first_failure.exit_code
            return EXIT_LOST if code is None else code
        if self.n_failed:
            return EXIT_LOST
        return None

    def diagnosis(self) -> str:
        """One line for Harvester's errorDiag, e.g. '4 pilots, 1 failed, first failure: ...'."""
        text = f"{self.n_pilots} pilots, {self.n_failed} failed"
        if self.first_failure is not None:
            text += f", first failure: {self.first_failure.describe()}"
        elif self.n_missing:
            text += f", first failure: {self.n_missing} pilots never started"
        if self.cvmfs_error:
            text = f"CVMFS unavailable (exit {EXIT_CVMFS}): {self.cvmfs_error}; {text}"
        return text


def _bad(message: str) -> EdgeAPIError:
    return EdgeAPIError(f"worker summary: {message}", transient=False)


def _int_or_none(record: dict[str, Any], key: str) -> int | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"pilot field {key!r} is not an integer: {value!r}")
    return value


def _pilot(record: object) -> PilotRecord:
    if not isinstance(record, dict):
        raise _bad(f"pilot record is not an object: {record!r}")
    try:
        node, node_index, slot = str(record["node"]), record["node_index"], record["slot"]
    except KeyError as exc:
        raise _bad(f"pilot record lacks {exc.args[0]!r}") from None
    if not isinstance(node_index, int) or not isinstance(slot, int):
        raise _bad("pilot node_index/slot are not integers")
    return PilotRecord(
        node=node,
        node_index=node_index,
        slot=slot,
        start=_int_or_none(record, "start"),
        end=_int_or_none(record, "end"),
        exit_code=_int_or_none(record, "exit_code"),
        gpus=str(record.get("gpus") or ""),
        directory=str(record.get("dir") or ""),
    )


def _load(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise _bad(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _bad("top level is not an object")
    return data


def parse_summary(text: str) -> PilotSummary:
    """Parse ``worker-summary.json``; malformed content raises :class:`EdgeAPIError`.

    Counts are recomputed from the records rather than trusted, so a summary written by an
    older or hand-edited script still gives a consistent diagnosis.
    """
    data = _load(text)
    raw_pilots = data.get("pilots", [])
    if not isinstance(raw_pilots, list):
        raise _bad("'pilots' is not a list")
    pilots = sorted((_pilot(p) for p in raw_pilots), key=lambda p: (p.node_index, p.slot))
    expected = data.get("expected_pilots")
    n_pilots = expected if isinstance(expected, int) and expected >= len(pilots) else len(pilots)
    failed = [p for p in pilots if p.failed]
    cvmfs = data.get("cvmfs_error")
    exit_code = data.get("exit_code")
    return PilotSummary(
        n_pilots=n_pilots,
        n_failed=len(failed) + (n_pilots - len(pilots)),
        pilots=pilots,
        first_failure=min(failed, key=PilotRecord.order_key) if failed else None,
        cvmfs_error=str(cvmfs) if cvmfs else None,
        exit_code=exit_code if isinstance(exit_code, int) else None,
    )
