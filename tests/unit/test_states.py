"""``verdict_of``: a job record as a Harvester status, diagnosis and error code -- for every
Slurm state as the passthrough reads it (rows and both slurmrestd shapes) and for neutral
records without Slurm detail (the DOE IRI API's PSI/J states)."""

from __future__ import annotations

import re

import pytest

from harvester_edge.edge.jobs import JobRecord, JobState
from harvester_edge.edge.states import ERROR_PATTERNS, ErrorCode, verdict_of
from harvester_edge.facilities.passthrough import (
    SlurmState,
    record_from_row,
    record_from_slurmrestd,
    slurm_record,
)
from harvester_edge.harvester import WorkSpec

SUBMITTED, RUNNING, FINISHED = WorkSpec.ST_submitted, WorkSpec.ST_running, WorkSpec.ST_finished
FAILED, CANCELLED = WorkSpec.ST_failed, WorkSpec.ST_cancelled
#: every Slurm state, exit code 0: the worker status and error code (stock Harvester's
#: mapping plus the causes; TIMEOUT and PREEMPTED stay finished)
EXPECTED = {
    "PENDING": (SUBMITTED, None), "CONFIGURING": (SUBMITTED, None),
    "REQUEUED": (SUBMITTED, None), "REQUEUE_FED": (SUBMITTED, None),
    "REQUEUE_HOLD": (SUBMITTED, None), "RESV_DEL_HOLD": (SUBMITTED, None),
    "RUNNING": (RUNNING, None), "COMPLETING": (RUNNING, None), "STAGE_OUT": (RUNNING, None),
    "SIGNALING": (RUNNING, None), "RESIZING": (RUNNING, None), "SUSPENDED": (RUNNING, None),
    "STOPPED": (RUNNING, None),
    "COMPLETED": (FINISHED, None), "TIMEOUT": (FINISHED, None), "PREEMPTED": (FINISHED, None),
    "CANCELLED": (CANCELLED, ErrorCode.CANCELLED), "FAILED": (FAILED, ErrorCode.SLURM_FAILED),
    "NODE_FAIL": (FAILED, ErrorCode.NODE_FAIL), "BOOT_FAIL": (FAILED, ErrorCode.BOOT_FAIL),
    "OUT_OF_MEMORY": (FAILED, ErrorCode.OUT_OF_MEMORY), "DEADLINE": (FAILED, ErrorCode.DEADLINE),
    "REVOKED": (FAILED, ErrorCode.REVOKED), "SPECIAL_EXIT": (FAILED, ErrorCode.SLURM_FAILED),
}  # fmt: skip
STATES = [s for s in SlurmState if s is not SlurmState.UNKNOWN]


def test_the_table_covers_every_slurm_state() -> None:
    assert set(EXPECTED) == {s.long_name for s in STATES}


@pytest.mark.parametrize("state", STATES, ids=lambda s: s.long_name)
def test_every_long_name_and_short_code(state: SlurmState) -> None:
    for text in (state.long_name, state.code):
        verdict = verdict_of(slurm_record("1", text, exit_code=0, accounting=True))
        assert (verdict.status, verdict.error_code) == EXPECTED[state.long_name], text
        assert verdict.status in WorkSpec.ST_LIST
        assert verdict.is_final == (verdict.status in (FINISHED, FAILED, CANCELLED))


@pytest.mark.parametrize("state", STATES, ids=lambda s: s.long_name)
def test_every_state_in_both_slurmrestd_shapes(state: SlurmState) -> None:
    code = {"status": ["SUCCESS"], "return_code": {"set": True, "number": 0}}
    ctld = record_from_slurmrestd(
        {"job_id": 5, "job_state": [state.long_name], "state_reason": "None", "exit_code": code}
    )
    slurmdb = record_from_slurmrestd(
        {"job_id": 5, "state": {"current": [state.long_name], "reason": "None"}, "exit_code": code}
    )
    for record in (ctld, slurmdb):
        verdict = verdict_of(record)
        assert (verdict.status, verdict.error_code) == EXPECTED[state.long_name]
    assert not ctld.confirmed_final  # a live listing
    assert slurmdb.confirmed_final == state.is_final  # accounting


def test_cancelled_by_names_the_uid() -> None:
    row = {"jobid": "7", "state": "CANCELLED by 1234", "exitcode": "0:15", "reason": "None"}
    record = record_from_row(row, accounting=True)
    verdict = verdict_of(record)
    assert verdict.status == CANCELLED and verdict.error_code == ErrorCode.CANCELLED
    assert verdict.diagnosis == "Slurm job cancelled by uid 1234"
    assert (record.signal, record.exit_code, record.confirmed_final) == (15, 0, True)
    plain = verdict_of(slurm_record("7", "CA", accounting=True))
    assert plain.diagnosis == "Slurm job cancelled"


def test_truncated_states() -> None:
    assert verdict_of(slurm_record("1", "CANCELLED+", accounting=True)).status == CANCELLED
    oom = verdict_of(slurm_record("1", "OUT_OF_ME+", exit_code=0, accounting=True))
    assert oom.status == FAILED and oom.error_code == ErrorCode.OUT_OF_MEMORY
    for text in ("REQUEUE_+", "BURST_BUF+", "FROBNICATED"):
        record = record_from_row({"jobid": "5", "state": text}, accounting=True)
        verdict = verdict_of(record)
        assert record.state is JobState.UNKNOWN and not record.confirmed_final
        assert verdict.status is None and text in verdict.diagnosis and not verdict.is_final


