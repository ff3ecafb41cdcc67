import threading
import time

import pytest

from harvester_edge.config import parse_config
from harvester_edge.edge.allocations import AllocationBook
from harvester_edge.edge.render import TemplateValueError, render, shell_word
from harvester_edge.edge.retry import RetryPolicy, call_with_retry, is_retryable, parse_retry_after
from harvester_edge.edge.tags import job_tag, queue_prefix
from harvester_edge.edge.tags import prefix_of as tags_prefix_of
from harvester_edge.errors import EdgeAPIError, EdgeConfigError, EdgeNetworkError
from harvester_edge.harvester import WorkSpec
from harvester_edge.plugins.options import EdgeOptions


# tags ------------------------------------------------------------------------------------
def test_tag_is_unique_per_worker_and_parseable():
    a, b = job_tag("hid", "Q", 1), job_tag("hid", "Q", 2)
    assert a != b and a == queue_prefix("hid", "Q") + "1"
    assert tags_prefix_of(a) == tags_prefix_of(b) == queue_prefix("hid", "Q")
    assert job_tag("hid", "Q", 1) != job_tag("hid2", "Q", 1) != job_tag("hid", "Q2", 1)


def test_tag_of_odd_names_is_safe_and_stable():
    tag = job_tag("my harvester;rm", "NERSC Perlmutter $(x)", 42)
    assert tag == job_tag("my harvester;rm", "NERSC Perlmutter $(x)", 42)
    assert all(c.isalnum() or c in "-_." for c in tag)
    assert job_tag("a b", "q", 1) != job_tag("a_b", "q", 1)  # hashed, no collision


@pytest.mark.parametrize("bad", [None, "x", -1])
def test_tag_rejects_bad_worker_ids(bad):
    with pytest.raises(EdgeConfigError, match="workerID"):
        job_tag("h", "q", bad)


# rendering -------------------------------------------------------------------------------
def test_render_matches_stock_format_map_for_safe_values():
    template = (
        "#SBATCH -o {accessPoint}/{workerID}.out\n#SBATCH -N {nNode}\n{{literal}} {unknown}\n"
    )
    ctx = {"accessPoint": "/scratch/h/1", "workerID": 1, "nNode": 2}

    class SafeDict(dict):
        def __missing__(self, key):
            return "{" + key + "}"

    assert render(template, ctx) == template.format_map(SafeDict(ctx))


def test_render_quotes_hostile_values_and_refuses_newlines():
    assert render("echo {x}", {"x": "$(touch /tmp/p); `id`"}) == "echo '$(touch /tmp/p); `id`'"
    assert shell_word("x", "it's") == "'it'\"'\"'s'"
    with pytest.raises(TemplateValueError, match="'x'"):
        render("#SBATCH -J {x}", {"x": "a\n#SBATCH --uid=0"})
    assert (
        render("{blk!raw}", {"blk": "#SBATCH -N 1\n#SBATCH -A a"}) == "#SBATCH -N 1\n#SBATCH -A a"
    )


# retry -----------------------------------------------------------------------------------
def test_retry_after_and_backoff():
    p = RetryPolicy(backoff=1, max_backoff=4, jitter=0)
    assert [p.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 4]
    assert p.delay(1, retry_after=3) == 3
    assert parse_retry_after("7") == 7
    assert parse_retry_after("not a date") is None


def test_submits_are_not_retried_once_they_may_have_arrived():
    assert not is_retryable(EdgeNetworkError("t", maybe_sent=True), idempotent=False)
    assert is_retryable(EdgeNetworkError("t", maybe_sent=True), idempotent=True)
    assert is_retryable(EdgeNetworkError("c", maybe_sent=False), idempotent=False)
    # every 5xx may come after the job was created (SFAPI runs sbatch later in its task)
    for status in (500, 502, 503, 504):
        error = EdgeAPIError(str(status), status=status, transient=True)
        assert not is_retryable(error, idempotent=False)
    assert is_retryable(EdgeAPIError("429", status=429, transient=True), idempotent=False)
    assert not is_retryable(EdgeAPIError("400", status=400), idempotent=True)


