"""Settings: declared once here, read from defaults, a file, the environment
and the command line (or ``Supervisor(...)`` keywords), validated in one place.

Each setting is a field of :class:`Config` whose metadata says how it is spelled
on the command line, what it means and how it is checked; the CLI options, the
``SUPERVISE_*`` variables, the file keys and the reference docs are all derived
from these fields, so they cannot disagree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from supervisor import config_fleet, config_http
from supervisor._setting import (
    MAX_BACKLOG,
    MAX_COUNT,
    MAX_DB_CONNECTIONS,
    MAX_MEMORY_MB,
    MAX_POOL_SIZE,
    MAX_SECONDS,
    MAX_THREADS,
    MAX_WORKERS,
    Setting,
    _setting,
    default_workers,
)
from supervisor.redact import redact_secret

ENV_PREFIX = "SUPERVISE_"
CONFIG_FILE = "supervise.toml"


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
        maximum=MAX_WORKERS,
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
        maximum=MAX_SECONDS,
        metavar="S",
        group="Workers",
        help="Kill and replace a worker whose heartbeat is older than S seconds (0: off).",
    )
    boot_timeout: float = _setting(
        60.0,
        flags=("--boot-timeout",),
        kind="float",
        minimum=0,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Workers",
        help="Seconds a worker may take to become ready (0: no limit).",
    )
    graceful_timeout: float = _setting(
        30.0,
        flags=("--graceful-timeout",),
        kind="float",
        minimum=0,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Workers",
        help="Seconds a stopping worker may take to finish its work before it is killed.",
    )
    crash_limit: int = _setting(
        5,
        flags=("--crash-limit",),
        kind="int",
        minimum=0,
        maximum=10_000,
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
        maximum=MAX_SECONDS,
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
        maximum=MAX_BACKLOG,
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
        maximum=MAX_THREADS,
        metavar="N",
        group="Serving",
        help="Request threads per worker for WSGI apps (they share the worker's db.pool); "
        "1 serves one request at a time, gunicorn's sync model.",
    )
    http: str = _setting(
        "uvicorn",
        flags=("--http",),
        kind="choice",
        choices=("uvicorn", "granian"),
        group="Serving",
        help="HTTP engine in each worker for ASGI and WSGI apps: uvicorn (WSGI through our "
        "bridge), or granian (Rust; pip install 'pg-supervise[granian]').",
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
    # the HTTP server's options; their metadata is in config_http.py
    keep_alive: float = _setting(**config_http.KEEP_ALIVE)
    limit_concurrency: int = _setting(**config_http.LIMIT_CONCURRENCY)
    ssl_certfile: str | None = _setting(**config_http.SSL_CERTFILE)
    ssl_keyfile: str | None = _setting(**config_http.SSL_KEYFILE)
    ssl_keyfile_password_file: str | None = _setting(**config_http.SSL_KEYFILE_PASSWORD_FILE)
    ssl_ca_certs: str | None = _setting(**config_http.SSL_CA_CERTS)
    ssl_cert_reqs: str = _setting(**config_http.SSL_CERT_REQS)
    ssl_ciphers: str | None = _setting(**config_http.SSL_CIPHERS)
    proxy_headers: bool = _setting(**config_http.PROXY_HEADERS)
    forwarded_allow_ips: tuple[str, ...] = _setting(**config_http.FORWARDED_ALLOW_IPS)
    ws_ping_interval: float = _setting(**config_http.WS_PING_INTERVAL)
    ws_ping_timeout: float = _setting(**config_http.WS_PING_TIMEOUT)
    ws_max_size: int = _setting(**config_http.WS_MAX_SIZE)
    max_requests: int = _setting(
        0,
        flags=("--max-requests",),
        kind="int",
        minimum=0,
        maximum=MAX_COUNT,
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
        maximum=MAX_COUNT,
        metavar="N",
        group="Workers",
        help="Add a random 0..N to each worker's --max-requests, so they are not all replaced at once.",
    )
    max_worker_memory: int = _setting(
        0,
        flags=("--max-worker-memory",),
        kind="int",
        minimum=0,
        maximum=MAX_MEMORY_MB,
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
        maximum=MAX_POOL_SIZE,
        metavar="N",
        group="Database",
        help="Connections each worker opens before it reports ready.",
    )
    pool_max_size: int = _setting(
        4,
        flags=("--pool-max-size",),
        kind="int",
        minimum=1,
        maximum=MAX_POOL_SIZE,
        metavar="N",
        group="Database",
        help="Most connections one worker's pool may hold (counts toward the budget).",
    )
    pool_max_lifetime: float = _setting(
        3600.0,
        flags=("--pool-max-lifetime",),
        kind="float",
        minimum=1,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Database",
        help="Replace a pooled connection after S seconds.",
    )
    pool_max_idle: float = _setting(
        600.0,
        flags=("--pool-max-idle",),
        kind="float",
        minimum=1,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Database",
        help="Close connections above the minimum that were unused for S seconds.",
    )
    pool_check_idle: float = _setting(
        2.0,
        flags=("--pool-check-idle",),
        kind="float",
        minimum=0,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Database",
        help="Test a pooled connection with a round trip before lending it only if it sat idle "
        "S seconds or more (0: on every checkout; the maximum, a week: in effect never).",
    )
    pool_timeout: float = _setting(
        30.0,
        flags=("--pool-timeout",),
        kind="float",
        minimum=0.1,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Database",
        help="How long a request for a connection waits before PoolTimeout.",
    )
    pool_reconnect_timeout: float = _setting(
        60.0,
        flags=("--pool-reconnect-timeout",),
        kind="float",
        minimum=1,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Database",
        help="A worker whose pool cannot reconnect for S seconds is reported unhealthy and replaced.",
    )
    pool_stats_interval: float = _setting(
        60.0,
        flags=("--pool-stats-interval",),
        kind="float",
        minimum=0,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Database",
        help="Each worker logs its pool statistics every S seconds (0: only on USR1).",
    )
    max_db_connections: int | None = _setting(
        None,
        flags=("--max-db-connections",),
        kind="int",
        minimum=1,
        maximum=MAX_DB_CONNECTIONS,
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
        maximum=MAX_SECONDS,
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
    migrations_out_of_order: bool = _setting(
        False,
        flags=("--migrations-out-of-order/--no-migrations-out-of-order",),
        kind="bool",
        group="Migrations",
        help="Apply a pending migration numbered below one already applied (a branch merged late) "
        "instead of refusing with exit 5.",
    )
    migration_lock_timeout: float = _setting(
        300.0,
        flags=("--migration-lock-timeout",),
        kind="float",
        minimum=0,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Migrations",
        help="How long to wait for another master's migration lock before exit 5.",
    )
    # the fleet-wide budget; their metadata is in config_fleet.py
    spare_db_connections: int = _setting(**config_fleet.SPARE_DB_CONNECTIONS)
    fleet: str | None = _setting(**config_fleet.FLEET)
    no_fleet: bool = _setting(**config_fleet.NO_FLEET)
    fleet_host: str | None = _setting(**config_fleet.FLEET_HOST)
    fleet_lease: float = _setting(**config_fleet.FLEET_LEASE)
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
    request_id_header: str = _setting(**config_http.REQUEST_ID_HEADER)
    config: str | None = _setting(
        None,
        flags=("-c", "--config"),
        kind="str",
        metavar="PATH",
        group="General",
        in_file=False,
        help=f"Config file (default: ./{CONFIG_FILE}, else [tool.supervise] in "
        "./pyproject.toml). Re-read on HUP.",
    )
    env_file: str | None = _setting(
        None,
        flags=("--env-file",),
        kind="str",
        metavar="PATH",
        group="General",
        help="Load KEY=VALUE lines (dotenv) into the environment before settings are read; "
        "variables already set win. Re-read on HUP.",
    )
    pid: str | None = _setting(
        None,
        flags=("--pid",),
        kind="str",
        metavar="FILE",
        group="Control",
        help="Write the master's pid to FILE (atomically), remove it on exit; refuse to start "
        "while a live master holds it. `supervise status/reload/scale/stop` find the master by it.",
    )
    control_socket: str | None = _setting(
        None,
        flags=("--control-socket",),
        kind="str",
        metavar="PATH",
        group="Control",
        help="Unix socket (owner only) that `supervise status/reload/scale/stop` talk to; "
        "'none' turns it off.",
        default_doc="next to --pid FILE (NAME.sock), else $XDG_RUNTIME_DIR/supervise/ (or "
        "/tmp/supervise-UID/) DIR-HASH.sock for the working directory",
    )
    reload: bool = _setting(
        False,
        flags=("--reload/--no-reload",),
        kind="bool",
        group="Development",
        help="Watch files and reload the workers (as HUP does) when one changes. For development.",
    )
    reload_dir: tuple[str, ...] = _setting(
        (),
        flags=("--reload-dir",),
        kind="list",
        metavar="DIR",
        group="Development",
        help="Directory --reload watches; repeatable.",
        default_doc="the working directory",
    )
    reload_include: tuple[str, ...] = _setting(
        ("*.py",),
        flags=("--reload-include",),
        kind="list",
        metavar="GLOB",
        group="Development",
        help="File names (glob) whose change reloads; repeatable. Given, it replaces the default.",
    )
    reload_exclude: tuple[str, ...] = _setting(
        (".*", "*~", "__pycache__", ".git", ".venv", "node_modules"),
        flags=("--reload-exclude",),
        kind="list",
        metavar="GLOB",
        group="Development",
        help="File or directory names (glob) whose changes are ignored; repeatable. Given, it "
        "replaces the default.",
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
