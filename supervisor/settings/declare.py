"""How a setting is declared (:class:`Setting`, ``_setting``) and the bounds
numbers are checked against: the vocabulary :mod:`supervisor.settings.config` declares
its settings in, kept apart so that module holds only the declarations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from supervisor.settings import cpus

Kind = Literal["int", "float", "str", "bool", "choice", "list"]
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


CONFIG_FILE = "supervise.toml"  # read from the working directory when --config is not given


@dataclass(frozen=True)
class Setting:
    """How one :class:`Config` field is spelled, documented and checked."""

    flags: tuple[str, ...]
    help: str
    kind: Kind
    group: str
    minimum: float | None = None
    maximum: float | None = None  # every number has one: see the ranges below
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    in_file: bool = True
    default_doc: str | None = None
    secret: bool = False  # redacted wherever the value is shown
    also_env: tuple[str, ...] = ()  # conventional variables read after SUPERVISE_*


def _setting(default: Any = None, **meta: Any) -> Any:
    factory = meta.pop("default_factory", None)
    md = {"setting": Setting(**meta)}
    show = not meta.get("secret", False)  # a password must not reach a repr in a log
    if factory is not None:
        return field(default_factory=factory, metadata=md, repr=show)
    return field(default=default, metadata=md, repr=show)


# Upper bounds. Past them a value is a typo or a unit mistake, and some would
# fail deep inside the master (an OverflowError from epoll or listen()) or turn
# a feature off without a word (nan), so they are refused at load time instead.
#
# A week of seconds: longer than any sensible timeout, and far below the
# 24.8 days (2**31 ms) that epoll and poll accept as a wait.
MAX_SECONDS = 7 * 24 * 3600
# Each worker is a process with its own pool. 1024 is several times the CPUs
# of the largest common machines; beyond it the master's per-tick work, the
# file descriptors (three pipes per worker) and PostgreSQL's connections run
# out long before any gain. TTIN stops there too.
MAX_WORKERS = 1024
# listen() takes an int and Linux clamps it to net.core.somaxconn anyway;
# 65535 was the kernel's own ceiling for years.
MAX_BACKLOG = 65535
MAX_THREADS = 1024
MAX_POOL_SIZE = 10_000
MAX_COUNT = 10**9  # requests and jitter: a worker serving more has run for years
MAX_MEMORY_MB = 1024 * 1024  # 1 TiB
MAX_DB_CONNECTIONS = 262_143  # PostgreSQL's own maximum for max_connections
# The request head: a 1 MiB line or field, or 32768 fields, is no request a
# real client sends; the defaults are gunicorn's (4094, 8190, 100).
MAX_HEAD_BYTES = 1024 * 1024
MAX_HEAD_FIELDS = 32768


def default_workers() -> int:
    """CPUs this process may use (cpus.available), at most MAX_WORKERS."""
    return max(1, min(cpus.available(), MAX_WORKERS))


def describe_range(meta: Setting) -> str:
    """'from 1 to 1024', as messages and the reference show a setting's range."""
    low, high = meta.minimum, meta.maximum
    if low is not None and high is not None:
        return f"from {low:g} to {high:g}"
    if low is not None:
        return f"at least {low:g}"
    return f"at most {high:g}" if high is not None else "any number"
