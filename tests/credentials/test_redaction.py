"""The redacting filter: registered secrets vanish from messages, arguments and exception
texts of every harvester_edge logger, also of loggers created after it was installed."""

from __future__ import annotations

import logging
import os

import pytest

from harvester_edge.credentials import redaction

from .conftest import SCAN


def test_messages_args_and_tracebacks_redacted(caplog: pytest.LogCaptureFixture) -> None:
    secret = SCAN.secret("tok-" + os.urandom(10).hex())
    redaction.register(secret)
    redaction.guard_loggers()
    late = logging.getLogger("harvester_edge.some.new.module." + os.urandom(4).hex())
    with caplog.at_level(logging.DEBUG):
        late.info("value %s here", secret)
        try:
            raise RuntimeError(f"failed with {secret}")
        except RuntimeError:
            late.exception("oops")
        logging.getLogger("panda.log.harvester_edge_x").error(f"f-string {secret}")
    text = "\n".join(caplog.text.splitlines())
    assert secret not in text
    assert text.count(redaction.MASK) >= 3
    assert "RuntimeError" in text  # the traceback is kept, only the value masked


def test_short_values_not_registered() -> None:
    redaction.register("abc")
    assert redaction.redact("abc def") == "abc def"
