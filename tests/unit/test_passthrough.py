"""The Slurm passthrough: state names and codes, sacct's truncations, exit codes, squeue/sacct
rows, slurmrestd's two job shapes, and the confirmation of final states from accounting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from harvester_edge.edge.jobs import JobRecord, JobState
from harvester_edge.facilities.passthrough import (
    SlurmState,
    confirm_with_accounting,
    job_state,
    parse_exit_code,
    record_from_row,
    record_from_slurmrestd,
    slurm_record,
)

S, J = SlurmState, JobState
#: every Slurm state with its neutral state and cause
EXPECTED = {
    S.PENDING: (J.QUEUED, None), S.CONFIGURING: (J.QUEUED, None), S.REQUEUED: (J.QUEUED, None),
    S.REQUEUE_FED: (J.QUEUED, None), S.REQUEUE_HOLD: (J.HELD, None),
    S.RESV_DEL_HOLD: (J.HELD, None), S.RUNNING: (J.ACTIVE, None), S.COMPLETING: (J.ACTIVE, None),
    S.STAGE_OUT: (J.ACTIVE, None), S.SIGNALING: (J.ACTIVE, None), S.RESIZING: (J.ACTIVE, None),
    S.SUSPENDED: (J.ACTIVE, None), S.STOPPED: (J.ACTIVE, None), S.COMPLETED: (J.COMPLETED, None),
    S.CANCELLED: (J.CANCELED, None), S.FAILED: (J.FAILED, None),
    S.NODE_FAIL: (J.FAILED, "NODE_FAIL"), S.BOOT_FAIL: (J.FAILED, "BOOT_FAIL"),
    S.OUT_OF_MEMORY: (J.FAILED, "OUT_OF_MEMORY"), S.DEADLINE: (J.FAILED, "DEADLINE"),
    S.REVOKED: (J.FAILED, "REVOKED"), S.SPECIAL_EXIT: (J.FAILED, "SPECIAL_EXIT"),
    S.TIMEOUT: (J.FAILED, "TIMEOUT"), S.PREEMPTED: (J.FAILED, "PREEMPTED"),
    S.UNKNOWN: (J.UNKNOWN, None),
}  # fmt: skip
ALL_CODES = "BF CA CD CG CF DL F NF OOM PD PR RD RF RH RQ RS RV R SI SE SO ST S TO".split()


def test_every_state_has_its_neutral_state() -> None:
    assert set(EXPECTED) == set(SlurmState)
    for state, expected in EXPECTED.items():
        assert job_state(state) == expected, state
        assert state.is_final == expected[0].is_final


@pytest.mark.parametrize("code", ALL_CODES)
def test_every_short_code_and_long_name_parses(code: str) -> None:
    state = SlurmState.parse(code)
    assert state.code == code
    assert SlurmState.parse(state.long_name) is state
    assert SlurmState.parse(state.long_name.lower()) is state
    assert SlurmState.parse(f"  {state.long_name} ") is state


def test_cancelled_by_and_truncations() -> None:
    assert SlurmState.parse("CANCELLED by 1234") is SlurmState.CANCELLED
    assert SlurmState.parse("CANCELLED+") is SlurmState.CANCELLED
    assert SlurmState.parse("OUT_OF_ME+") is SlurmState.OUT_OF_MEMORY
    assert SlurmState.parse("NODE_FA+") is SlurmState.NODE_FAIL
    for ambiguous in ("REQUEUE_+", "RE+", "CO+"):  # two states start so, or too short
        with pytest.raises(ValueError):
            SlurmState.parse(ambiguous)
    for bad in ("WEIRD", "", "UNKNOWN", "?"):
        with pytest.raises(ValueError, match="unknown Slurm job state"):
            SlurmState.parse(bad)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3:0", (3, 0)), ("0:9", (0, 9)), ("0:15", (0, 15)), ("  1:0 ", (1, 0)), ("2", (2, 0)),
        (2, (2, 0)), (0, (0, 0)), ("", (None, None)), (None, (None, None)),
        ("garbage", (None, None)), ("1:x", (None, None)),
    ],
)  # fmt: skip
def test_exit_codes(text: str | int | None, expected: tuple[int | None, int | None]) -> None:
    assert parse_exit_code(text) == expected


def test_slurm_record_keeps_the_facilitys_words() -> None:
    record = slurm_record("7", "CANCELLED by 0 ", reason="None", nodes="(null)", accounting=True)
    assert record.state is JobState.CANCELED and record.native == "CANCELLED by 0"
    assert record.reason == "" and record.nodes == "" and record.confirmed_final
    odd = slurm_record("8", "BURST_BUF+", accounting=True)
    assert odd.state is JobState.UNKNOWN and odd.native == "BURST_BUF+"
    assert not odd.confirmed_final  # nothing unreadable is ever confirmed final
    assert slurm_record("9", "", accounting=False).native == "UNKNOWN"


# ---------------------------------------------------------------------- squeue / sacct rows
def test_squeue_rows_are_live_and_carry_no_exit_code() -> None:
    row = {"jobid": "12", "state": "COMPLETED", "st": "CD", "name": "tag-1", "reason": "None",
           "nodelist": "nid[001-002]", "exitcode": "3:0"}  # fmt: skip
    record = record_from_row(row, accounting=False)
    assert (record.job_id, record.name, record.nodes) == ("12", "tag-1", "nid[001-002]")
    assert record.state is JobState.COMPLETED and record.exit_code is None
    assert not record.confirmed_final and record.reason == ""
    short = record_from_row({"jobid": "13", "st": "PD", "name": "t"}, accounting=False)
    assert short.state is JobState.QUEUED and short.native == "PD"


def test_sacct_rows_are_accounting_with_exit_code_and_jobname() -> None:
    row = {"jobid": "14", "state": "CANCELLED by 1234", "exitcode": "0:15", "jobname": "tag-2",
           "nnodes": "2", "reason": "None"}  # fmt: skip
    record = record_from_row(row, accounting=True, name_key="jobname")
    assert record.state is JobState.CANCELED and record.native == "CANCELLED by 1234"
    assert (record.exit_code, record.signal, record.name) == (0, 15, "tag-2")
    assert record.confirmed_final
    running = record_from_row({"jobid": "15", "state": "RUNNING"}, accounting=True)
    assert running.state is JobState.ACTIVE and not running.confirmed_final
    step = record_from_row({"jobid": "16.batch", "state": "FAILED", "exitcode": "2:0"},
                           accounting=True)  # fmt: skip
    assert step.job_id == "16" and step.exit_code == 2


def test_rows_without_an_id_are_refused() -> None:
    with pytest.raises(ValueError, match="jobid"):
        record_from_row({"state": "RUNNING"}, accounting=False)
    with pytest.raises(ValueError, match="JobID"):
        record_from_row({"jobid": "1"}, accounting=False, id_key="JobID")


# ---------------------------------------------------------------------- slurmrestd shapes
def return_code(number: int | None) -> dict:
    return {"set": number is not None, "infinite": False, "number": number or 0}


def test_slurmctld_shape_is_a_live_listing_never_confirmed() -> None:
    job = {
        "job_id": 101, "name": "tag-3", "job_state": ["RUNNING"], "state_reason": "None",
        "exit_code": {"status": ["PENDING"], "return_code": return_code(None)},
        "nodes": "node[1-2]",
    }  # fmt: skip
    record = record_from_slurmrestd(job)
    assert (record.job_id, record.name, record.nodes) == ("101", "tag-3", "node[1-2]")
    assert record.state is JobState.ACTIVE and record.exit_code is None
    assert record.reason == "" and not record.confirmed_final
    ended = {**job, "job_state": ["COMPLETED"], "exit_code": {
        "status": ["SUCCESS"], "return_code": return_code(0)}}  # fmt: skip
    done = record_from_slurmrestd(ended)
    assert done.state is JobState.COMPLETED and done.exit_code == 0
    assert not done.confirmed_final  # a live listing: accounting confirms
    pending = {"job_id": 102, "job_state": ["PENDING", "REQUEUED"], "state_reason": "Priority"}
    record = record_from_slurmrestd(pending)
    assert record.state is JobState.QUEUED and record.reason == "Priority"
    old = {"job_id": 103, "job_state": "FAILED", "exit_code": 256}  # older plugins: a string
    record = record_from_slurmrestd(old)  # and the raw wait status
    assert record.state is JobState.FAILED and (record.exit_code, record.signal) == (1, 0)


def test_slurmdb_shape_is_accounting_and_confirms_final_states() -> None:
    job = {
        "job_id": 201, "name": "tag-4",
        "state": {"current": ["FAILED"], "reason": "NonZeroExitCode"},
        "exit_code": {"status": ["ERROR"], "return_code": return_code(3),
                      "signal": {"id": {"set": False, "number": 0}, "name": ""}},
        "nodes": "node1",
    }  # fmt: skip
    record = record_from_slurmrestd(job)
    assert record.state is JobState.FAILED and record.exit_code == 3 and record.signal is None
    assert record.reason == "NonZeroExitCode" and record.confirmed_final
    killed = {**job, "state": {"current": ["CANCELLED"], "reason": "None"}, "exit_code": {
        "status": ["SIGNALED"], "return_code": return_code(0),
        "signal": {"id": {"set": True, "number": 9}, "name": "KILL"}}}  # fmt: skip
    record = record_from_slurmrestd(killed)
    assert record.state is JobState.CANCELED and record.signal == 9 and record.confirmed_final
    oom = record_from_slurmrestd({**job, "state": {"current": ["OUT_OF_MEMORY"]}})
    assert oom.cause == "OUT_OF_MEMORY" and oom.confirmed_final
    live = record_from_slurmrestd({**job, "state": {"current": ["RUNNING"], "reason": "None"}})
    assert live.state is JobState.ACTIVE and not live.confirmed_final
    odd = record_from_slurmrestd({**job, "state": {"current": []}})
    assert odd.state is JobState.UNKNOWN and not odd.confirmed_final
    with pytest.raises(ValueError, match="job_id"):
        record_from_slurmrestd({"state": {"current": ["RUNNING"]}})


# ---------------------------------------------------------------------- accounting confirmation
class Source:
    """A query recording the ids it was asked about."""

    def __init__(self, records: Sequence[JobRecord]):
        self.records = {r.job_id: r for r in records}
        self.asked: list[list[str]] = []

    def __call__(self, ids: Sequence[str]) -> Mapping[str, JobRecord]:
        self.asked.append(list(ids))
        return {i: self.records[i] for i in ids if i in self.records}


def test_live_first_then_accounting_for_the_gone_and_the_final() -> None:
    live = Source([
        slurm_record("1", "RUNNING"), slurm_record("2", "PENDING"),
        slurm_record("3", "COMPLETED"), slurm_record("6", "CANCELLED"),
    ])  # fmt: skip
    accounting = Source([
        slurm_record("3", "COMPLETED", exit_code=0, accounting=True),
        slurm_record("4", "FAILED", exit_code=2, accounting=True),
        slurm_record("1", "FAILED", exit_code=9, accounting=True),  # never asked about
    ])  # fmt: skip
    out = confirm_with_accounting(["1", "2", "3", "4", "5", "6"], live, accounting)
    assert live.asked == [["1", "2", "3", "4", "5", "6"]]
    assert accounting.asked == [["3", "4", "5", "6"]]
    assert list(out) == ["1", "2", "3", "4", "6"]  # 5: seen nowhere
    assert out["1"].state is JobState.ACTIVE and not out["1"].confirmed_final
    assert out["3"].confirmed_final and out["3"].exit_code == 0
    assert out["4"].state is JobState.FAILED and out["4"].confirmed_final
    # final in the queue, not (yet) in accounting: the live word, unconfirmed
    assert out["6"].state is JobState.CANCELED and not out["6"].confirmed_final


def test_all_live_is_one_request_and_nothing_is_none() -> None:
    live = Source([slurm_record("1", "R"), slurm_record("2", "PD")])
    accounting = Source([])
    assert set(confirm_with_accounting(["1", "2"], live, accounting)) == {"1", "2"}
    assert accounting.asked == []
    assert confirm_with_accounting([], live, accounting) == {} and len(live.asked) == 1
