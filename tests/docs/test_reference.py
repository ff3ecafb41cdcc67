"""docs/queue-config.md is generated from the options dataclasses and must match them."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path

import pytest

from harvester_edge import docs_reference
from harvester_edge.plugins.options import EdgeOptions

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_page_matches_the_schema() -> None:
    page = (DOCS / docs_reference.PAGE).read_text(encoding="utf-8")
    assert page == docs_reference.render(), "run: python -m harvester_edge.docs_reference"


def test_check_mode_fails_on_a_stale_page(tmp_path: Path) -> None:
    (tmp_path / docs_reference.PAGE).write_text(docs_reference.render().replace("`500`", "`50`"))
    assert docs_reference.main(["--check", "--docs", str(tmp_path)]) == 1
    assert docs_reference.main(["--docs", str(tmp_path)]) == 0
    assert docs_reference.main(["--check", "--docs", str(tmp_path)]) == 0


def test_every_key_has_a_meaning() -> None:
    assert docs_reference.undocumented() == [], "add a #: comment above each of these fields"


def test_every_family_is_discovered() -> None:
    found = {f.module.rsplit(".", 1)[-1] for f in docs_reference.families()}
    assert {"sfapi", "s3m", "iri"} <= found
    for fam in docs_reference.families():
        assert len(fam.plugins) == 3, fam  # submitter, monitor, sweeper


def rows(page: str) -> dict[str, dict[str, tuple[str, str]]]:
    """{section heading: {key: (type, default)}} read back from the page's tables."""
    out: dict[str, dict[str, tuple[str, str]]] = {}
    section = ""
    for line in page.splitlines():
        if line.startswith("## "):
            section = line[3:]
            out[section] = {}
        m = re.match(r"\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", line)
        if m:
            out[section][m[1]] = (m[2].strip(), m[3].strip())
    return out


@pytest.mark.parametrize(
    "options",
    [EdgeOptions, *(f.options for f in docs_reference.families())],
    ids=lambda o: o.__name__,
)
def test_each_field_is_on_the_page_with_its_default(options: type[EdgeOptions]) -> None:
    """Read the page back: every field with its default, independent of the renderer."""
    tables = rows((DOCS / docs_reference.PAGE).read_text(encoding="utf-8"))
    common = tables["Every family (`EdgeOptions`)"]
    own = (
        common
        if options is EdgeOptions
        else next(t for s, t in tables.items() if f"(`{options.__name__}`)" in s)
    )
    base = {f.name: f.default for f in dataclasses.fields(EdgeOptions)}
    for f in dataclasses.fields(options):
        if f.name == "queueName":
            continue
        overridden = f.name in base and base[f.name] != f.default
        table = own if (f.name not in base or overridden) else common
        assert f.name in table, f"{options.__name__}.{f.name} missing from the page"
        kind, default = table[f.name]
        if default == "required":
            continue
        if f.default in ("", None):
            assert default == "—", (f.name, default)
        else:
            shown = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
            shown = shown[:-2] if shown.endswith(".0") else shown
            assert default.split(" (common")[0].strip('`"') == shown, (f.name, default)


def test_type_words() -> None:
    from harvester_edge.config import Secret

    assert docs_reference.type_name(int) == "integer"
    assert docs_reference.type_name(Secret | None) == "secret reference"
    assert docs_reference.type_name(tuple[str, ...]) == "list of strings"
    assert docs_reference.type_name(types.NoneType | float) == "number"
    assert docs_reference.type_name(dict[str, str] | None) == "object"
    assert docs_reference.type_name(typing.Literal["batch", "task"]) == "one of `batch`, `task`"


def test_batch_keys_are_the_parallelism_guides_keys() -> None:
    """Every key BatchConfig reads is in the parallelism guide's key table, and no other."""
    text = (DOCS / "parallelism" / "index.md").read_text(encoding="utf-8")
    section = text.split("## Queue configuration keys", 1)[1].split("\n## ", 1)[0]
    documented: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            documented.update(re.findall(r"`(\w+)`", line.split("|")[1]))
    read = {key for key, _ in docs_reference.batch_keys()}
    assert len(read) > 30
    assert read - documented == set(), "keys read by BatchConfig but not in the guide"
    assert documented - read == set(), "keys in the guide that BatchConfig does not read"
