"""Secrets never reach a log line: a registry of secret values and a logging filter.

Every secret the credential manager reads (a token, a proxy, a key) is registered here the
moment it is read; ``RedactingFilter`` replaces any registered value in a record's message,
arguments and exception text before a handler formats it.  ``guard_loggers()`` puts the
filter on every ``harvester_edge`` logger (and Harvester's ``panda.log.*`` ones our plugins
write to).  A logger's filters do not see records propagated from its children, so the
filter goes on each logger that exists, and the log record factory applies it to every
record of a logger of those names created later (``guard_loggers`` runs whenever the
credential manager is built: cheap, no I/O, idempotent).  The registry keeps values only
in memory, for the life of the process, and never shows them.
"""

from __future__ import annotations

import logging
import threading
import traceback

MASK = "[redacted]"
#: shorter strings are not registered: masking them would garble ordinary words
MIN_SECRET = 8
_PREFIXES = ("harvester_edge", "panda.log")

_lock = threading.Lock()
_secrets: set[str] = set()
_ordered: tuple[str, ...] = ()


def register(*values: str | bytes) -> None:
    """Remember secret values (and each of their lines) for redaction."""
    global _ordered
    with _lock:
        for value in values:
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            for part in (text, text.strip(), *text.splitlines()):
                part = part.strip()
                if len(part) >= MIN_SECRET:
                    _secrets.add(part)
        _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``[redacted]``."""
    for value in _ordered:
        if value in text:
            text = text.replace(value, MASK)
    return text


def contains_secret(text: str) -> bool:
    return any(value in text for value in _ordered)


class RedactingFilter(logging.Filter):
    """Rewrite a record so that neither its message nor its exception text holds a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _ordered:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw parts, redacted
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[0] is not None:
            text = "".join(traceback.format_exception(*record.exc_info))
            record.exc_text, record.exc_info = redact(text.rstrip("\n")), None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


FILTER = RedactingFilter()


_factory_guarded = False


def _guard_factory() -> None:
    global _factory_guarded
    with _lock:
        if _factory_guarded:
            return
        _factory_guarded = True
    make = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if record.name.startswith(_PREFIXES):
            FILTER.filter(record)
        return record

    logging.setLogRecordFactory(factory)


def guard_loggers() -> None:
    """Put the filter on every existing harvester_edge / panda.log logger and on the
    records of any created later (idempotent)."""
    _guard_factory()
    names = [name for name in list(logging.root.manager.loggerDict) if name.startswith(_PREFIXES)]
    for name in ("harvester_edge", *names):
        logger = logging.getLogger(name)
        if FILTER not in logger.filters:
            logger.addFilter(FILTER)
