"""Checks of the HTTP server's settings that need more than one value's
range: run by the master before the database step and by ``supervise check``,
so a bad certificate or proxy list never migrates anything."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from supervisor import tls
from supervisor.errors import ConfigError

if TYPE_CHECKING:
    from supervisor.config import Config


def check(cfg: Config) -> None:
    """ConfigError (one line) for TLS files that do not load, a proxy address
    that is not one, or a setting the chosen --http engine cannot honour."""
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
    if cfg.http == "granian":
        from supervisor.worker.runners import granian_engine

        granian_engine.check_options(cfg)
