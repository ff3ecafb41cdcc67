"""The docs site builds with ``mkdocs build --strict`` and every internal link resolves.

mkdocs' own validation (mkdocs.yml ``validation``: links, anchors, nav) turns a broken link
into a warning and ``--strict`` into a failure; the built HTML is then checked again here,
independently of mkdocs: every relative ``href``/``src`` names a file of the site and every
``#anchor`` an id on that page.
"""

from __future__ import annotations

import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]


class Links(HTMLParser):
    """A page's ids and its links (every ``href`` and ``src``); how many mermaid blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.mermaid = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "pre" and "mermaid" in (values.get("class") or "").split():
            self.mermaid += 1
        for key in ("href", "src"):
            if values.get(key):
                self.links.append(str(values[key]))


def parse(page: Path) -> Links:
    links = Links()
    links.feed(page.read_text(encoding="utf-8"))
    return links


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    log = run.stdout + run.stderr
    assert run.returncode == 0, log
    warnings = [line for line in log.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert warnings == [], "\n".join(warnings)
    return out


def test_every_internal_link_resolves(site: Path) -> None:
    pages = {p: parse(p) for p in site.rglob("*.html")}
    assert len(pages) > 15
    broken: list[str] = []
    for page, found in pages.items():
        for link in found.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "data:")):
                continue
            path = unquote(parts.path)
            base = site if path.startswith("/") else page.parent  # 404.html: from the root
            target = page if not path else (base / path.lstrip("/")).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: {link}")
                continue
            if parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(site)}: {link} (no such anchor)")
    assert broken == []


def test_every_page_is_built_from_the_nav(site: Path) -> None:
    docs = ROOT / "docs"
    for md in docs.rglob("*.md"):
        rel = md.relative_to(docs).with_suffix("")
        if rel.name == "index":
            built = site / rel.parent / "index.html"
        else:
            built = site / rel / "index.html"
        assert built.exists(), md


def test_mermaid_diagrams_are_rendered_as_diagrams(site: Path) -> None:
    """The architecture page's diagrams reach the browser as mermaid blocks, not code."""
    assert parse(site / "architecture" / "index.html").mermaid >= 3


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    """The build above would catch a broken link: the same config on a page with one fails."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\n[gone](gone.md) [anchor](#nowhere)\n")
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    head = config.split("\nnav:", 1)[0].replace("exclude_docs: |\n  parallelism/generate.py\n", "")
    (tmp_path / "mkdocs.yml").write_text(head + "\nnav:\n  - Home: index.md\n")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "s")],
        cwd=tmp_path, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode != 0
    assert "gone.md" in run.stdout + run.stderr
    assert "#nowhere" in run.stdout + run.stderr
