"""The suite-wide secret scan (wired in tests/conftest.py for the whole test run).

Every log record of the session (any logger, any level, formatted with its exception text)
and every exception text of a failed test or handed to ``SCAN.exception`` is kept; at the end
of the session none of them may hold a secret value: a value the tests made (``SCAN.secret``:
credential-manager tests, every conformance family's secrets) or one the credential manager
read (the redaction registry).
"""

from __future__ import annotations

import logging

from harvester_edge.credentials import redaction


class SecretScan(logging.Handler):
    """Keeps every formatted record and exception text; ``leaks()`` finds secrets in them."""

    def __init__(self) -> None:
        super().__init__(level=1)
        self.texts: list[str] = []
        self.secrets: set[str] = set()
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.texts.append(self.format(record))
        except Exception as exc:  # a record that cannot format is itself worth a look
            self.texts.append(f"unformattable record {record.msg!r}: {exc}")

    def secret(self, value: str | bytes) -> str:
        text = value.decode() if isinstance(value, bytes) else value
        for part in (text.strip(), *text.splitlines()):
            if len(part.strip()) >= redaction.MIN_SECRET:
                self.secrets.add(part.strip())
        return text

    def exception(self, exc: BaseException | str) -> str:
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc} {exc!r}"
        self.texts.append(text)
        return text

    def leaks(self) -> list[str]:
        values = self.secrets | set(redaction._ordered)
        return [f"{v[:6]}... in {t[:120]!r}" for t in self.texts for v in values if v in t]


SCAN = SecretScan()
