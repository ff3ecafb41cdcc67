"""The rendered scripts in docs/parallelism must be what the code renders now."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

DOCS = Path(__file__).resolve().parents[2] / "docs" / "parallelism"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hedge_docs_generate", DOCS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_scripts_are_not_stale() -> None:
    generate = load_generator()
    assert generate.stale_pages() == [], "run: python docs/parallelism/generate.py"


def test_each_level_page_shows_both_profiles() -> None:
    for page in ("level-1.md", "level-2.md", "level-3.md"):
        names = re.findall(r"<!-- rendered: ([\w-]+) ", (DOCS / page).read_text())
        assert any(n.startswith("perlmutter-gpu") for n in names), page
        assert any(n.startswith("frontier-gpu") for n in names), page


def queue_configs(value: object) -> list[dict[str, object]]:
    """Every batch-config mapping (one with a ``profile``) inside a JSON document."""
    if isinstance(value, dict):
        found = [value] if "profile" in value else []
        return found + [c for v in value.values() for c in queue_configs(v)]
    return []


def test_config_examples_on_the_pages_are_valid() -> None:
    """The hand-written JSON examples validate (absolute remoteWorkDir, no ${SCRATCH})."""
    from harvester_edge.edge.batch import BatchConfig

    generate = load_generator()
    examples = {json.dumps(c, sort_keys=True) for c, _, _ in generate.EXAMPLES.values()}
    seen = 0
    for page in ("level-1.md", "level-2.md", "level-3.md"):
        for block in re.findall(r"```json\n(.*?)```", (DOCS / page).read_text(), re.S):
            for config in queue_configs(json.loads(block)):
                BatchConfig.from_config(config)
                seen += 1
                if page != "level-3.md":  # level 3 adds submitter keys to a level-2 example
                    assert json.dumps(config, sort_keys=True) in examples, (page, config)
    assert seen == 4


def test_index_documents_every_placeholder() -> None:
    from harvester_edge.edge.batch import BatchConfig, WorkerInfo, build_context

    info = WorkerInfo(harvester_id="h", worker_id=1, queue="Q", job_name="j", work_dir="/w")
    cfg = BatchConfig.from_config({"tokenDir": "/t", "tokenName": "n", "tokenOrigin": "o",
                                   "submitMode": "PULL", "remoteWorkDir": "/w"})  # fmt: skip
    index = (DOCS / "index.md").read_text()
    missing = [name for name in build_context(cfg, info) if f"`{name}`" not in index]
    assert missing == []
