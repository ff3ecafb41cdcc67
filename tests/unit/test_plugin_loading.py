"""The plugins load through a PluginFactory-style loader from the shipped example queue config.

``load_like_harvester`` reproduces what stock Harvester does (queue_config_mapper copies the
``common`` block into each plugin section that lacks the key and adds siteName/queueName;
PluginFactory.get_plugin imports ``module``, gets ``name`` and calls ``cls(**kwargs)`` with
every key but module/name, plus dbInterface).
"""

import json
import socket
from pathlib import Path

import pytest

from harvester_edge.errors import EdgeConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "panda_queueconfig.example.json"
SECTIONS = ("submitter", "monitor", "sweeper")


def load_like_harvester(queue_name: str, queue: dict, section: str):
    conf = dict(queue[section])
    for key, value in queue.get("common", {}).items():
        conf.setdefault(key, value)
    conf.setdefault("siteName", queue_name)
    conf.setdefault("queueName", queue_name)
    module = __import__(conf["module"])
    for sub in conf["module"].split(".")[1:]:
        module = getattr(module, sub)
    cls = getattr(module, conf["name"])
    kwargs = {k: v for k, v in conf.items() if k not in ("module", "name")}
    kwargs["dbInterface"] = object()
    return cls(**kwargs)


@pytest.fixture()
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a plugin constructor opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_example_queue_config_loads_every_edge_plugin(no_network):
    config = json.loads(EXAMPLE.read_text())
    loaded = 0
    for queue_name, queue in config.items():
        for section in SECTIONS:
            if queue[section]["module"].startswith("harvester_edge."):
                plugin = load_like_harvester(queue_name, queue, section)
                assert plugin.queueName == queue_name
                assert plugin.edge_options.machine == "perlmutter"
                loaded += 1
    assert loaded == 3
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
