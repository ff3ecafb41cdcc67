"""A queue config as stock Harvester reads it: templates, the ``common`` block, plugin sections.

One place for the rules of ``harvestercore/queue_config_mapper.py`` (``QueueConfigMapper.
load_data``) and ``harvestercore/plugin_factory.py`` (``PluginFactory.get_plugin``) that our
tools reproduce; ``check-config``, ``render`` and the demo build plugins through it, so they
see exactly the keyword arguments Harvester passes.

1. **Template.**  A queue naming ``templateQueueName`` starts from a deep copy of that
   template queue (a queue with ``isTemplateQueue: true`` or a name ending in ``_TEMPLATE``);
   then each of the queue's own keys is deep-copied in.  For ``common`` and the plugin
   sections (stock ``updatable_plugin_attrs``), when both sides are objects, the queue's keys
   update the template's key by key; any other key replaces the template's value.
2. **Plugin sections.**  Every value of the merged queue that is an object with both
   ``module`` and ``name`` is a plugin section, whatever its key.  It gets, deep-copied:

   - each key of ``common`` (when ``common`` is an object; anything else is ignored) that the
     section does not set itself: the section's own value always wins, so ``common`` never
     chooses the plugin (stock also skips ``module`` and ``name`` explicitly);
   - ``siteName``: the queue name up to its first ``/`` (``SITE/resourceType`` queues), and
     ``queueName``: the whole queue name; each only when the section does not set it.

   Stock also drops the whole queue when a section's module or class cannot be imported, and
   applies a section's ``middleware`` (its keys overwritten by the queue's section of that
   name); check-config reports the former, and the latter is not reproduced (none of our
   plugins runs behind a middleware).
3. **Building.**  ``PluginFactory`` imports ``module``, takes its attribute ``name`` and calls
   it with every other key of the section as a keyword argument, plus ``dbInterface``.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Mapping
from typing import Any

from ._quiet import quiet_imports

#: sections without which stock drops the queue ("Missing mandatory attributes")
MANDATORY_SECTIONS = (
    "messenger", "monitor", "preparator", "stager", "submitter", "sweeper", "workerMaker",
)  # fmt: skip
#: sections the agents hand to PluginFactory (stock ``updatable_plugin_attrs`` but ``common``)
PLUGIN_SECTIONS = (*MANDATORY_SECTIONS, "throttler", "zipper", "aux_preparator", "extractor")
#: keys a queue updates key by key over its template's (stock ``updatable_plugin_attrs``)
UPDATABLE = ("common", *PLUGIN_SECTIONS)
#: keys that name the plugin: never copied from ``common``, never passed to the class
PLUGIN_KEYS = ("module", "name")


def is_template(name: str, queue: Mapping[str, Any]) -> bool:
    """Stock rule: ``isTemplateQueue: true`` or a name ending in ``_TEMPLATE``."""
    return queue.get("isTemplateQueue") is True or name.endswith("_TEMPLATE")


def merged_queue(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Queue ``name`` of ``config`` after its template (rule 1); ``isTemplateQueue`` dropped."""
    raw = config[name]
    queue: dict[str, Any] = {}
    template = config.get(raw.get("templateQueueName"))
    if isinstance(template, dict):
        queue.update(copy.deepcopy(template))
        queue.pop("templateQueueName", None)
    for key, value in raw.items():
        value = copy.deepcopy(value)
        if key in UPDATABLE and isinstance(queue.get(key), dict) and isinstance(value, dict):
            queue[key].update(value)
        else:
            queue[key] = value
    queue.pop("isTemplateQueue", None)
    return queue


def is_plugin_section(value: Any) -> bool:
    """What stock treats as a plugin section: an object with ``module`` and ``name``."""
    return isinstance(value, dict) and all(key in value for key in PLUGIN_KEYS)


def plugin_section(queue_name: str, queue: Mapping[str, Any], section: str) -> dict[str, Any]:
    """Section ``section`` of a (merged) queue as Harvester hands it to PluginFactory (rule 2):
    a new dict; neither ``queue`` nor its sections are changed.

    Raises KeyError when the queue has no such section, ValueError when it is not a plugin
    section (no ``module`` or no ``name``)."""
    entry = queue[section]
    if not is_plugin_section(entry):
        raise ValueError(f"{queue_name}.{section} is not a plugin section (needs module and name)")
    conf = copy.deepcopy(entry)
    common = queue.get("common")
    if isinstance(common, dict):
        for key, value in common.items():
            if key not in conf and key not in PLUGIN_KEYS:
                conf[key] = copy.deepcopy(value)
    conf.setdefault("siteName", queue_name.split("/")[0])
    conf.setdefault("queueName", queue_name)
    return conf


def plugin_sections(queue_name: str, queue: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every plugin section of a (merged) queue, in the queue's key order, as
    ``plugin_section`` gives it."""
    return [
        (section, plugin_section(queue_name, queue, section))
        for section, entry in queue.items()
        if is_plugin_section(entry)
    ]


def build_plugin(conf: Mapping[str, Any]) -> Any:
    """What PluginFactory does with a section (rule 3); ``dbInterface`` is None unless the
    section sets one (stock passes its DB interface)."""
    with quiet_imports():
        module = importlib.import_module(conf["module"])
    cls = getattr(module, conf["name"])
    kwargs = {k: v for k, v in conf.items() if k not in PLUGIN_KEYS}
    kwargs.setdefault("dbInterface", None)
    return cls(**kwargs)
