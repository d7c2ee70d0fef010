"""The HTTP engines (``--http``), one row each, and the checks of the HTTP
settings that need more than one value's range.

An engine is a module with ``run(target, runtime) -> int``, which serves an
ASGI or a WSGI target on the sockets the master bound, and ``warm(kind)``, which
the master calls once before the first fork (it imports what every worker
would import, so a fork starts with it loaded, and refuses an engine that
cannot run here in one line). A row also lists the settings its engine does
not apply: a value other than the default is refused before any database
step, never ignored. A new engine is one module and one row here, and its name
in the ``http`` setting's choices (``settings/serving.py``).
"""

from __future__ import annotations

import importlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor.errors import ConfigError
from supervisor.http import tls

if TYPE_CHECKING:
    from supervisor.settings.config import Config
    from supervisor.target import Kind, Target
    from supervisor.worker.runtime import Runtime


@dataclass(frozen=True)
class Engine:
    module: str  # run(target, runtime) and warm(); imported only where used
    unsupported: tuple[str, ...] = ()  # settings it does not apply: refused unless at their default
    unsupported_values: tuple[tuple[str, str], ...] = ()  # (setting, value) it does not apply

    def refused(self, cfg: Config) -> list[str]:
        """The settings of ``cfg`` this engine would not apply, as options."""
        from supervisor.settings.config import Config as Defaults

        defaults = Defaults()
        names = [
            "--" + name.replace("_", "-")
            for name in self.unsupported
            if getattr(cfg, name) != getattr(defaults, name)
        ]
        names += [
            f"--{name.replace('_', '-')} {value}"
            for name, value in self.unsupported_values
            if getattr(cfg, name) == value
        ]
        return names


ENGINES: dict[str, Engine] = {
    "uvicorn": Engine("supervisor.http.uvicorn_engine"),
    "granian": Engine(
        "supervisor.http.granian_engine",
        unsupported=(
            "ssl_keyfile_password_file",  # granian 2.8 aborts the worker on an encrypted key
            "ssl_ciphers",
            "keep_alive",
            "limit_concurrency",
            "ws_ping_interval",
            "ws_ping_timeout",
            "ws_max_size",
        ),
        unsupported_values=(("ssl_cert_reqs", "optional"),),
    ),
}


def runner(http: str) -> Callable[[Target, Runtime], int]:
    run: Callable[[Target, Runtime], int] = importlib.import_module(ENGINES[http].module).run
    return run


def warm(http: str, kind: Kind | None = None) -> None:
    """In the master, once, before the first fork (see the module's docstring);
    ``kind``: the target's, when known (a lazy target's is probed)."""
    importlib.import_module(ENGINES[http].module).warm(kind)


def check(cfg: Config) -> None:
    """ConfigError (one line) for TLS files that do not load, a proxy address
    that is not one, or a setting the chosen --http engine cannot honour. Run
    by the master before the database step and by ``supervise check``, so a
    bad certificate or proxy list never migrates anything."""
    tls.context(cfg)
    for entry in cfg.forwarded_allow_ips:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f"--forwarded-allow-ips: {entry!r} is not an IP address, a network (10.0.0.0/8) or '*'"
            ) from None
    refused = ENGINES[cfg.http].refused(cfg)
    if refused:
        raise ConfigError(f"--http {cfg.http} does not apply {', '.join(refused)} here: use --http uvicorn")
