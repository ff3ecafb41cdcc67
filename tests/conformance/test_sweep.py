"""sweep_worker deletes the worker's own access point and nothing else."""

from __future__ import annotations

import os


def sweeper(family, base, template=None):
    options = {"accessPoint": template if template is not None else f"{base}/${{workerID}}"}
    return family.plugins(**options)[2]


def test_sweep_deletes_the_workers_dir(family, tmp_path):
    base = tmp_path / "base"
    (base / "7" / "sub").mkdir(parents=True)
    (base / "7" / "sub" / "pilot.log").write_text("x")
    (base / "8").mkdir()
    ws = family.workspec(7, accessPoint=f"{base}/${{workerID}}")
    ok, message = sweeper(family, base).sweep_worker(ws)
    assert ok is True, message
    assert not (base / "7").exists()
    assert (base / "8").is_dir()  # the neighbour stays


def test_sweep_refuses_a_path_outside_the_base(family, tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("precious")
    ws = family.workspec(7, accessPoint=f"{base}/../victim")
    ok, message = sweeper(family, base).sweep_worker(ws)
    assert ok is False and "not strictly inside" in message, message
    assert (victim / "keep").read_text() == "precious"


def test_sweep_refuses_a_symlink(family, tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep").write_text("precious")
    os.symlink(target, base / "7")
    ws = family.workspec(7, accessPoint=f"{base}/${{workerID}}")
    ok, message = sweeper(family, base).sweep_worker(ws)
    assert ok is False and "symlink" in message, message
    assert (target / "keep").read_text() == "precious"
    assert os.path.islink(base / "7")


def test_sweep_refuses_without_a_usable_template(family, tmp_path):
    base = tmp_path / "base"
    (base / "7").mkdir(parents=True)
    ws = family.workspec(7, accessPoint=f"{base}/7")
    for template in ("", f"{base}/fixed"):
        ok, message = sweeper(family, base, template).sweep_worker(ws)
        assert ok is False and "accessPoint" in message and "${workerID}" in message, message
    ok, message = sweeper(family, base, f"{base}/${{harvesterID}}").sweep_worker(
        family.workspec(9, accessPoint=f"{base}/7")
    )
    assert ok is False and "does not name worker 9" in message, message
    assert (base / "7").is_dir()


def test_sweep_of_a_dir_already_gone(family, tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    ws = family.workspec(7, accessPoint=f"{base}/${{workerID}}")
    ok, message = sweeper(family, base).sweep_worker(ws)
    assert ok is True and "already gone" in message, message