@pytest.mark.parametrize(
    "state, exitcode, status, code, words",
    [
        ("COMPLETED", "0:0", FINISHED, None, ""),
        ("COMPLETED", "3:0", FAILED, ErrorCode.NONZERO_EXIT,
         "Slurm job completed with non-zero exit code 3"),
        ("FAILED", "2:0", FAILED, ErrorCode.NONZERO_EXIT,
         "Slurm job failed with non-zero exit code 2"),
        ("FAILED", "0:9", FAILED, ErrorCode.SLURM_FAILED,
         "Slurm job failed, exit code 0, signal 9"),
        ("NODE_FAIL", "1:0", FAILED, ErrorCode.NODE_FAIL,
         "Slurm job hit a node failure (NODE_FAIL), exit code 1"),
        ("TIMEOUT", "0:15", FINISHED, None, "Slurm job reached its walltime (TIMEOUT)"),
        ("PREEMPTED", "1:0", FINISHED, None, "Slurm job was preempted (PREEMPTED)"),
        ("CANCELLED by 0", "0:15", CANCELLED, ErrorCode.CANCELLED, "Slurm job cancelled by uid 0"),
    ],
)  # fmt: skip
def test_exit_codes_and_signals(state, exitcode, status, code, words) -> None:
    verdict = verdict_of(record_from_row({"jobid": "1", "state": state, "exitcode": exitcode},
                                         accounting=True))  # fmt: skip
    assert (verdict.status, verdict.error_code, verdict.diagnosis) == (status, code, words)


def test_reasons_go_into_the_diagnosis() -> None:
    live = verdict_of(slurm_record("1", "PENDING", reason="Priority"))
    assert live.status == SUBMITTED and live.diagnosis == "PENDING (reason: Priority)"
    assert verdict_of(slurm_record("1", "PENDING", reason="None")).diagnosis == ""
    node = verdict_of(slurm_record("1", "NODE_FAIL", exit_code=0, reason="NodeDown"))
    assert (
        node.diagnosis == "Slurm job hit a node failure (NODE_FAIL), exit code 0 (reason: NodeDown)"
    )


@pytest.mark.parametrize(
    "state, exit_code, status, code",
    [
        (JobState.QUEUED, None, SUBMITTED, None), (JobState.HELD, None, SUBMITTED, None),
        (JobState.ACTIVE, None, RUNNING, None), (JobState.COMPLETED, 0, FINISHED, None),
        (JobState.FAILED, 2, FAILED, ErrorCode.NONZERO_EXIT),
        (JobState.FAILED, None, FAILED, ErrorCode.SLURM_FAILED),
        (JobState.CANCELED, None, CANCELLED, ErrorCode.CANCELLED),
        (JobState.UNKNOWN, None, None, None),
    ],
)  # fmt: skip
def test_neutral_records_without_slurm_detail(state, exit_code, status, code) -> None:
    record = JobRecord("j-1", state, native=state.value, exit_code=exit_code)
    verdict = verdict_of(record)
    assert (verdict.status, verdict.error_code) == (status, code)
    if state is JobState.CANCELED:
        assert verdict.diagnosis == "Slurm job cancelled"  # no uid when none is said


# --- error codes in Harvester's categories (harvestercore/worker_errors.py) -----------------

STOCK_PATTERNS = {  # copied from stock Harvester 0.7.5's worker_errors.py (the ones we use)
    2064: r"wrapper got cvmfs repos issue",
    5601: r"submission command failed \(exit code = .*\).*",
    5699: r"Slurm .*",
}


def test_codes_sit_in_harvesters_categories() -> None:
    assert ErrorCode.CVMFS == 2064 and ErrorCode.SUBMIT_REJECTED == 5601
    own = [c for c in ErrorCode if c not in (ErrorCode.CVMFS, ErrorCode.SUBMIT_REJECTED)]
    assert all(5650 <= c <= 5698 for c in own), own  # our block in the Slurm section
    assert set(ERROR_PATTERNS) == set(ErrorCode)
    for code in (ErrorCode.CVMFS, ErrorCode.SUBMIT_REJECTED):
        assert ERROR_PATTERNS[code] == STOCK_PATTERNS[int(code)]
    for code in own:  # everything of ours also lands in the stock Slurm catch-all
        assert ERROR_PATTERNS[code].startswith("Slurm ")
        assert re.fullmatch(STOCK_PATTERNS[5699], ERROR_PATTERNS[code].replace("\\", ""))


@pytest.mark.parametrize(
    "state, exit_code",
    [
        ("FAILED", 3), ("COMPLETED", 2), ("FAILED", 0), ("NODE_FAIL", 0), ("BOOT_FAIL", 0),
        ("OUT_OF_MEMORY", 0), ("DEADLINE", 0), ("CANCELLED by 0", 0), ("CANCELLED", 0),
        ("REVOKED", 0), ("SPECIAL_EXIT", 0),
    ],
)  # fmt: skip
def test_every_failure_diagnosis_matches_its_codes_pattern(state: str, exit_code: int) -> None:
    verdict = verdict_of(slurm_record("1", state, exit_code=exit_code, reason="x", accounting=True))
    assert verdict.error_code is not None
    assert re.search(ERROR_PATTERNS[verdict.error_code], verdict.diagnosis), verdict
    assert re.search(STOCK_PATTERNS[5699], verdict.diagnosis)
