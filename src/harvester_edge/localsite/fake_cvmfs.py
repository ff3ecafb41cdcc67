"""A fake CVMFS tree with a stub pilot: the site side of tests and of the local demo.

The stub stands where the ATLAS pilot wrapper lives on CVMFS.  It records what it was given
(environment, arguments, working directory), sleeps ``STUB_SLEEP`` seconds (ending like a
real pilot on SIGTERM) and exits with ``STUB_EXIT_<node index>_<slot>`` (default 0), so a
test or demo can make one chosen pilot fail.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..edge.batch import ALRB_SETUP_IN_REPO as SETUP_IN_REPO
from ..edge.batch import WRAPPER_IN_REPO

STUB_PILOT = """#!/bin/bash
env | sort > env.txt
printf '%s\\n' "$@" > args.txt
pwd > pwd.txt
if [ "${STUB_SLEEP:-0}" != 0 ]; then  # a pilot that ends like a real one on SIGTERM
  trap 'exit 143' TERM
  sleep "$STUB_SLEEP" &
  wait $! || exit 143
fi
var="STUB_EXIT_${HARVESTER_NODE_INDEX}_${HARVESTER_SLOT}"
exit "${!var:-0}"
"""


def make_fake_cvmfs(root: Path, *, setup_fifo: bool = False) -> Path:
    """Build the tree under ``root``; returns the stub wrapper's path.

    ``setup_fifo`` makes the ALRB set-up file a FIFO: reading it blocks forever, like a hung
    automount, so the node's CVMFS check must time out.
    """
    wrapper = root / WRAPPER_IN_REPO
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(STUB_PILOT)
    wrapper.chmod(0o755)
    setup = root / SETUP_IN_REPO
    setup.parent.mkdir(parents=True)
    if setup_fifo:
        os.mkfifo(setup)
    else:
        setup.write_text("# fake ALRB set-up\n")
    return wrapper
