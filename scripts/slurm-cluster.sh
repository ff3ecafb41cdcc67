#!/usr/bin/env bash
# The local Slurm test cluster; the script itself ships in the package (harvester-edge cluster).
exec bash "$(dirname "$0")/../src/harvester_edge/localsite/slurm-cluster.sh" "$@"