def test_call_with_retry_stops_at_the_deadline():
    calls = []

    def fail():
        calls.append(time.monotonic())
        raise EdgeAPIError("busy", status=503, transient=True)

    start = time.monotonic()
    with pytest.raises(EdgeAPIError):
        call_with_retry(
            fail, RetryPolicy(attempts=50, backoff=0.2, deadline=1.0, jitter=0), idempotent=True
        )
    assert time.monotonic() - start < 1.2 and 2 <= len(calls) < 10


def test_call_with_retry_honours_retry_after():
    seen = []

    def flaky():
        seen.append(time.monotonic())
        if len(seen) < 2:
            err = EdgeAPIError("slow down", status=429, transient=True)
            err.retry_after = 0.3  # type: ignore[attr-defined]
            raise err
        return "ok"

    assert (
        call_with_retry(
            flaky,
            RetryPolicy(backoff=5),
            idempotent=False,
            retry_after_of=lambda e: getattr(e, "retry_after", None),
        )
        == "ok"
    )
    assert 0.25 <= seen[1] - seen[0] < 1.0


# config ----------------------------------------------------------------------------------
def test_config_names_the_bad_key():
    with pytest.raises(EdgeConfigError, match="'chunkSize'"):
        parse_config(EdgeOptions, {"chunkSize": "many"}, "X")
    with pytest.raises(EdgeConfigError, match="'chunkSize'"):
        parse_config(EdgeOptions, {"chunkSize": 0}, "X")
    with pytest.raises(EdgeConfigError, match="'readPilotSummary'"):
        parse_config(EdgeOptions, {"readPilotSummary": "perhaps"}, "X")
    opts = parse_config(EdgeOptions, {"chunkSize": "300", "nCorePerNode": 4, "module": "x"}, "X")
    assert opts.chunkSize == 300


# compat ----------------------------------------------------------------------------------
def test_workspec_standin_behaves_like_harvester():
    ws = WorkSpec()
    with pytest.raises(AttributeError):
        ws.nGpu = 4
    ws.set_supplemental_error(1, "x" * 300)
    assert len(ws.errorDiag) == 256 and ws.errorCode == 1
    ws.workerID = 9
    ws.accessPoint = "/data/${workerID}"
    assert ws.get_access_point() == "/data/9"
    assert ws.get_work_params("finalMonStatus") == (False, None)
    ws.set_work_attributes({"a": 1})
    assert ws.get_work_attribute("a") == (True, 1)


# allocations -----------------------------------------------------------------------------
def test_allocation_book_counts_live_and_fresh_tags():
    book = AllocationBook(max_age=100)
    assert book.count("p") is None
    book.observe("p", "p1", live=True, now=0)
    # the monitor's partial view never makes the count known: only the facility's list does
    assert book.count("p", now=0) is None
    book.seed("p", [], now=0)
    book.submitted("p", "p2", now=1)
    assert book.count("p", now=2) == 2
    assert book.counts("p", now=2) == (1, 1)
    book.released("p", "p2")
    assert book.counts("p", now=2) == (1, 0)
    book.submitted("p", "p2", now=1)
    book.observe("p", "p1", live=False, now=3)
    assert book.count("p", now=4) == 1
    assert book.count("p", now=500) == 0


def test_allocation_book_is_thread_safe():
    book = AllocationBook()
    threads = [
        threading.Thread(target=lambda k=k: [book.submitted("p", f"t{k}-{i}") for i in range(200)])
        for k in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    book.seed("p", [])
    assert book.count("p") == 800


def test_prefix_of_a_tag_is_its_queue_prefix():
    tag = job_tag("my harvester", "NERSC Perlmutter GPU queue long name", 7)
    assert tags_prefix_of(tag) == queue_prefix(
        "my harvester", "NERSC Perlmutter GPU queue long name"
    )
    assert tags_prefix_of("allocation") is None
