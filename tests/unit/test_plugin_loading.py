"""The plugins load through a PluginFactory-style loader from the shipped example queue config.

``load_like_harvester`` builds a section the way stock Harvester does:
``queue_config.plugin_section`` (queue_config_mapper's ``common`` merge and
siteName/queueName, stated in ``harvester_edge/queue_config.py``), then PluginFactory's
``cls(**kwargs)`` with every key but module/name, plus a dbInterface.
"""

import json
import socket
from pathlib import Path

import pytest

from harvester_edge.errors import EdgeConfigError
from harvester_edge.queue_config import build_plugin, plugin_section

EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "panda_queueconfig.example.json"
SECTIONS = ("submitter", "monitor", "sweeper")


def load_like_harvester(queue_name: str, queue: dict, section: str):
    return build_plugin({**plugin_section(queue_name, queue, section), "dbInterface": object()})


@pytest.fixture()
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a plugin constructor opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_example_queue_config_loads_every_edge_plugin(no_network):
    config = json.loads(EXAMPLE.read_text())
    loaded = 0
    families = set()
    for queue_name, queue in config.items():
        for section in SECTIONS:
            if queue[section]["module"].startswith("harvester_edge."):
                plugin = load_like_harvester(queue_name, queue, section)
                assert plugin.queueName == queue_name
                if queue[section]["module"] == "harvester_edge.plugins.sfapi":
                    assert plugin.edge_options.machine == "perlmutter"
                loaded += 1
                families.add(queue[section]["module"])
    assert loaded == 3 * sum(1 for q in config.values() if isinstance(q, dict))
    assert families == {
        f"harvester_edge.plugins.{f}" for f in ("sfapi", "s3m", "iri", "globus_compute")
    }
    submitter = load_like_harvester(*next(iter(config.items())), "submitter")
    assert callable(submitter.submit_workers)
    monitor = load_like_harvester(*next(iter(config.items())), "monitor")
    assert callable(monitor.check_workers)
    sweeper = load_like_harvester(*next(iter(config.items())), "sweeper")
    assert callable(sweeper.kill_workers) and callable(sweeper.sweep_worker)


@pytest.mark.parametrize(
    "section,key,value",
    [
        ("monitor", "chunkSize", "lots"),
        ("monitor", "machine", "perl mutter"),
        ("submitter", "submitConcurrency", 0),
        ("sweeper", "apiUrl", "ftp://x"),
        ("submitter", "pilotsPerNode", -2),
    ],
)
def test_malformed_section_fails_at_construction_naming_the_key(section, key, value):
    config = json.loads(EXAMPLE.read_text())
    queue_name, queue = next(iter(config.items()))
    queue[section][key] = value
    with pytest.raises(EdgeConfigError, match=key):
        load_like_harvester(queue_name, queue, section)


def test_missing_key_file_is_named():
    config = json.loads(EXAMPLE.read_text())
    queue_name, queue = next(iter(config.items()))
    del queue["common"]["keyFile"]
    with pytest.raises(EdgeConfigError, match="keyFile"):
        load_like_harvester(queue_name, queue, "monitor")
