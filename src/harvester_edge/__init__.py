"""harvester-edge: PanDA Harvester plugins for HPC facility edge services."""

__version__ = "0.1.0"
