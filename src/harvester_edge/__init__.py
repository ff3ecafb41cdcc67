"""harvester-edge: PanDA Harvester plugins for HPC facility edge services."""

from ._quiet import ignore_known_warnings

__version__ = "0.1.0"

# authlib's import-time notice about its httpx fallback, and only that (see _quiet).
ignore_known_warnings()
