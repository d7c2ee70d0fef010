"""Settings: declared once here, read from defaults, a file, the environment
and the command line (or ``Supervisor(...)`` keywords), validated in one place.

Each setting is a field of :class:`Config` whose metadata says how it is spelled
on the command line, what it means and how it is checked; the CLI options, the
``SUPERVISE_*`` variables, the file keys and the reference docs are all derived
from these fields, so they cannot disagree.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from supervisor.errors import ConfigError

ENV_PREFIX = "SUPERVISE_"
CONFIG_FILE = "supervise.toml"

Kind = Literal["int", "float", "str", "bool", "choice", "list"]
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class Setting:
    """How one :class:`Config` field is spelled, documented and checked."""

    flags: tuple[str, ...]
    help: str
    kind: Kind
    group: str
    minimum: float | None = None
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


def default_workers() -> int:
    """CPUs this process may run on: its affinity (cpusets, taskset), capped by
    a container's CPU limit, which the affinity does not show (a pod limited to
    2 CPUs on a 64-CPU node would otherwise start 64 workers)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(_read_cgroup_files())
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)


def cgroup_cpu_limit(files: dict[str, str]) -> float | None:
    """CPUs allowed by cgroup v2 ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD")
    or by cgroup v1's CFS quota and period (quota -1: none); None for no limit."""
    if "cpu.max" in files:
        quota, _, period = files["cpu.max"].strip().partition(" ")
        if quota != "max" and quota.isdigit() and period.strip().isdigit() and int(period):
            return int(quota) / int(period)
        return None
    try:
        quota_us = int(files["cpu.cfs_quota_us"])
        period_us = int(files["cpu.cfs_period_us"])
    except (KeyError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _read_cgroup_files() -> dict[str, str]:
    files: dict[str, str] = {}
    candidates = [
        "/sys/fs/cgroup/cpu.max",
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
        "/sys/fs/cgroup/cpu/cpu.cfs_period_us",
    ]
    try:  # cgroup v2 outside a namespace: this process's own group, e.g. a systemd slice
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::/") and line.strip() != "0::/":
                    candidates.insert(0, f"/sys/fs/cgroup{line.strip()[3:]}/cpu.max")
    except OSError:
        pass
    for path in candidates:
        name = os.path.basename(path)
        if name in files:
            continue
        try:
            with open(path) as f:
                files[name] = f.read()
        except OSError:
            continue
    return files


@dataclass(frozen=True, kw_only=True)
class Config:
    """The effective, validated configuration of one supervisor.

    ``sources`` maps each setting to where its value came from
    (``default``, a file name, ``env SUPERVISE_X``, ``--x`` or ``Supervisor(x=)``).
    """

    target: str = ""
    workers: int = _setting(
        default_factory=default_workers,
        flags=("-w", "--workers"),
        kind="int",
        minimum=1,
        metavar="N",
        group="Workers",
        help="Number of worker processes.",
        default_doc="CPUs available (affinity, capped by a container's CPU limit)",
    )
    interface: str = _setting(
        "auto",
        flags=("--interface",),
        kind="choice",
        choices=("auto", "asgi", "wsgi", "main"),
        group="Workers",
        help="How to treat TARGET; 'auto' tells them apart by signature.",
    )
    factory: bool = _setting(
        False,
        flags=("--factory/--no-factory",),
        kind="bool",
        group="Workers",
        help="TARGET is a function returning the app; it is called in each worker (or once "
        "in the master with --preload).",
    )
    preload: bool = _setting(
        False,
        flags=("--preload/--no-preload",),
        kind="bool",
        group="Workers",
        help="Import TARGET in the master before forking (shared memory, fast "
        "respawn) instead of in each worker.",
    )
    timeout: float = _setting(
        30.0,
        flags=("--timeout",),
        kind="float",
        minimum=0,
        metavar="S",
        group="Workers",
        help="Kill and replace a worker that shows no progress for S seconds (0: off): a main "
        "target that stops beating, an event loop that blocks, or a WSGI worker whose every "
        "request thread is stuck on one request. Also how long a WSGI request waits on a "
        "client that takes or sends nothing.",
    )
    boot_timeout: float = _setting(
        60.0,
        flags=("--boot-timeout",),
        kind="float",
        minimum=0,
        metavar="S",
        group="Workers",
        help="Seconds a worker may take to become ready (0: no limit).",
    )
    graceful_timeout: float = _setting(
        30.0,
        flags=("--graceful-timeout",),
        kind="float",
        minimum=0,
        metavar="S",
        group="Workers",
        help="Seconds a stopping worker may take to finish its work before it is killed.",
    )
    crash_limit: int = _setting(
        5,
        flags=("--crash-limit",),
        kind="int",
        minimum=0,
        metavar="N",
        group="Workers",
        help="Give up (exit 6) when one worker slot crashes more than N times in a "
        "row without a healthy period (0: never give up).",
    )
    crash_reset: float = _setting(
        30.0,
        flags=("--crash-reset",),
        kind="float",
        minimum=0,
        metavar="S",
        group="Workers",
        help="A worker that stays up S seconds clears its slot's crash count and backoff.",
    )
    bind: tuple[str, ...] = _setting(
        (),
        flags=("-b", "--bind"),
        kind="list",
        metavar="ADDR",
        group="Serving",
        help="Listen on ADDR: HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N; repeatable (comma-"
        "separated in the environment). HTTP targets default to 127.0.0.1:8000, or to the "
        "sockets systemd passes (LISTEN_FDS).",
        default_doc="127.0.0.1:8000 for HTTP targets",
    )
    backlog: int = _setting(
        2048,
        flags=("--backlog",),
        kind="int",
        minimum=1,
        metavar="N",
        group="Serving",
        help="Connections the kernel queues on each listener before refusing.",
    )
    socket_mode: str | None = _setting(
        None,
        flags=("--socket-mode",),
        kind="str",
        metavar="OCTAL",
        group="Serving",
        help="Permissions of unix sockets (e.g. 660).",
    )
    threads: int = _setting(
        4,
        flags=("--threads",),
        kind="int",
        minimum=1,
        metavar="N",
        group="Serving",
        help="Request threads per worker for WSGI apps (they share the worker's db.pool); "
        "1 serves one request at a time, gunicorn's sync model.",
    )
    root_path: str = _setting(
        "",
        flags=("--root-path",),
        kind="str",
        metavar="PREFIX",
        group="Serving",
        also_env=("SCRIPT_NAME",),
        help="The URL prefix the app is mounted at behind a proxy (e.g. /app): ASGI's root_path; "
        "WSGI's SCRIPT_NAME, taken off the front of PATH_INFO (also read from SCRIPT_NAME, "
        "as gunicorn does).",
    )
    limit_request_line: int = _setting(
        4094,
        flags=("--limit-request-line",),
        kind="int",
        minimum=0,
        metavar="BYTES",
        group="Serving",
        help="Longest HTTP request line (method, target, version); longer gets 414 (0: no limit).",
    )
    limit_request_fields: int = _setting(
        100,
        flags=("--limit-request-fields",),
        kind="int",
        minimum=0,
        metavar="N",
        group="Serving",
        help="Most header fields in one request; more gets 431 (0: no limit).",
    )
    limit_request_field_size: int = _setting(
        8190,
        flags=("--limit-request-field-size",),
        kind="int",
        minimum=0,
        metavar="BYTES",
        group="Serving",
        help="Longest request header field (name and value); longer gets 431 (0: no limit).",
    )
    header_timeout: float = _setting(
        10.0,
        flags=("--header-timeout",),
        kind="float",
        minimum=0,
        metavar="S",
        group="Serving",
        help="Seconds a client has to send a whole request head once it connects or starts a "
        "request; slower gets 408 and the connection closed (0: no limit).",
    )
    health_bind: str | None = _setting(
        None,
        flags=("--health-bind",),
        kind="str",
        metavar="HOST:PORT",
        group="Serving",
        help="Serve /livez and /readyz from the master (Kubernetes probes).",
    )
    access_log: bool = _setting(
        False,
        flags=("--access-log/--no-access-log",),
        kind="bool",
        group="Serving",
        help="Log one line per HTTP request.",
    )
    max_requests: int = _setting(
        0,
        flags=("--max-requests",),
        kind="int",
        minimum=0,
        metavar="N",
        group="Workers",
        help="Replace a worker after N requests (HTTP) or N units of worker.count_work() "
        "(main), through the rolling path (0: never).",
    )
    max_requests_jitter: int = _setting(
        0,
        flags=("--max-requests-jitter",),
        kind="int",
        minimum=0,
        metavar="N",
        group="Workers",
        help="Add a random 0..N to each worker's --max-requests, so they are not all replaced at once.",
    )
    max_worker_memory: int = _setting(
        0,
        flags=("--max-worker-memory",),
        kind="int",
        minimum=0,
        metavar="MB",
        group="Workers",
        help="Replace a worker whose resident memory exceeds MB megabytes (0: never).",
    )
    database_url: str | None = _setting(
        None,
        flags=("--database-url",),
        kind="str",
        metavar="URL",
        group="Database",
        secret=True,
        also_env=("DATABASE_URL",),
        help="PostgreSQL URL or conninfo for migrations and the per-worker pools "
        "(also read from DATABASE_URL).",
    )
    pool_min_size: int = _setting(
        1,
        flags=("--pool-min-size",),
        kind="int",
        minimum=0,
        metavar="N",
        group="Database",
        help="Connections each worker opens before it reports ready.",
    )
    pool_max_size: int = _setting(
        4,
        flags=("--pool-max-size",),
        kind="int",
        minimum=1,
        metavar="N",
        group="Database",
        help="Most connections one worker's pool may hold (counts toward the budget).",
    )
    pool_max_lifetime: float = _setting(
        3600.0,
        flags=("--pool-max-lifetime",),
        kind="float",
        minimum=1,
        metavar="S",
        group="Database",
        help="Replace a pooled connection after S seconds.",
    )
    pool_max_idle: float = _setting(
        600.0,
        flags=("--pool-max-idle",),
        kind="float",
        minimum=1,
        metavar="S",
        group="Database",
        help="Close connections above the minimum that were unused for S seconds.",
    )
    pool_timeout: float = _setting(
        30.0,
        flags=("--pool-timeout",),
        kind="float",
        minimum=0.1,
        metavar="S",
        group="Database",
        help="How long a request for a connection waits before PoolTimeout.",
    )
    pool_reconnect_timeout: float = _setting(
        60.0,
        flags=("--pool-reconnect-timeout",),
        kind="float",
        minimum=1,
        metavar="S",
        group="Database",
        help="A worker whose pool cannot reconnect for S seconds is reported unhealthy and replaced.",
    )
    pool_stats_interval: float = _setting(
        60.0,
        flags=("--pool-stats-interval",),
        kind="float",
        minimum=0,
        metavar="S",
        group="Database",
        help="Each worker logs its pool statistics every S seconds (0: only on USR1).",
    )
    max_db_connections: int | None = _setting(
        None,
        flags=("--max-db-connections",),
        kind="int",
        minimum=1,
        metavar="N",
        group="Database",
        help="Connection budget: start and TTIN refuse when workers x pool max size + 1 exceeds it.",
        default_doc="server's max_connections less reserved slots",
    )
    db_wait_timeout: float = _setting(
        60.0,
        flags=("--db-wait-timeout",),
        kind="float",
        minimum=0,
        metavar="S",
        group="Database",
        help="At start, wait up to S seconds (with backoff) for PostgreSQL to accept connections.",
    )
    migrations: str | None = _setting(
        None,
        flags=("--migrations",),
        kind="str",
        metavar="SPEC",
        group="Migrations",
        help="A directory of NNNN_name.sql files, module:callable taking the locked connection, "
        "or alembic:PATH/alembic.ini.",
    )
    migrate: bool = _setting(
        True,
        flags=("--migrate/--no-migrate",),
        kind="bool",
        group="Migrations",
        help="Apply pending migrations at start, before any worker is forked.",
    )
    migration_lock_timeout: float = _setting(
        300.0,
        flags=("--migration-lock-timeout",),
        kind="float",
        minimum=0,
        metavar="S",
        group="Migrations",
        help="How long to wait for another master's migration lock before exit 5.",
    )
    hooks: str | None = _setting(
        None,
        flags=("--hooks",),
        kind="str",
        metavar="MODULE",
        group="Hooks",
        help="Module whose functions named after hooks (on_starting, after_fork, ...) are registered.",
    )
    log_level: str = _setting(
        "info",
        flags=("--log-level",),
        kind="choice",
        choices=("debug", "info", "warning", "error"),
        group="Logging",
        help="Lowest level logged; 'debug' also shows tracebacks of reported errors.",
    )
    log_format: str = _setting(
        "auto",
        flags=("--log-format",),
        kind="choice",
        choices=("auto", "console", "json"),
        group="Logging",
        help="'auto': console when stderr is a terminal, JSON lines otherwise.",
    )
    config: str | None = _setting(
        None,
        flags=("--config",),
        kind="str",
        metavar="PATH",
        group="General",
        in_file=False,
        help=f"Config file (default: ./{CONFIG_FILE}, else [tool.supervise] in "
        "./pyproject.toml). Re-read on HUP.",
    )
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


# greedy up to the last '@' before the path: an unencoded '@' may be in the password
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^\s/]*(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact_secret(text: str) -> str:
    """``text`` (a URL or conninfo string) with any password replaced by ``***``."""
    return _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***\2", text))


def scrub(text: str, url: str | None) -> str:
    """``text`` (say, a driver's error message) with the password of ``url``
    removed, wherever it appears, and any URL or conninfo password masked."""
    if url:
        for pattern in (_URL_PASSWORD, _KV_PASSWORD):
            for match in pattern.finditer(url):
                secret = url[match.end(1) : match.start(2)] if pattern is _URL_PASSWORD else match.group(2)
                for form in {secret, secret.strip("'")}:
                    if len(form) >= 3:
                        text = text.replace(form, "***")
    return redact_secret(text)


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


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _from_text(name: str, meta: Setting, raw: str, origin: str) -> Any:
    """Convert a string from the environment or command line."""
    text = raw.strip()
    if meta.kind == "int":
        try:
            value: Any = int(text)
        except ValueError:
            raise ConfigError(f"{name}: expected a whole number, got {raw!r} (from {origin})") from None
    elif meta.kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{name}: expected a number of seconds, got {raw!r} (from {origin})") from None
    elif meta.kind == "bool":
        low = text.lower()
        if low not in _TRUE | _FALSE:
            raise ConfigError(f"{name}: expected true or false, got {raw!r} (from {origin})")
        value = low in _TRUE
    elif meta.kind == "list":
        value = tuple(part.strip() for part in text.split(",") if part.strip())
    else:
        value = text
    return _check(name, meta, value, origin)


def _check(name: str, meta: Setting, value: Any, origin: str) -> Any:
    """Type- and range-check a value that is already a Python object."""
    if value is None and meta.kind == "str":
        return None
    if meta.kind == "list":
        if (
            isinstance(value, str)
            or not isinstance(value, list | tuple)
            or not all(isinstance(v, str) for v in value)
        ):
            raise ConfigError(f"{name}: expected a list of strings, got {value!r} (from {origin})")
        return tuple(value)
    expected: tuple[type, ...]
    if meta.kind == "int":
        expected = (int,)
    elif meta.kind == "float":
        expected = (int, float)
    elif meta.kind == "bool":
        expected = (bool,)
    else:
        expected = (str,)
    # bool is an int in Python; 'workers = true' is still a mistake.
    if not isinstance(value, expected) or (meta.kind != "bool" and isinstance(value, bool)):
        raise ConfigError(
            f"{name}: expected {meta.kind}, got {type(value).__name__} {value!r} (from {origin})"
        )
    if meta.kind == "float":
        value = float(value)
    if meta.minimum is not None and value < meta.minimum:
        raise ConfigError(f"{name}: must be at least {meta.minimum:g}, got {value!r} (from {origin})")
    if meta.choices and value not in meta.choices:
        raise ConfigError(
            f"{name}: must be one of {', '.join(meta.choices)}, got {value!r} (from {origin})"
            + _suggest(value, list(meta.choices))
        )
    return value


def find_config_file(explicit: str | None, cwd: Path) -> tuple[Path, str] | None:
    """The file to read and the table in it ('' for the top level)."""
    if explicit:
        path = Path(explicit)
        if not path.is_absolute():
            path = cwd / path
        if not path.is_file():
            raise ConfigError(f"config: file not found: {explicit}")
        return path, "tool.supervise" if path.name == "pyproject.toml" else ""
    own = cwd / CONFIG_FILE
    if own.is_file():
        return own, ""
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            return None  # not ours to judge; it only matters if it had our table
        if isinstance(data.get("tool"), dict) and "supervise" in data["tool"]:
            return pyproject, "tool.supervise"
    return None


def read_config_file(path: Path, table: str) -> dict[str, Any]:
    try:
        data: Any = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path.name} is not valid TOML: {exc}") from None
    for part in filter(None, table.split(".")):
        data = data.get(part, {}) if isinstance(data, dict) else {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: [{table}] in {path.name} must be a table")
    return {key.replace("-", "_"): value for key, value in data.items()}


def load(
    target: str,
    explicit: Mapping[str, tuple[Any, str]] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Build the effective :class:`Config`.

    ``explicit`` holds values given on the command line or as keywords, each
    with its origin (``--workers`` or ``Supervisor(workers=)``); they win over
    ``SUPERVISE_*`` variables, which win over the config file, which wins over
    defaults. Raises :class:`ConfigError` naming the setting and its origin.
    """
    explicit = dict(explicit or {})
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    known = dict((f.name, meta) for f, meta in settings())

    for name in explicit:
        if name not in known:
            raise ConfigError(f"unknown setting {name!r}" + _suggest(name, list(known)))

    config_path = explicit.get("config", (None, ""))[0] or environ.get(env_name("config")) or None
    found = find_config_file(config_path, cwd)
    file_values: dict[str, Any] = {}
    file_label = ""
    if found:
        path, table = found
        file_label = path.name + (f" [{table}]" if table else "")
        file_values = read_config_file(path, table)
        for key in file_values:
            if key not in known or not known[key].in_file:
                raise ConfigError(
                    f"{file_label}: unknown setting {key!r}"
                    + _suggest(key, [n for n, m in known.items() if m.in_file])
                )

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, meta in known.items():
        env_var = env_name(name)
        env_value = environ.get(env_var, "")
        for other in meta.also_env:
            if not env_value.strip() and environ.get(other, "").strip():
                env_var, env_value = other, environ[other]
        if name in explicit:
            value, origin = explicit[name]
            values[name] = _check(name, meta, value, origin)
            sources[name] = origin
        elif env_value.strip():
            origin = f"env {env_var}"
            values[name] = _from_text(name, meta, env_value, origin)
            sources[name] = origin
        elif name in file_values:
            values[name] = _check(name, meta, file_values[name], file_label)
            sources[name] = file_label
        else:
            sources[name] = "default"
    if found:
        values["config"] = str(found[0])
        sources.setdefault("config", "default")
    config = Config(target=target, sources=sources, **values)
    _validate(config)
    return config


def _validate(config: Config) -> None:
    """Rules that involve more than one setting."""
    if config.pool_min_size > config.pool_max_size:
        raise ConfigError(
            f"pool_min_size ({config.pool_min_size}, from {config.sources['pool_min_size']}) is "
            f"larger than pool_max_size ({config.pool_max_size}, from "
            f"{config.sources['pool_max_size']})"
        )
    root = config.root_path
    if root and (not root.startswith("/") or any(c in root for c in "?# ")):
        raise ConfigError(
            f"root_path: expected a URL path such as /app, got {config.root_path!r} "
            f"(from {config.sources['root_path']})"
        )
    if config.migrations and config.migrate and not config.database_url:
        raise ConfigError(
            "migrations are set but no database: pass --database-url or set DATABASE_URL (or --no-migrate)"
        )


def from_text(name: str, raw: str, origin: str) -> Any:
    """Convert a command-line string for setting ``name`` (used by the CLI)."""
    meta = dict((f.name, m) for f, m in settings())[name]
    return _from_text(name, meta, raw, origin)
