"""``--env-file``: KEY=VALUE lines (dotenv syntax) loaded into the environment
before the settings are read, so ``SUPERVISE_*`` and ``DATABASE_URL`` in the
file count, and the workers inherit the rest.

A variable the environment already has wins over the file, as a deploy's own
environment should. On HUP the file is read again: a variable this process
took from the file follows the file's new value; one set outside it stays.
Values are never logged.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path

from supervisor.errors import ConfigError

_taken: dict[str, str] = {}  # variables this process set from an env file, with the value set


def apply(path: Path, environ: MutableMapping[str, str], origin: str) -> set[str]:
    """Load ``path`` into ``environ``; returns the variables whose value is now
    the file's (``supervise check`` names the file as their source)."""
    from dotenv import dotenv_values

    if not path.is_file():
        raise ConfigError(f"env_file: file not found: {path} (from {origin})")
    try:
        values = dotenv_values(path, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"env_file: cannot read {path}: {exc} (from {origin})") from None
    applied = set()
    for key, value in values.items():
        if value is None or key == "SUPERVISE_ENV_FILE":
            continue
        if key in environ and _taken.get(key) != environ[key]:
            continue  # set outside the file
        environ[key] = value
        _taken[key] = value
        applied.add(key)
    return applied
