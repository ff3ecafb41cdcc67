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
