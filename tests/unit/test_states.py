import pytest

from harvester_edge.edge.jobs import record_from_row
from harvester_edge.edge.states import ErrorCode, SlurmState, judge, parse_exit_code
from harvester_edge.harvester import WorkSpec

ALL_CODES = "BF CA CD CG CF DL F NF OOM PD PR RD RF RH RQ RS RV R SI SE SO ST S TO".split()


@pytest.mark.parametrize("code", ALL_CODES)
def test_every_short_code_parses_and_maps_to_a_harvester_status(code):
    state = SlurmState.parse(code)
    assert state.code == code
    assert SlurmState.parse(state.long_name) is state
    assert judge(state, 0).status in WorkSpec.ST_LIST


@pytest.mark.parametrize(
    "text,status",
    [
        ("PENDING", "submitted"), ("CF", "submitted"), ("RUNNING", "running"),
        ("CG", "running"), ("COMPLETING", "running"), ("S", "running"),
        ("COMPLETED", "finished"), ("TIMEOUT", "finished"), ("PREEMPTED", "finished"),
        ("CANCELLED by 1234", "cancelled"), ("CANCELLED+", "cancelled"), ("FAILED", "failed"),
        ("NODE_FAIL", "failed"), ("BOOT_FAIL", "failed"), ("OUT_OF_MEMORY", "failed"),
        ("DEADLINE", "failed"),
    ],
)  # fmt: skip
def test_state_mapping(text, status):
    assert judge(SlurmState.parse(text), 0).status == status


def test_completed_with_nonzero_exit_is_failed_with_the_code():
    v = judge(SlurmState.COMPLETED, 3)
    assert v.status == "failed" and "3" in v.diagnosis and v.error_code == ErrorCode.NONZERO_EXIT


@pytest.mark.parametrize(
    "state,word,code",
    [
        (SlurmState.NODE_FAIL, "node failure", ErrorCode.NODE_FAIL),
        (SlurmState.BOOT_FAIL, "boot", ErrorCode.BOOT_FAIL),
        (SlurmState.OUT_OF_MEMORY, "out of memory", ErrorCode.OUT_OF_MEMORY),
        (SlurmState.DEADLINE, "deadline", ErrorCode.DEADLINE),
    ],
)
def test_hard_failures_name_their_cause(state, word, code):
    v = judge(state, 1, reason="NodeDown")
    assert v.status == "failed" and word in v.diagnosis.lower() and v.error_code == code
    assert "NodeDown" in v.diagnosis


def test_cancelled_by_names_the_uid():
    rec = record_from_row(
        {"jobid": "7", "state": "CANCELLED by 1234", "exitcode": "0:15"}, source="accounting"
    )
    v = rec.verdict()
    assert v.status == "cancelled" and "1234" in v.diagnosis
    assert rec.signal == 15 and rec.exit_code == 0


def test_exit_codes():
    assert parse_exit_code("3:0") == (3, 0)
    assert parse_exit_code("0:9") == (0, 9)
    assert parse_exit_code(2) == (2, 0)
    assert parse_exit_code("") == (None, None)
    assert parse_exit_code("garbage") == (None, None)


def test_unknown_state_is_an_error_naming_it():
    with pytest.raises(ValueError, match="WEIRD"):
        SlurmState.parse("WEIRD")


def test_record_from_row_rejects_rows_without_id():
    with pytest.raises(ValueError, match="jobid"):
        record_from_row({"state": "RUNNING"}, source="queue")
    assert record_from_row({"jobid": "12.batch", "state": "R"}, source="queue").job_id == "12"


# --- error codes in Harvester's categories (harvestercore/worker_errors.py) -----------------

STOCK_PATTERNS = {  # copied from stock Harvester 0.7.5's worker_errors.py (the ones we use)
    2064: r"wrapper got cvmfs repos issue",
    5601: r"submission command failed \(exit code = .*\).*",
    5699: r"Slurm .*",
}


def test_codes_sit_in_harvesters_categories() -> None:
    import re

    from harvester_edge.edge.states import ERROR_PATTERNS

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
        (SlurmState.FAILED, 3),
        (SlurmState.COMPLETED, 2),
        (SlurmState.FAILED, 0),
        (SlurmState.NODE_FAIL, 0),
        (SlurmState.BOOT_FAIL, 0),
        (SlurmState.OUT_OF_MEMORY, 0),
        (SlurmState.DEADLINE, 0),
        (SlurmState.CANCELLED, 0),
        (SlurmState.REVOKED, 0),
        (SlurmState.SPECIAL_EXIT, 0),
    ],
)
def test_every_failure_diagnosis_matches_its_codes_pattern(
    state: SlurmState, exit_code: int
) -> None:
    import re

    from harvester_edge.edge.states import ERROR_PATTERNS

    v = judge(state, exit_code, 0, "", "CANCELLED by 0" if state is SlurmState.CANCELLED else "")
    assert v.error_code is not None
    assert re.search(ERROR_PATTERNS[v.error_code], v.diagnosis), (v.error_code, v.diagnosis)
    assert re.search(STOCK_PATTERNS[5699], v.diagnosis)


def test_unknown_state_text_is_could_not_check_for_that_row() -> None:
    from harvester_edge.edge.jobs import record_from_row

    record = record_from_row({"jobid": "5", "state": "BURST_BUF+"}, source="accounting")
    assert record.state is SlurmState.UNKNOWN and not record.state.is_final
    verdict = record.verdict()
    assert verdict.status is None and "BURST_BUF+" in verdict.diagnosis


def test_a_truncated_state_is_read_when_only_one_state_fits() -> None:
    assert SlurmState.parse("OUT_OF_ME+") is SlurmState.OUT_OF_MEMORY
    assert SlurmState.parse("CANCELLED+") is SlurmState.CANCELLED
    with pytest.raises(ValueError):
        SlurmState.parse("REQUEUE_+")  # REQUEUE_FED or REQUEUE_HOLD: not guessed
