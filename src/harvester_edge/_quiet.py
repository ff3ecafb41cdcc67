"""The one third-party import-time warning harvester-edge silences, and nothing else.

authlib (1.7 and later, when the ``httpx2`` package is absent) falls back to ``httpx`` and
warns, on importing ``authlib.integrations.httpx_client``::

    AuthlibDeprecationWarning: The httpx module is deprecated; please use httpx2 instead.

``sfapi_client`` and our SFAPI client import that module, so every Harvester agent would log
the warning (Harvester records warnings as ERROR).  It is authlib's own notice about its own
integration: nothing an operator can act on.  The filter below matches only that message, that
category and warnings raised from authlib's modules.

authlib's ``deprecate`` module installs ``simplefilter("always", AuthlibDeprecationWarning)``
when first imported, in front of every filter installed before it; so the category is
imported first, and our filter goes in front of authlib's.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

AUTHLIB_HTTPX_MESSAGE = r"The httpx module is deprecated; please use httpx2 instead"
AUTHLIB_MODULES = r"authlib\."


def _authlib_category() -> type[Warning]:
    try:
        from authlib.deprecate import AuthlibDeprecationWarning
    except ImportError:  # authlib absent or reorganised: nothing of ours to silence
        return DeprecationWarning
    return AuthlibDeprecationWarning


def ignore_known_warnings() -> None:
    """Install the targeted filter (process-wide, in front of the others)."""
    category = _authlib_category()
    warnings.filterwarnings(
        "ignore", message=AUTHLIB_HTTPX_MESSAGE, category=category, module=AUTHLIB_MODULES
    )


@contextlib.contextmanager
def quiet_imports() -> Iterator[None]:
    """Import third-party modules inside this block to silence the known warning even when
    the process-wide filter was reset (test runners, ``warnings.catch_warnings``)."""
    _authlib_category()  # authlib's own "always" filter goes in now, outside the block
    with warnings.catch_warnings():
        ignore_known_warnings()
        yield
