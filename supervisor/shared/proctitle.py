"""Process titles (``ps``, ``top``) when the optional setproctitle is installed.

Titles carry the target and the worker id, never settings: a database URL with
a password must not be readable by every user of the machine.
"""

from __future__ import annotations

from collections.abc import Callable

_set: Callable[[str], None] | None
try:
    from setproctitle import setproctitle as _set
except ImportError:  # optional extra: pg-supervise[proctitle]
    _set = None


def set_title(title: str) -> None:
    if _set is not None:
        _set(f"supervise: {title}")
