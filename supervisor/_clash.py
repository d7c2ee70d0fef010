"""Supervisord installs a top-level ``supervisor`` package too.

Both distributions write into ``site-packages/supervisor/``, so installing one
after the other silently overwrites files. We refuse to run rather than run
with a package that may be half theirs.
"""

from __future__ import annotations

import importlib.metadata

from supervisor.errors import NameClashError


def own_version() -> str:
    """pg-supervise's version from its own metadata (not ``supervisor.__version__``,
    which would be Supervisord's if its files won)."""
    try:
        return importlib.metadata.version("pg-supervise")
    except importlib.metadata.PackageNotFoundError:
        from supervisor._version import __version__

        return __version__


def check() -> None:
    try:
        theirs = importlib.metadata.distribution("supervisor")
    except importlib.metadata.PackageNotFoundError:
        return
    raise NameClashError(
        f"Supervisord (the 'supervisor' distribution {theirs.version}) is installed in this "
        "environment; it uses the same import package name 'supervisor' as pg-supervise, so "
        "their files overwrite each other. Install pg-supervise in its own virtual environment, "
        "or 'pip uninstall supervisor' and then reinstall pg-supervise."
    )
