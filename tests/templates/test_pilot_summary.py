"""The worker-summary parser: counts, first failure, CVMFS diagnosis, malformed input."""

from __future__ import annotations

import json

import pytest

from harvester_edge.edge.pilot_summary import EXIT_CVMFS, EXIT_LOST, parse_summary
from harvester_edge.errors import EdgeAPIError


def pilot(node_index: int, slot: int, code: int | None, end: int | None = 100) -> dict[str, object]:
    return {"node": f"nid00{node_index + 1}", "node_index": node_index, "slot": slot,
            "start": 10, "end": end, "exit_code": code}  # fmt: skip


def summary(pilots: list[dict[str, object]], **extra: object) -> str:
    return json.dumps({"expected_pilots": 4, "cvmfs_error": None, "pilots": pilots, **extra})


def test_all_ok() -> None:
    parsed = parse_summary(summary([pilot(n, s, 0) for n in (0, 1) for s in (1, 2)]))
    assert (parsed.n_pilots, parsed.n_failed, parsed.error_code()) == (4, 0, None)
    assert parsed.diagnosis() == "4 pilots, 0 failed"


def test_first_failure_is_the_earliest_end() -> None:
    records = [pilot(0, 1, 0), pilot(0, 2, 5, end=300), pilot(1, 1, 0), pilot(1, 2, 3, end=200)]
    parsed = parse_summary(summary(records))
    assert parsed.n_failed == 2 and parsed.error_code() == 3
    assert parsed.diagnosis() == "4 pilots, 2 failed, first failure: slot 2 on nid002 exit 3"


def test_missing_and_unfinished_pilots_count_as_failed() -> None:
    parsed = parse_summary(summary([pilot(0, 1, 0), pilot(0, 2, None, end=None)]))
    assert (parsed.n_pilots, parsed.n_failed, parsed.n_missing) == (4, 3, 2)
    assert parsed.error_code() == EXIT_LOST
    assert parsed.diagnosis().endswith("first failure: slot 2 on nid001 no exit code")


def test_cvmfs_error_wins() -> None:
    text = summary([pilot(1, 1, 0), pilot(1, 2, 0)], cvmfs_error="nid001: CVMFS repository gone")
    parsed = parse_summary(text)
    assert parsed.error_code() == EXIT_CVMFS
    assert parsed.diagnosis() == (
        "CVMFS unavailable (exit 64): nid001: CVMFS repository gone; "
        "4 pilots, 2 failed, first failure: 2 pilots never started"
    )


@pytest.mark.parametrize(
    "text",
    ["", "{", "[1]", '{"pilots": {}}', '{"pilots": [1]}', '{"pilots": [{"node": "n"}]}',
     '{"pilots": [{"node": "n", "node_index": 0, "slot": 1, "exit_code": "x"}]}'],
)  # fmt: skip
def test_malformed_summary_is_an_api_error(text: str) -> None:
    with pytest.raises(EdgeAPIError, match="worker summary") as info:
        parse_summary(text)
    assert info.value.transient is False
