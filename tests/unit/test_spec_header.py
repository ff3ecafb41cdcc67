"""The #SBATCH header as sbatch reads it, Slurm's value formats, and naming the job by its tag."""

from __future__ import annotations

import pytest

from harvester_edge.edge.sbatch_header import (
    ensure_tag,
    memory_mb,
    node_count,
    read_header,
    time_minutes,
)
from harvester_edge.edge.spec import ensure_tag as spec_ensure_tag
from harvester_edge.errors import EdgeConfigError


def test_header_forms_and_last_value_wins() -> None:
    script = (
        "#!/bin/bash\n#SBATCH --nodes=2 -n4 -c 8\n#SBATCH --time 30 -A acct\n"
        '#SBATCH --comment="a b" --mem=1G # comment\n'
        "#SBATCH --nodes=3\n#SBATCH -HQ --no-requeue -I30\n"
        "   \n# comment\n#SLURM -p old\nset -u\n#SBATCH -q late\n"
    )
    assert read_header(script) == (
        ("nodes", "3"), ("ntasks", "4"), ("cpus-per-task", "8"), ("time", "30"),
        ("account", "acct"), ("comment", "a b"), ("mem", "1G"), ("hold", None),
        ("quiet", None), ("no-requeue", None), ("immediate", "30"), ("partition", "old"),
    )  # fmt: skip


def test_backslash_escapes_and_hetjob_stops() -> None:
    script = "#SBATCH --comment=a\\ b\\#c -o x#y\n#SBATCH hetjob\n#SBATCH -N 9\n"
    assert read_header(script) == (("comment", "a b#c"), ("output", "x"))


@pytest.mark.parametrize(
    ("value", "minutes"),
    [
        ("30", 30), ("30:01", 31), ("1:00:00", 60), ("1-0", 1440), ("1-2:30", 1590),
        ("0-0:0:59", 1), ("2:0:1", 121), ("UNLIMITED", None), ("infinite", None), ("-1", None),
    ],
)  # fmt: skip
def test_slurm_time_formats(value: str, minutes: int | None) -> None:
    assert time_minutes(value) == minutes


@pytest.mark.parametrize(("value", "count"), [("2", 2), ("2-4", 2), ("8,4", 4), ("1k", 1024)])
def test_node_counts(value: str, count: int) -> None:
    assert node_count(value) == count


@pytest.mark.parametrize(
    ("value", "mb"), [("2000", 2000), ("4G", 4096), ("512K", 1), ("1T", 2**20), ("0", None)]
)
def test_memory_sizes(value: str, mb: int | None) -> None:
    assert memory_mb(value) == mb


@pytest.mark.parametrize("value", ["1:2:3:4", "a", "", "1-", "-2"])
def test_bad_times_are_refused(value: str) -> None:
    with pytest.raises(EdgeConfigError, match="time"):
        time_minutes(value)


def test_ensure_tag_is_the_one_the_submitter_used() -> None:
    assert spec_ensure_tag is ensure_tag
    assert ensure_tag("#!/bin/sh\necho", "t1") == "#!/bin/sh\n#SBATCH --job-name=t1\necho"
    assert ensure_tag("echo", "t1") == "#!/bin/bash\n#SBATCH --job-name=t1\necho"
    assert ensure_tag("#!/bin/bash", "t1") == "#!/bin/bash\n#SBATCH --job-name=t1\n"
    assert ensure_tag("#SBATCH -J old\n#SBATCH --job-name x\n", "t") == (
        "#SBATCH --job-name=t\n#SBATCH --job-name=t\n"
    )


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        # a name later on the line would win over a tag put after the shebang
        (
            "#!/bin/bash\n#SBATCH -N 2 -J foo\necho",
            "#!/bin/bash\n#SBATCH --nodes=2 --job-name=t\necho",
        ),
        (
            "#!/bin/bash\n#SBATCH -N2 -Jfoo -t 5 # note\n",
            "#!/bin/bash\n#SBATCH --nodes=2 --job-name=t --time=5\n",
        ),
        ("#SLURM --job-name foo --exclusive\n", "#SBATCH --job-name=t --exclusive\n"),
        (
            '#!/bin/bash\n#SBATCH --comment="it\'s two" -J x\n',
            "#!/bin/bash\n#SBATCH --comment='it'\"'\"'s two' --job-name=t\n",
        ),
        # past the header sbatch reads nothing: the tag goes in the header
        (
            "#!/bin/bash\necho\n#SBATCH -J foo\n",
            "#!/bin/bash\n#SBATCH --job-name=t\necho\n#SBATCH -J foo\n",
        ),
    ],
)
def test_ensure_tag_names_the_job_and_keeps_the_other_options(script: str, expected: str) -> None:
    tagged = ensure_tag(script, "t")
    assert tagged == expected
    header = dict(read_header(tagged))
    assert header["job-name"] == "t"
    assert {k: v for k, v in header.items() if k != "job-name"} == {
        k: v for k, v in read_header(script) if k != "job-name"
    }
