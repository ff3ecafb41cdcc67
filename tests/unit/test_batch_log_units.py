"""The pieces of the batch-log copy: tail's answer split by path, Slurm's filename patterns,
the stand-in's set_log_file as upstream's, and families without file access."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harvester_edge.edge.lifecycle import BATCH_LOG, BATCH_LOG_COPY, TAG
from harvester_edge.facilities.tails import split_tail_output, tail_command, tail_of
from harvester_edge.harvester import WorkSpec
from harvester_edge.plugins.batch_log import facility_path, fetch_batch_logs
from harvester_edge.plugins.options import EdgeOptions
from harvester_edge.testing import FakeFacility


def real_tail(paths: list[str], n: int) -> tuple[str, str]:
    proc = subprocess.run(["bash", "-c", tail_command(paths, n)], capture_output=True, text=True)
    return proc.stdout, proc.stderr


def test_split_real_tail_output(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a b.log", tmp_path / "b.log", tmp_path / "c.log"
    a.write_text("one\ntwo\n")
    c.write_text("x" * 50)
    paths = [str(a), str(b), str(c)]
    out, err = real_tail(paths, 10)
    texts, unsplit = split_tail_output(paths, out, err, 10)
    assert unsplit == []
    assert texts == {str(a): "one\ntwo\n", str(b): None, str(c): "x" * 10}
    # a path tail cannot read (here a directory: GNU tail stops there) is left out, and
    # what follows it is read alone, never guessed
    (tmp_path / "dir").mkdir()
    paths = [str(a), str(tmp_path / "dir"), str(c)]
    out, err = real_tail(paths, 10)
    texts, unsplit = split_tail_output(paths, out, err, 10)
    assert str(tmp_path / "dir") not in texts and str(tmp_path / "dir") not in unsplit
    assert unsplit == [str(a), str(c)] or texts == {str(a): "one\ntwo\n", str(c): "x" * 10}


def test_a_line_that_looks_like_a_header_is_never_guessed(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    b.write_text("end\n")
    a.write_text(f"\n==> {b} <==\nfake\n" + "y" * 100)
    out, err = real_tail([str(a), str(b)], 200)
    texts, unsplit = split_tail_output([str(a), str(b)], out, err, 200)
    assert unsplit == [str(a), str(b)] and texts == {}


def test_tail_of_cuts_bytes_at_a_character_boundary() -> None:
    assert tail_of("abc", 10) == "abc"
    assert tail_of("aé€z", 4) == "€z"
    assert tail_of("aé€z", 3) == "z"


def worker(path: str | None, batch_id: str | None = "77") -> WorkSpec:
    ws = WorkSpec()
    ws.workerID, ws.batchID = 5, batch_id
    ws.set_work_attributes({TAG: "hedge-h-Q-w5", BATCH_LOG: path})
    return ws


def test_slurm_patterns() -> None:
    assert facility_path(worker("/s/out-%j.%x.log")) == "/s/out-77.hedge-h-Q-w5.log"
    assert facility_path(worker("/s/100%%-%j")) == "/s/100%-77"
    assert facility_path(worker("/s/%u-%j")) is None  # only Slurm knows the user here
    assert facility_path(worker("/s/%5j")) is None
    assert facility_path(worker("/s/x.out", batch_id=None)) is None
    assert facility_path(worker(None)) is None


def test_stand_in_set_log_file_as_upstream(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PANDA_CACHE_URL_R", "https://cache.example/c")
    monkeypatch.setenv("HARVESTER_ID", "hid")
    ws = WorkSpec()
    ws.set_log_file("batch_log", "https://logs.example/1.log")
    assert ws.workAttributes["batchLog"] == "https://logs.example/1.log"
    assert ws.logFilesToUpload is None
    ws.set_log_file("batch_log", str(tmp_path / "a.log"))
    ws.set_log_file("batch_log", str(tmp_path / "b.log"))  # replaces a.log's upload
    assert ws.workAttributes["batchLog"] == "https://cache.example/c/hid__b.log"
    assert ws.logFilesToUpload == {
        str(tmp_path / "b.log"): {
            "position": 0,
            "remote_name": "hid__b.log",
            "stream_type": "batchLog",
        }
    }


def test_no_file_access_no_read(tmp_path: Path) -> None:
    fake = FakeFacility(profile="sync")
    assert not fake.capabilities.files
    ws = worker("/s/x-%j.out")
    ws.accessPoint = str(tmp_path / "ap")
    fetch_batch_logs(fake, EdgeOptions(), [ws])
    assert BATCH_LOG_COPY not in ws.workAttributes and not (tmp_path / "ap").exists()


def test_sfapi_scripts_name_their_output() -> None:
    from harvester_edge.edge.spec import JobSpec
    from harvester_edge.facilities.sfapi import with_output

    def spec(script: str, out: str = "/base/t.out") -> JobSpec:
        return JobSpec(tag="t", script=script, work_dir="/base/1", nodes=1, walltime_s=60,
                       stdout_path=out)  # fmt: skip

    script = "#!/bin/bash\n#SBATCH --job-name=t\necho hi\n"
    assert with_output(spec(script)) == (
        "#!/bin/bash\n#SBATCH --output=/base/t.out\n#SBATCH --job-name=t\necho hi\n"
    )
    named = "#!/bin/bash\n#SBATCH -o /x/%j.out\necho hi\n"
    assert with_output(spec(named)) == named  # the template's own choice stands
    assert with_output(spec(script, out="")) == script
    assert with_output(spec(script, out="/has space/t.out")) == script
    assert with_output(spec("echo hi\n")) == "#SBATCH --output=/base/t.out\necho hi\n"
