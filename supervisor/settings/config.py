"""Settings: declared once, one module per group (``workers.py``,
``serving.py``, ``postgresql.py``, ``process.py``), gathered here into
:class:`Config`; read from defaults, a file, the environment and the command
line by :mod:`supervisor.settings.load`.

Each setting is a field whose metadata says how it is spelled on the command
line, what it means and how it is checked; the CLI options, the ``SUPERVISE_*``
variables, the file keys and the reference docs are all derived from these
fields, so they cannot disagree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from supervisor.redact import redact_secret
from supervisor.settings.declare import Setting
from supervisor.settings.postgresql import DatabaseSettings, FleetSettings
from supervisor.settings.process import ProcessSettings
from supervisor.settings.serving import HTTPSettings, ServingSettings
from supervisor.settings.workers import WorkerSettings

ENV_PREFIX = "SUPERVISE_"


@dataclass(frozen=True, kw_only=True)
class Config(ProcessSettings, FleetSettings, DatabaseSettings, HTTPSettings, ServingSettings, WorkerSettings):
    """The effective, validated configuration of one supervisor: every group of
    settings (the modules beside this one), plus the target.

    The groups are listed last-first: a dataclass takes its bases' fields from
    the last base to the first, and settings are shown in that order.

    ``sources`` maps each setting to where its value came from
    (``default``, a file name, ``env SUPERVISE_X``, ``--x`` or ``Supervisor(x=)``).
    """

    target: str = ""
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def describe(self, *, redact: bool = True) -> list[tuple[str, Any, str]]:
        """(setting, value, source) for every setting, in declaration order; secret
        values (passwords in URLs) are masked unless ``redact=False``."""
        out = []
        for f, meta in settings():
            value = getattr(self, f.name)
            if redact and meta.secret and isinstance(value, str):
                value = redact_secret(value)
            out.append((f.name, value, self.sources.get(f.name, "default")))
        return out


def settings() -> Iterator[tuple[dataclasses.Field[Any], Setting]]:
    """Every declared setting with its metadata, in declaration order."""
    for f in dataclasses.fields(Config):
        meta = f.metadata.get("setting")
        if meta is not None:
            yield f, meta


def setting_names() -> list[str]:
    return [f.name for f, _ in settings()]


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def option_name(meta: Setting) -> str:
    """The long flag, as a user reads it in messages (``--workers``)."""
    long = next(f for f in meta.flags if f.startswith("--"))
    return long.split("/")[0]
