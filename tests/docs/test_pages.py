"""Hand-written pages that state facts the code owns: checked against the code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from harvester_edge.edge.states import ERROR_PATTERNS, ErrorCode
from harvester_edge.facilities.base import Capabilities, FacilityClient
from harvester_edge.plugins.globus_compute import GCBinding
from harvester_edge.plugins.iri import IRIBinding
from harvester_edge.plugins.s3m import S3MBinding
from harvester_edge.plugins.sfapi import SFAPIBinding

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def table(page: str, first_header: str) -> Iterator[list[str]]:
    """The rows of the markdown table whose header row starts with ``first_header``."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            return
        cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
        yield [c.strip() for c in cells]


def test_troubleshooting_lists_every_error_code_with_its_pattern() -> None:
    rows = {int(r[0]): r for r in table("errors.md", "code")}
    assert set(rows) >= {int(c) for c in ErrorCode}
    for code in ErrorCode:
        name, pattern = rows[int(code)][1], rows[int(code)][3]
        assert name == code.name, (code, name)
        assert pattern.split("`")[1].replace("\\|", "|") == ERROR_PATTERNS[code], code
        assert rows[int(code)][4] not in ("", "—"), f"{code}: no 'what to do'"


def clients() -> dict[str, FacilityClient]:
    """One client per family and API version, built without I/O (constructors do none)."""
    common = {"queueName": "Q"}
    iri = {**common, "resource": "perlmutter", "token": "env:HEDGE_DOCS_TOKEN"}
    gc = {
        **common,
        "endpointId": "00000000-0000-4000-8000-000000000000",
        "clientId": "c",
        "clientSecret": "env:HEDGE_DOCS_TOKEN",
    }
    return {
        "SFAPI": SFAPIBinding({**common, "keyFile": "/nonexistent/key"}, "t").make_client(),
        "S3M": S3MBinding(
            {**common, "resource": "defiant", "token": "env:HEDGE_DOCS_TOKEN"}, "t"
        ).make_client(),
        "DOE IRI v1": IRIBinding({**iri, "apiUrl": "https://x.test/api/v1"}, "t").make_client(),
        "DOE IRI v2": IRIBinding({**iri, "apiUrl": "https://x.test/api/v2"}, "t").make_client(),
        "Globus Compute batch": GCBinding({**gc, "remoteWorkDir": "/r"}, "t").make_client(),
        "Globus Compute task": GCBinding(
            {**gc, "mode": "task", "remoteWorkDir": "/r", "markerDir": "/r/m"}, "t"
        ).make_client(),
    }


def shown(value: object) -> str:
    return ("yes" if value else "no") if isinstance(value, bool) else str(value)


def test_families_page_shows_each_clients_declared_capabilities() -> None:
    rows = list(table("families.md", "capability"))
    lines = (DOCS / "families.md").read_text(encoding="utf-8").splitlines()
    header = next(line for line in lines if line.startswith("| capability |"))
    columns = [c.strip() for c in header.strip().strip("|").split("|")][1:]
    built = clients()
    assert set(columns) == set(built), "one column per family client (and API version)"
    fields = {r[0].strip("`"): r[1:] for r in rows}
    assert set(fields) == set(Capabilities.__dataclass_fields__)
    for col, name in enumerate(columns):
        caps = built[name].capabilities
        for field, cells in fields.items():
            assert cells[col] == shown(getattr(caps, field)), (name, field)
    for client in built.values():
        client.close()


@pytest.mark.parametrize(
    "page", ["index.md", "sfapi.md", "s3m.md", "iri.md", "install.md", "families.md"]
)
def test_pages_name_only_real_plugin_classes(page: str) -> None:
    """Every ``...Submitter``/``Monitor``/``Sweeper``/``Throttler`` a page names exists."""
    from harvester_edge import docs_reference

    known = {"EdgeSubmitter", "EdgeMonitor", "EdgeSweeper", "EdgeThrottler"}
    known.update(p for fam in docs_reference.families() for p in fam.plugins)
    text = (DOCS / page).read_text(encoding="utf-8")
    named = set(re.findall(r"`(\w+(?:Submitter|Monitor|Sweeper|Throttler))`", text))
    assert named - known == set(), page


SECTIONS = ("## Submit answers", "## Monitor answers", "## Sweeper answers", "## Throttler reasons")
PLACEHOLDER = re.compile(r"<[^>]+>|\.\.\.|\bN\b|\bT\b|\bP\b|\(\.\.\.\)")


def quoted_diagnoses() -> list[str]:
    """The code spans of the diagnosis tables of the troubleshooting page."""
    text = (DOCS / "errors.md").read_text(encoding="utf-8")
    spans: list[str] = []
    for head in SECTIONS:
        section = text.split(head, 1)[1].split("\n## ", 1)[0]
        for line in section.splitlines():
            if line.startswith("| ") and not line.startswith("| answer") and "---" not in line:
                cells = line.split(" | ")
                quoted = cells[1] if head == "## Throttler reasons" else cells[-2]
                spans += re.findall(r"`([^`]+)`", quoted)
    return spans


def said(piece: str, code: str) -> bool:
    """The piece is in the code, or in two parts joined by a placeholder there (messages
    composed from parts: ``could not {what}`` with ``look jobs up by tag``)."""
    if piece in code:
        return True
    cuts = [i for i, c in enumerate(piece) if c == " "]
    return any(piece[:i].strip() in code and piece[i:].strip() in code for i in cuts)


def test_troubleshooting_quotes_only_words_the_code_says() -> None:
    """Each literal piece of every diagnosis the page quotes is in the package's source."""
    src = ROOT / "src" / "harvester_edge"
    code = "\n".join(p.read_text(encoding="utf-8") for p in src.rglob("*.py"))
    spans = quoted_diagnoses()
    assert len(spans) > 30
    missing = []
    for span in spans:
        if span in ("True", "False", "None", "submitted", "missed", "failed"):
            continue
        for piece in PLACEHOLDER.split(span):
            piece = piece.strip(" ;:()")
            if len(piece) >= 5 and not said(piece, code):
                missing.append(f"{span!r}: {piece!r}")
    assert missing == []
